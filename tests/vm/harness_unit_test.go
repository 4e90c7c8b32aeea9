package vm

// Tests of the harness's pieces that need no virtual machine (and no root).

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpioMember is one entry read back by readCpio.
type cpioMember struct {
	name         string
	mode         uint32
	data         string
	major, minor uint32
}

// readCpio parses a newc archive, independently of cpioWriter's code.
func readCpio(t *testing.T, b []byte) []cpioMember {
	t.Helper()
	var out []cpioMember
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header at %d field %d: %v", off, i, err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), int(field(6)), field(9), field(10), int(field(11))
		name := string(b[off+110 : off+110+namesize-1])
		dataOff := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return out
		}
		out = append(out, cpioMember{name, mode, string(b[dataOff : dataOff+size]), rmaj, rmin})
		off = align(dataOff + size)
	}
}

func TestCpioWriter(t *testing.T) {
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.add(cpioEntry{name: "dir", mode: syscall.S_IFDIR | 0o755})
	c.add(cpioEntry{name: "dir/file", mode: syscall.S_IFREG | 0o644, data: []byte("hello")})
	c.add(cpioEntry{name: "dir/link", mode: syscall.S_IFLNK | 0o777, data: []byte("file")})
	c.add(cpioEntry{name: "dev/console", mode: syscall.S_IFCHR | 0o600, major: 5, minor: 1})
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}
	got := readCpio(t, buf.Bytes())
	want := []cpioMember{
		{"dir", syscall.S_IFDIR | 0o755, "", 0, 0},
		{"dir/file", syscall.S_IFREG | 0o644, "hello", 0, 0},
		{"dir/link", syscall.S_IFLNK | 0o777, "file", 0, 0},
		{"dev/console", syscall.S_IFCHR | 0o600, "", 5, 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d members %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("member %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestInitramfsContents(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := &Assets{Busybox: write("busybox", "BB"), ModulesDir: dir, Modules: []string{"m1", "m2"}}
	write("m1.ko", "M1")
	write("m2.ko", "M2")
	r := initramfs{assets: a, tag: "tag", files: map[string]string{"/opt/x/prog": write("prog", "P")}, cmds: []string{"echo one", "echo two"}}
	dst := filepath.Join(dir, "initrd")
	if err := r.write(dst); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]cpioMember{}
	var order []string
	for _, m := range readCpio(t, raw) {
		members[m.name] = m
		order = append(order, m.name)
	}
	for name, want := range map[string]string{
		"bin/busybox": "BB", "bin/sh": "busybox", "lib/ferryfs-modules/m1.ko": "M1",
		"opt/x/prog": "P", "ferryfs-cmds/001.sh": "#!/bin/sh\necho two\n",
	} {
		if m, ok := members[name]; !ok || m.data != want {
			t.Errorf("%s: %+v (present %v), want content %q", name, m, ok, want)
		}
	}
	for _, d := range []string{"opt", "opt/x", "dev", "proc", "sys", "mnt", "tmp"} {
		if members[d].mode != syscall.S_IFDIR|0o755 {
			t.Errorf("directory %s: mode %#o", d, members[d].mode)
		}
	}
	if c := members["dev/console"]; c.mode != syscall.S_IFCHR|0o600 || c.major != 5 || c.minor != 1 {
		t.Errorf("dev/console: %+v", c)
	}
	// Every member's directory comes before it.
	seen := map[string]bool{".": true}
	for _, name := range order {
		if !seen[filepath.Dir(name)] {
			t.Errorf("%s comes before its directory", name)
		}
		seen[name] = true
	}
	init := members["init"].data
	for _, want := range []string{"insmod /lib/ferryfs-modules/m1.ko", "insmod /lib/ferryfs-modules/m2.ko",
		"mount -t virtiofs 'tag' /mnt", "/bin/sh /ferryfs-cmds/000.sh", "/bin/sh /ferryfs-cmds/001.sh", "poweroff -f"} {
		if !strings.Contains(init, want) {
			t.Errorf("/init lacks %q:\n%s", want, init)
		}
	}
	if strings.Index(init, "m1.ko") > strings.Index(init, "m2.ko") {
		t.Error("/init loads the modules out of order")
	}
}

func TestParseConsole(t *testing.T) {
	console := strings.Join([]string{
		"SeaBIOS junk",
		"FERRYFS-BOOTED\r",
		"FERRYFS-MOUNTED",
		"FERRYFS-CMD-BEGIN 0",
		"FERRYFS-RESULT rename PASS - (0.01s)",
		"[   3.1] kernel noise FERRYFS-RESULT xattr SKIP xattrs are off (0.00s)",
		"FERRYFS-RESULT large-file FAIL read back: short (1.00s)",
		"FERRYFS-DONE pass=1 fail=1 skip=1",
		"FERRYFS-CMD-END 0 rc=1",
		"FERRYFS-CMD-BEGIN 1",
		"    --- PASS: TestPosix/AppendWrite (0.03s)",
		"    --- FAIL: TestPosix/FcntlFlockLocksFile (0.01s)",
		"--- FAIL: TestPosix (8.84s)",
		"FERRYFS-BENCH seq-read 1.5",
		"FERRYFS-UMOUNT rc=0",
		"FERRYFS-GUEST-END",
	}, "\n")
	r := &Result{Console: console}
	r.parseConsole([]string{"a", "b", "c"})
	if !r.Booted || !r.Mounted || !r.Finished || r.InitError != "" || r.UmountExitCode != 0 {
		t.Errorf("state: %s umount=%d", r.describe(), r.UmountExitCode)
	}
	want := []CommandResult{{"a", true, 1}, {"b", true, -1}, {"c", false, -1}}
	for i := range want {
		if r.Commands[i] != want[i] {
			t.Errorf("command %d: %+v, want %+v", i, r.Commands[i], want[i])
		}
	}
	if len(r.Checks) != 3 || r.CheckStatus("xattr") != "SKIP" || r.Checks[2].Detail != "read back: short (1.00s)" {
		t.Errorf("checks: %+v", r.Checks)
	}
	if r.Summary != (Summary{Seen: true, Pass: 1, Fail: 1, Skip: 1}) {
		t.Errorf("summary: %+v", r.Summary)
	}
	posix := r.GoTestsUnder("TestPosix")
	if len(posix) != 2 || posix["AppendWrite"] != "PASS" || posix["FcntlFlockLocksFile"] != "FAIL" {
		t.Errorf("posix: %v", posix)
	}
	if len(r.Bench) != 1 || r.Bench[0] != (BenchResult{"seq-read", 1.5}) {
		t.Errorf("bench: %+v", r.Bench)
	}

	r = &Result{Console: "FERRYFS-BOOTED\nFERRYFS-INIT-FAIL mount -t virtiofs 'x' /mnt\n"}
	r.parseConsole(nil)
	if r.InitError != "mount -t virtiofs 'x' /mnt" || r.err(time.Minute, "") == nil {
		t.Errorf("init failure: %q, err %v", r.InitError, r.err(time.Minute, ""))
	}
}

func TestReadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	content := "CHROOT='/c'\nMODULES='a b'\n\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := readEnvFile(p)
	if err != nil || env["CHROOT"] != "/c" || env["MODULES"] != "a b" {
		t.Errorf("readEnvFile: %v, %v", env, err)
	}
	if _, err := assetsFromEnv(env); err == nil || !strings.Contains(err.Error(), "KERNEL") {
		t.Errorf("assetsFromEnv of an incomplete env: %v, want an error naming KERNEL", err)
	}
	if err := os.WriteFile(p, []byte("CHROOT=/unquoted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readEnvFile(p); err == nil {
		t.Error("readEnvFile accepted an unquoted value")
	}
}

func TestChrootPath(t *testing.T) {
	a := &Assets{ChrootMountpoint: "/e2e"}
	r := &Run{Assets: a, Dir: "/tmp/run", SharedDir: "/tmp/run/shared"}
	outside := &Run{Assets: a, Dir: "/tmp/run", SharedDir: "/srv/data"}
	for _, tc := range []struct {
		run        *Run
		host, want string
	}{
		{r, "/tmp/run/x.sock", "/e2e/x.sock"},
		{r, "/tmp/run", "/e2e"},
		{r, "/tmp/run/shared/f", "/e2e/shared/f"},
		{outside, "/srv/data/f", "/e2e/shared/f"},
		{outside, "/tmp/run/x.sock", "/e2e/x.sock"},
		{r, "/tmp/runner/x", ""},
		{r, "/etc/passwd", ""},
	} {
		got, err := tc.run.ChrootPath(tc.host)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ChrootPath(%s) = %q, %v; want %q", tc.host, got, err, tc.want)
		}
	}
}

func TestProcCPUTime(t *testing.T) {
	// Burn a little CPU so the figure is not zero.
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	d, err := procCPUTime(os.Getpid())
	if err != nil || d <= 0 {
		t.Errorf("procCPUTime(self) = %v, %v; want a positive duration", d, err)
	}
}

func TestUnixListening(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.sock")
	if ok, err := unixListening(p); ok || err != nil {
		t.Fatalf("before listen: %v, %v", ok, err)
	}
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ok, err := unixListening(p); !ok || err != nil {
		t.Errorf("after listen: %v, %v; want true", ok, err)
	}
}
