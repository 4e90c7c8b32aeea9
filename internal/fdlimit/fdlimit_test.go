package fdlimit

import (
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// fakeSystem simulates the kernel's RLIMIT_NOFILE rules: the hard limit may
// only be raised with privilege, nothing may exceed nr_open, and the soft
// limit may not exceed the hard limit.
type fakeSystem struct {
	nrOpen     uint64
	nrOpenErr  error
	limit      syscall.Rlimit
	privileged bool
	calls      int
}

func (f *fakeSystem) system() system {
	return system{
		nrOpen: func() (uint64, error) { return f.nrOpen, f.nrOpenErr },
		getrlimit: func() (syscall.Rlimit, error) {
			return f.limit, nil
		},
		setrlimit: func(r syscall.Rlimit) error {
			f.calls++
			if r.Cur > r.Max {
				return syscall.EINVAL
			}
			if r.Max > f.nrOpen || (r.Max > f.limit.Max && !f.privileged) {
				return syscall.EPERM
			}
			f.limit = r
			return nil
		},
	}
}

func TestRaise(t *testing.T) {
	tests := []struct {
		name       string
		sys        fakeSystem
		want       uint64
		wantResult uint64
		wantLimit  syscall.Rlimit
		wantErr    bool
	}{
		{
			name:       "zero leaves limits unchanged",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:       0,
			wantResult: 1024,
			wantLimit:  syscall.Rlimit{Cur: 1024, Max: 4096},
		},
		{
			name:       "soft limit already high enough is never lowered",
			sys:        fakeSystem{nrOpen: 1 << 21, limit: syscall.Rlimit{Cur: 2_000_000, Max: 2_000_000}, privileged: true},
			want:       DefaultNofile,
			wantResult: 2_000_000,
			wantLimit:  syscall.Rlimit{Cur: 2_000_000, Max: 2_000_000},
		},
		{
			name:       "privileged raises soft and hard",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:       DefaultNofile,
			wantResult: DefaultNofile,
			wantLimit:  syscall.Rlimit{Cur: DefaultNofile, Max: DefaultNofile},
		},
		{
			name:       "higher hard limit is kept",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 1 << 20}},
			want:       DefaultNofile,
			wantResult: DefaultNofile,
			wantLimit:  syscall.Rlimit{Cur: DefaultNofile, Max: 1 << 20},
		},
		{
			name:       "capped at nr_open",
			sys:        fakeSystem{nrOpen: 65536, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:       DefaultNofile,
			wantResult: 65536,
			wantLimit:  syscall.Rlimit{Cur: 65536, Max: 65536},
		},
		{
			name:       "already at nr_open",
			sys:        fakeSystem{nrOpen: 65536, limit: syscall.Rlimit{Cur: 65536, Max: 65536}, privileged: true},
			want:       DefaultNofile,
			wantResult: 65536,
			wantLimit:  syscall.Rlimit{Cur: 65536, Max: 65536},
		},
		{
			name:       "unprivileged falls back to the hard limit",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}},
			want:       DefaultNofile,
			wantResult: 4096,
			wantLimit:  syscall.Rlimit{Cur: 4096, Max: 4096},
		},
		{
			name:       "unprivileged with soft already at hard",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 4096, Max: 4096}},
			want:       DefaultNofile,
			wantResult: 4096,
			wantLimit:  syscall.Rlimit{Cur: 4096, Max: 4096},
		},
		{
			name:       "unreadable nr_open still raises as far as permitted",
			sys:        fakeSystem{nrOpen: 65536, nrOpenErr: os.ErrNotExist, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:       DefaultNofile,
			wantResult: 4096,
			wantLimit:  syscall.Rlimit{Cur: 4096, Max: 4096},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sys.system().raise(tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("raise(%d) error = %v, want error %v", tt.want, err, tt.wantErr)
			}
			if got != tt.wantResult {
				t.Errorf("raise(%d) = %d, want %d", tt.want, got, tt.wantResult)
			}
			if tt.sys.limit != tt.wantLimit {
				t.Errorf("limits after raise(%d) = %+v, want %+v", tt.want, tt.sys.limit, tt.wantLimit)
			}
		})
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name       string
		sys        fakeSystem
		want       uint64
		wantResult uint64
		wantLimit  syscall.Rlimit
		wantErr    bool
	}{
		{
			name:       "zero leaves limits unchanged",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}},
			want:       0,
			wantResult: 1024,
			wantLimit:  syscall.Rlimit{Cur: 1024, Max: 4096},
		},
		{
			name:       "sets both limits exactly",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:       50_000,
			wantResult: 50_000,
			wantLimit:  syscall.Rlimit{Cur: 50_000, Max: 50_000},
		},
		{
			name:       "may lower the limits",
			sys:        fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}},
			want:       2048,
			wantResult: 2048,
			wantLimit:  syscall.Rlimit{Cur: 2048, Max: 2048},
		},
		{
			name:      "above nr_open is an error",
			sys:       fakeSystem{nrOpen: 65536, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:      65537,
			wantErr:   true,
			wantLimit: syscall.Rlimit{Cur: 1024, Max: 4096},
		},
		{
			name:      "unprivileged above the hard limit is an error",
			sys:       fakeSystem{nrOpen: 1 << 20, limit: syscall.Rlimit{Cur: 1024, Max: 4096}},
			want:      8192,
			wantErr:   true,
			wantLimit: syscall.Rlimit{Cur: 1024, Max: 4096},
		},
		{
			name:      "unreadable nr_open is an error",
			sys:       fakeSystem{nrOpen: 1 << 20, nrOpenErr: os.ErrNotExist, limit: syscall.Rlimit{Cur: 1024, Max: 4096}, privileged: true},
			want:      2048,
			wantErr:   true,
			wantLimit: syscall.Rlimit{Cur: 1024, Max: 4096},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sys.system().set(tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("set(%d) error = %v, want error %v", tt.want, err, tt.wantErr)
			}
			if got != tt.wantResult {
				t.Errorf("set(%d) = %d, want %d", tt.want, got, tt.wantResult)
			}
			if tt.sys.limit != tt.wantLimit {
				t.Errorf("limits after set(%d) = %+v, want %+v", tt.want, tt.sys.limit, tt.wantLimit)
			}
		})
	}
}

