package fuseproto

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferryfs/ferryfs/internal/warnlimit"
)

func TestRequestLogging(t *testing.T) {
	var buf bytes.Buffer
	fs := &fakeFS{quiet: true}
	s := NewServer(fs, ServerOptions{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	s.SetSession(testSession())
	serve(t, s, request(opGetattr, 3, make([]byte, 16)), 4096)
	serve(t, s, request(opMkdir, 3, make([]byte, 8), cstr(".")), 4096)
	logs := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="FUSE request" op=GETATTR node=3 unique=20015998343868 errno=0`,
		`level=WARN msg="malformed FUSE request" op=MKDIR node=3 unique=20015998343868 error="name 0: \".\" cannot be created or removed: invalid argument"`,
		`level=DEBUG msg="FUSE request" op=MKDIR node=3 unique=20015998343868 errno=22`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks\n%s\ngot:\n%s", want, logs)
		}
	}
}

func TestWarningsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	s := NewServer(&fakeFS{quiet: true}, ServerOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	s.SetSession(testSession())
	bad := request(opLookup, 1, []byte("unterminated"))
	for range 10 * warnlimit.Burst {
		serve(t, s, bad, 4096)
	}
	if n := strings.Count(buf.String(), "malformed FUSE request"); n != warnlimit.Burst {
		t.Errorf("%d warnings logged, want the burst of %d", n, warnlimit.Burst)
	}
}

// TestSessionLogsRateLimited: a guest sending INIT and DESTROY in a loop
// does not flood the log with session messages.
func TestSessionLogsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	s := NewServer(&fakeFS{quiet: true}, ServerOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	for i := range 10 * warnlimit.Burst {
		serve(t, s, initRequest(7, 38, 0), 4096)
		if i%2 == 0 {
			serve(t, s, request(opDestroy, 0, nil), 4096)
		}
	}
	n := strings.Count(buf.String(), "level=INFO")
	if n > warnlimit.Burst {
		t.Errorf("%d session messages logged for %d INITs, want at most %d", n, 10*warnlimit.Burst, warnlimit.Burst)
	}
	if n == 0 || !strings.Contains(buf.String(), "FUSE session initialized") {
		t.Errorf("no session message logged:\n%s", buf.String())
	}
}