func TestDefaultLimit(t *testing.T) {
	tests := []struct {
		name   string
		nrOpen uint64
		err    error
		want   uint64
	}{
		{"nr_open above default", 1 << 20, nil, DefaultNofile},
		{"nr_open below default", 65536, nil, 65536},
		{"nr_open unreadable", 0, errors.New("no /proc"), DefaultNofile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fakeSystem{nrOpen: tt.nrOpen, nrOpenErr: tt.err}
			if got := f.system().defaultLimit(); got != tt.want {
				t.Errorf("defaultLimit() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBudget(t *testing.T) {
	tests := []struct {
		limit uint64
		want  int
	}{
		{limit: 1_000_000, want: 900_000},
		{limit: 20_000, want: 18_000},
		{limit: 10_240, want: 9_216},               // limit/10 == MinReserve
		{limit: 4096, want: 3072},                  // MinReserve dominates
		{limit: 2048, want: 1024},                  // reserve == limit/2
		{limit: 1024, want: 512},                   // too small for the reserve: split evenly
		{limit: 100, want: 50},                     //
		{limit: 1, want: 1},                        // never 0, which would mean "no limit"
		{limit: 0, want: 1},                        //
		{limit: math.MaxUint64, want: math.MaxInt}, // RLIM_INFINITY
	}
	for _, tt := range tests {
		if got := Budget(tt.limit); got != tt.want {
			t.Errorf("Budget(%d) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}

// hasCapSysResource reports whether CAP_SYS_RESOURCE is in the effective set;
// root in a container often lacks it.
func hasCapSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			const capSysResource = 24
			return caps&(1<<capSysResource) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

// TestHost exercises the real process limits. Raising the hard limit needs
// CAP_SYS_RESOURCE; the part that does is skipped otherwise.
func TestHost(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	got, err := Raise(0)
	if err != nil || got != orig.Cur {
		t.Fatalf("Raise(0) = %d, %v; want %d, nil", got, err, orig.Cur)
	}
	got, err = Raise(orig.Cur)
	if err != nil || got != orig.Cur {
		t.Fatalf("Raise(%d) = %d, %v; want unchanged", orig.Cur, got, err)
	}
	if d := Default(); d == 0 || d > DefaultNofile {
		t.Errorf("Default() = %d, want in (0, %d]", d, DefaultNofile)
	}

	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	nr, err := readNrOpen()
	if err != nil {
		t.Fatal(err)
	}
	if orig.Max >= nr {
		t.Skipf("hard limit %d already at nr_open", orig.Max)
	}
	want := orig.Max + 1
	if !hasCapSysResource(t) {
		// The unprivileged fallback: the soft limit goes up to the hard one.
		if got, err := Raise(want); err != nil || got != orig.Max {
			t.Fatalf("Raise(%d) without CAP_SYS_RESOURCE = %d, %v; want %d, nil", want, got, err, orig.Max)
		}
		t.Skip("raising the hard RLIMIT_NOFILE needs CAP_SYS_RESOURCE")
	}
	if got, err := Raise(want); err != nil || got != want {
		t.Fatalf("Raise(%d) = %d, %v", want, got, err)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if now.Cur != want || now.Max != want {
		t.Errorf("after Raise(%d) limits are %+v", want, now)
	}
	if _, err := Set(nr + 1); err == nil {
		t.Errorf("Set(nr_open+1) succeeded")
	}
}
