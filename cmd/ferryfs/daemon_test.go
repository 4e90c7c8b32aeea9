package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/migrate"
	"github.com/ferryfs/ferryfs/passthrough"
)

// parseDaemon runs the command tree with args up to the point where the
// daemon would start, and returns the configuration it would start with
// (ok is false if it would not start) and everything printed.
func parseDaemon(t *testing.T, args ...string) (cfg daemonConfig, ok bool, out string, err error) {
	t.Helper()
	root := newCommandTree(func(_ context.Context, c daemonConfig, _ io.Writer) error {
		cfg, ok = c, true
		return nil
	})
	var b bytes.Buffer
	root.SetOut(&b)
	root.SetErr(&b)
	root.SetArgs(args)
	err = root.Execute()
	return cfg, ok, b.String(), err
}

// ownGroup returns the name and ID of the test's primary group, which the
// test may give a socket to without privileges.
func ownGroup(t *testing.T) (string, int) {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Skipf("no name for the primary group %d: %v", os.Getgid(), err)
	}
	return g.Name, os.Getgid()
}

// TestDaemonFlags checks that every flag ferryfs supports is accepted and
// lands in the configuration, spelled as virtiofsd spells it.
func TestDaemonFlags(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vhost.sock")
	base := []string{"--socket-path", sock, "--shared-dir", dir}
	groupName, gid := ownGroup(t)

	tests := []struct {
		name  string
		args  []string // after base, unless noBase
		check func(*testing.T, daemonConfig)
		// warning is a substring of the one warning wanted; "" means none.
		warning string
		noBase  bool
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c daemonConfig) {
				want := passthrough.Options{
					SharedDir:         dir,
					Cache:             passthrough.CacheAuto,
					InodeFileHandles:  inodestore.FileHandlesPrefer,
					AnnounceSubmounts: true, // virtiofsd's default
				}
				if c.fs != want {
					t.Errorf("fs options = %+v, want %+v", c.fs, want)
				}
				if c.socketPath != sock || c.fd != -1 || c.socketGID != -1 || c.tag != "" {
					t.Errorf("socket config = %+v", c)
				}
				if c.logLevel != slog.LevelInfo || c.syslog || c.rlimitExact || c.workers != 0 {
					t.Errorf("process config = %+v (want no worker pool, as virtiofsd)", c.fsConfig)
				}
			},
		},
		{
			name: "every supported option",
			args: []string{"--cache=metadata", "--writeback", "--allow-direct-io", "--no-readdirplus",
				"--killpriv-v2", "--preserve-noatime", "--readonly", "--xattr", "--inode-file-handles=mandatory",
				"--no-announce-submounts", "--allow-mmap",
				"--rlimit-nofile=5000", "--thread-pool-size=3", "--log-level=debug", "--syslog", "--tag=myfs",
				"--socket-group=" + groupName},
			check: func(t *testing.T, c daemonConfig) {
				want := passthrough.Options{
					SharedDir:        dir,
					Cache:            passthrough.CacheMetadata,
					Writeback:        true,
					AllowDirectIO:    true,
					NoReaddirplus:    true,
					KillprivV2:       true,
					PreserveNoatime:  true,
					Readonly:         true,
					Xattr:            true,
					AllowMmap:        true,
					InodeFileHandles: inodestore.FileHandlesMandatory,
				}
				if c.fs != want {
					t.Errorf("fs options = %+v, want %+v", c.fs, want)
				}
				if c.rlimitNofile != 5000 || !c.rlimitExact || c.workers != 3 || c.logLevel != slog.LevelDebug || !c.syslog {
					t.Errorf("process config = %+v", c.fsConfig)
				}
				if c.tag != "myfs" || c.socketGID != gid {
					t.Errorf("tag %q, socket gid %d; want myfs, %d", c.tag, c.socketGID, gid)
				}
			},
		},
		{
			name: "identity and xattr mapping",
			args: []string{"--translate-uid=map:1000:101000:10", "--translate-gid=squash-guest:0:65534:1",
				"--xattrmap=:map::user.virtiofs.:", "--security-label"},
			check: func(t *testing.T, c daemonConfig) {
				o := c.fs
				if !o.Xattr || !o.SecurityLabel || o.PosixACL || o.XattrMap == nil {
					t.Errorf("fs options = %+v, want xattr (implied), security label and a map", o)
				}
				if got := o.UIDMap.ToGuest(101005); got != 1005 {
					t.Errorf("host uid 101005 maps to guest %d, want 1005", got)
				}
				if got, err := o.GIDMap.ToHost(0); err != nil || got != 65534 {
					t.Errorf("guest gid 0 maps to host %d (%v), want 65534", got, err)
				}
				if host, err := o.XattrMap.ToHost("user.foo"); err != nil || host != "user.virtiofs.user.foo" {
					t.Errorf("user.foo maps to %q (%v)", host, err)
				}
			},
		},
		{
			name: "posix acl implies xattr",
			args: []string{"-o", "posix_acl"},
			check: func(t *testing.T, c daemonConfig) {
				if !c.fs.Xattr || !c.fs.PosixACL {
					t.Errorf("fs options = %+v, want xattr and ACLs", c.fs)
				}
			},
			warning: "-o is deprecated",
		},
		{
			name:   "listening socket by --fd",
			args:   []string{"--fd=3", "--shared-dir", dir},
			noBase: true,
			check: func(t *testing.T, c daemonConfig) {
				if c.fd != 3 || c.socketPath != "" {
					t.Errorf("fd %d, socket path %q; want 3, none", c.fd, c.socketPath)
				}
			},
		},
		{
			name: "--no-killpriv-v2 given last wins",
			args: []string{"--killpriv-v2", "--no-killpriv-v2"},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.KillprivV2 {
					t.Error("killpriv v2 on, want off")
				}
			},
		},
		{
			name: "--killpriv-v2 given last wins",
			args: []string{"--no-killpriv-v2", "--killpriv-v2"},
			check: func(t *testing.T, c daemonConfig) {
				if !c.fs.KillprivV2 {
					t.Error("killpriv v2 off, want on")
				}
			},
		},
		{name: "--no-announce-submounts", args: []string{"--no-announce-submounts"}},
		{name: "--no-announce-submounts given last wins", args: []string{"--announce-submounts", "--no-announce-submounts"}},
		{name: "--announce-submounts", args: []string{"--announce-submounts"}},
		{name: "--sandbox=none", args: []string{"--sandbox=none"}},
		{name: "--sandbox in capitals", args: []string{"--sandbox=NONE"}},
		{name: "--seccomp=none", args: []string{"--seccomp", "none"}},
		{name: "refused switches turned off", args: []string{"--posix-acl=false", "--security-label=false"}},
		{
			name: "--cache and --log-level in capitals",
			args: []string{"--cache=ALWAYS", "--log-level=TRACE"},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.Cache != passthrough.CacheAlways || c.logLevel != levelTrace {
					t.Errorf("cache %v, log level %v; want always, trace", c.fs.Cache, c.logLevel)
				}
			},
		},
		{
			name:    "--inode-file-handles=fallback",
			args:    []string{"--inode-file-handles=fallback"},
			warning: "--inode-file-handles=fallback is deprecated",
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.InodeFileHandles != inodestore.FileHandlesPrefer {
					t.Errorf("inode file handles = %v, want prefer", c.fs.InodeFileHandles)
				}
			},
		},
		{
			name:    "-d is --log-level=debug, over --log-level",
			args:    []string{"--log-level=error", "-d"},
			warning: "-d is deprecated",
			check: func(t *testing.T, c daemonConfig) {
				if c.logLevel != slog.LevelDebug {
					t.Errorf("log level %v, want debug", c.logLevel)
				}
			},
		},
		{name: "-f does nothing", args: []string{"-f"}, warning: "-f is deprecated and has no effect"},
		{
			name:    "--socket is --socket-path",
			args:    []string{"--socket", sock, "--shared-dir", dir},
			noBase:  true,
			warning: "--socket is deprecated",
			check: func(t *testing.T, c daemonConfig) {
				if c.socketPath != sock {
					t.Errorf("socket path %q, want %q", c.socketPath, sock)
				}
			},
		},
		{
			name: "migration defaults",
			check: func(t *testing.T, c daemonConfig) {
				want := migrationConfig{export: passthrough.ExportOptions{Mode: migrate.FindPaths}, onError: migrate.Abort}
				if c.migration != want {
					t.Errorf("migration config %+v, want %+v", c.migration, want)
				}
			},
		},
		{
			name: "migration flags",
			args: []string{"--migration-mode=file-handles", "--migration-on-error", "guest-error", "--migration-verify-handles", "--migration-confirm-paths"},
			check: func(t *testing.T, c daemonConfig) {
				want := migrationConfig{
					export:  passthrough.ExportOptions{Mode: migrate.FileHandles, VerifyHandles: true, ConfirmPaths: true},
					onError: migrate.GuestError,
				}
				if c.migration != want {
					t.Errorf("migration config %+v, want %+v", c.migration, want)
				}
			},
		},
		{
			name:    "--socket-path wins over --socket",
			args:    []string{"--socket", "/elsewhere"},
			warning: "--socket is deprecated",
			check: func(t *testing.T, c daemonConfig) {
				if c.socketPath != sock {
					t.Errorf("socket path %q, want %q", c.socketPath, sock)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !tt.noBase {
				args = append(append([]string(nil), base...), tt.args...)
			}
			cfg, ok, out, err := parseDaemon(t, args...)
			if err != nil || !ok {
				t.Fatalf("ferryfs %q: started %v, error %v; output %q", args, ok, err, out)
			}
			if tt.warning == "" && len(cfg.warnings) != 0 {
				t.Errorf("warnings %q, want none", cfg.warnings)
			}
			if tt.warning != "" && (len(cfg.warnings) != 1 || !strings.Contains(cfg.warnings[0], tt.warning)) {
				t.Errorf("warnings %q, want one saying %q", cfg.warnings, tt.warning)
			}
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

// TestDaemonRefusals checks that every virtiofsd flag whose feature
// ferryfs lacks is refused, with a message naming the flag as given and
// the missing feature, and that nothing starts.
func TestDaemonRefusals(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--socket-path", filepath.Join(dir, "vhost.sock"), "--shared-dir", dir}
	const sandboxing = "is not supported yet (sandboxing)"
	tests := []struct {
		args []string
		want []string // substrings of the error
	}{
		{[]string{"--sandbox=namespace"}, []string{"--sandbox=namespace is not supported yet (sandboxing): ferryfs does not isolate itself", "pass --sandbox=none"}},
		{[]string{"--sandbox", "chroot"}, []string{"--sandbox=chroot is not supported yet (sandboxing)"}},
		{[]string{"--sandbox=Namespace"}, []string{"--sandbox=namespace is not supported yet (sandboxing)"}},
		{[]string{"--seccomp=kill"}, []string{"--seccomp=kill is not supported yet (seccomp filtering): pass --seccomp=none"}},
		{[]string{"--seccomp=log"}, []string{"--seccomp=log is not supported yet (seccomp filtering)"}},
		{[]string{"--seccomp=trap"}, []string{"--seccomp=trap is not supported yet (seccomp filtering)"}},
		{[]string{"--modcaps=+sys_admin:-chown"}, []string{"--modcaps is not supported yet (capability dropping)"}},
		{[]string{"--modcaps="}, []string{"--modcaps is not supported yet (capability dropping)"}},
		{[]string{"--uid-map=:0:1000:1:"}, []string{"--uid-map " + sandboxing}},
		{[]string{"--gid-map=:0:1000:1:", "--gid-map=:1:100000:65536:"}, []string{"--gid-map " + sandboxing}},
		// All refusals at once, so that one run shows them all.
		{[]string{"--uid-map=:0:1000:1:", "--sandbox=chroot", "--seccomp=kill"}, []string{
			"--sandbox=chroot is not supported yet", "--seccomp=kill is not supported yet", "--uid-map " + sandboxing}},
		// Refused before anything else is checked.
		{[]string{"--modcaps=+chown", "--shared-dir="}, []string{"--modcaps is not supported yet"}},
	}
	for _, tt := range tests {
		args := append(append([]string(nil), base...), tt.args...)
		_, started, _, err := parseDaemon(t, args...)
		if started || err == nil {
			t.Errorf("ferryfs %q: started %v, error %v; want a refusal", tt.args, started, err)
			continue
		}
		if !errors.Is(err, errNotSupportedYet) {
			t.Errorf("ferryfs %q: error %v is not errNotSupportedYet", tt.args, err)
		}
		for _, want := range tt.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ferryfs %q: error %q, want it to say %q", tt.args, err, want)
			}
		}
	}
}

// TestCompatOptions checks virtiofsd's deprecated -o form: every option it
// takes, what each sets, and that it warns.
func TestCompatOptions(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	sock := []string{"--socket-path", filepath.Join(dir, "vhost.sock")}
	tests := []struct {
		name  string
		args  []string // after sock; no --shared-dir unless given
		check func(*testing.T, daemonConfig)
	}{
		{
			name: "source",
			args: []string{"-o", "source=" + dir},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.SharedDir != dir || c.fs.Cache != passthrough.CacheAuto {
					t.Errorf("shared dir %q, cache %v; want %q, auto", c.fs.SharedDir, c.fs.Cache, dir)
				}
			},
		},
		{
			name: "source over --shared-dir, whatever the order",
			args: []string{"-o", "source=" + dir, "--shared-dir", other},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.SharedDir != dir {
					t.Errorf("shared dir %q, want %q", c.fs.SharedDir, dir)
				}
			},
		},
		{
			name: "cache=none is never",
			args: []string{"-o", "source=" + dir + ",cache=none"},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.Cache != passthrough.CacheNever || !c.fs.NoReaddirplus {
					t.Errorf("cache %v, no readdirplus %v; want never, true", c.fs.Cache, c.fs.NoReaddirplus)
				}
			},
		},
		{
			name: "cache=always",
			args: []string{"-osource=" + dir + ",cache=always"},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.Cache != passthrough.CacheAlways {
					t.Errorf("cache %v, want always", c.fs.Cache)
				}
			},
		},
		{
			name: "cache=metadata, loglevel=err",
			args: []string{"-o", "source=" + dir, "-o", "cache=metadata,loglevel=err"},
			check: func(t *testing.T, c daemonConfig) {
				if c.fs.Cache != passthrough.CacheMetadata || c.logLevel != slog.LevelError {
					t.Errorf("cache %v, log level %v; want metadata, error", c.fs.Cache, c.logLevel)
				}
			},
		},
		{
			name: "loglevel=warn",
			args: []string{"-o", "source=" + dir + ",loglevel=warn"},
			check: func(t *testing.T, c daemonConfig) {
				if c.logLevel != slog.LevelWarn {
					t.Errorf("log level %v, want warn", c.logLevel)
				}
			},
		},
		{
			name: "-d over loglevel",
			args: []string{"-o", "source=" + dir + ",loglevel=info", "-d"},
			check: func(t *testing.T, c daemonConfig) {
				if c.logLevel != slog.LevelDebug {
					t.Errorf("log level %v, want debug", c.logLevel)
				}
			},
		},
		{
			name: "switches on",
			args: []string{"-o", "source=" + dir + ",xattr,no_readdirplus,writeback,allow_direct_io,killpriv_v2"},
			check: func(t *testing.T, c daemonConfig) {
				o := c.fs
				if !o.Xattr || !o.NoReaddirplus || !o.Writeback || !o.AllowDirectIO || !o.KillprivV2 {
					t.Errorf("fs options = %+v, want xattr, no readdirplus, writeback, direct I/O, killpriv v2", o)
				}
			},
		},
		{
			name: "switches off, over the flags",
			args: []string{"--xattr", "--no-readdirplus", "--writeback", "--allow-direct-io", "--killpriv-v2",
				"-o", "source=" + dir + ",no_xattr,readdirplus,no_writeback,no_allow_direct_io,no_killpriv_v2"},
			check: func(t *testing.T, c daemonConfig) {
				o := c.fs
				if o.Xattr || o.NoReaddirplus || o.Writeback || o.AllowDirectIO || o.KillprivV2 {
					t.Errorf("fs options = %+v, want all off", o)
				}
			},
		},
		{
			name: "what ferryfs does anyway",
			args: []string{"-o", "source=" + dir + ",no_posix_acl,no_security_label,no_posix_lock,no_flock"},
		},
		{
			name: "no_posix_acl over --posix-acl",
			args: []string{"--posix-acl", "-o", "source=" + dir + ",no_posix_acl"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string(nil), sock...), tt.args...)
			cfg, ok, out, err := parseDaemon(t, args...)
			if err != nil || !ok {
				t.Fatalf("ferryfs %q: started %v, error %v; output %q", args, ok, err, out)
			}
			found := false
			for _, w := range cfg.warnings {
				found = found || strings.Contains(w, "-o is deprecated")
			}
			if !found {
				t.Errorf("warnings %q, want one saying -o is deprecated", cfg.warnings)
			}
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

// TestCompatOptionErrors checks that -o refuses what virtiofsd's -o does
// not take, listing what it takes, and refuses as not supported yet what
// ferryfs cannot do, naming the -o option.
func TestCompatOptionErrors(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vhost.sock")
	tests := []struct {
		opt          string
		want         string
		notSupported bool
	}{
		{"flock", "-o flock: unknown option: want source=, cache=, loglevel=, sandbox=, xattrmap=, modcaps= or one of xattr, no_xattr", false},
		{"posix_lock", "-o posix_lock: unknown option", false},
		{"debug", "-o debug: unknown option", false},
		{"", "-o : unknown option", false},
		{"bogus=1", "-o bogus=1: unknown option", false},
		{"log_level=debug", "-o log_level=debug: unknown option", false},
		{"cache=never", `-o cache=never: invalid value "never": want auto, always, none or metadata`, false},
		{"cache=", `-o cache=: invalid value "": want auto, always, none or metadata`, false},
		{"loglevel=error", `-o loglevel=error: invalid value "error": want debug, info, warn or err`, false},
		{"sandbox=none", `-o sandbox=none: invalid value "none": want namespace or chroot`, false},
		{"source=a=b", "-o source=a=b: more than one '=' in an option", false},
		{"sandbox=namespace", "-o sandbox=namespace is not supported yet (sandboxing)", true},
		{"sandbox=chroot", "-o sandbox=chroot is not supported yet (sandboxing)", true},
		{"xattrmap=:map:", `invalid --xattrmap ":map:": xattrmap: rule 1 (byte 5)`, false},
		{"modcaps=+sys_admin", "-o modcaps is not supported yet (capability dropping)", true},
	}
	for _, tt := range tests {
		args := []string{"--socket-path", sock, "-o", "source=" + dir + "," + tt.opt}
		if tt.opt == "" {
			args = []string{"--socket-path", sock, "--shared-dir", dir, "-o", ""}
		}
		_, started, _, err := parseDaemon(t, args...)
		if started || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("-o %q: started %v, error %v; want %q", tt.opt, started, err, tt.want)
			continue
		}
		if got := errors.Is(err, errNotSupportedYet); got != tt.notSupported {
			t.Errorf("-o %q: errors.Is(%v, errNotSupportedYet) = %v, want %v", tt.opt, err, got, tt.notSupported)
		}
	}
}

// TestDaemonCommandLineErrors checks the mutual exclusions and bad values,
// each with a message that says what is wrong and, for values, what would
// be right.
func TestDaemonCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vhost.sock")
	shared := []string{"--shared-dir", dir}
	tests := []struct {
		args []string
		want string
	}{
		{shared, "either --socket-path or --fd is required"},
		{append([]string{"--socket-path", sock, "--fd=3"}, shared...), "--socket-path and --fd are mutually exclusive"},
		{append([]string{"--socket", sock, "--fd=3"}, shared...), "--socket and --fd are mutually exclusive"},
		{append([]string{"--fd=1"}, shared...), "--fd=1 is a standard stream, not a listening socket"},
		{append([]string{"--fd=3", "--socket-group=root"}, shared...), "--socket-group cannot be used with --fd"},
		{append([]string{"--socket-path", sock, "--socket-group=ferryfs-no-such-group"}, shared...), `--socket-group: no group named "ferryfs-no-such-group"`},
		{append([]string{"--socket-path", sock, "--tag="}, shared...), "--tag must not be empty"},
		{append([]string{"--socket-path", sock, "--tag=" + strings.Repeat("t", 37)}, shared...), "is longer than 36 bytes"},
		{[]string{"--socket-path", sock}, "--shared-dir is required"},
		{append([]string{"--socket-path", sock, "--sandbox=jail"}, shared...), `--sandbox: invalid value "jail": want namespace, chroot or none`},
		{append([]string{"--socket-path", sock, "--seccomp=allow"}, shared...), `--seccomp: invalid value "allow": want none, kill, log or trap`},
		{append([]string{"--socket-path", sock, "--migration-mode=copy"}, shared...), `--migration-mode: invalid value "copy": want find-paths or file-handles`},
		{append([]string{"--socket-path", sock, "--migration-on-error=ignore"}, shared...), `--migration-on-error: invalid value "ignore": want abort or guest-error`},
		{append([]string{"--socket-path", sock, "--cache=sometimes"}, shared...), `--cache: invalid cache policy "sometimes": want auto, always, never or metadata`},
		{append([]string{"--socket-path", sock, "--inode-file-handles=maybe"}, shared...), `want never, prefer or mandatory`},
		{append([]string{"--socket-path", sock, "--log-level=verbose"}, shared...), `want error, warn, info, debug, trace or off`},
		{append([]string{"--socket-path", sock, "--killpriv-v2=maybe"}, shared...), `invalid argument "maybe" for "--killpriv-v2"`},
		{append([]string{"--socket-path", sock, "--no-announce-submounts=maybe"}, shared...), `invalid argument "maybe" for "--no-announce-submounts"`},
		{append([]string{"--socket-path", sock, "--translate-uid=map:0:1000"}, shared...), `--translate-uid rule #1 "map:0:1000"`},
		{append([]string{"--socket-path", sock, "--translate-uid=map:0:1000:10", "--translate-uid=guest:5:1:1"}, shared...), `--translate-uid rule #2 "guest:5:1:1": guest UID 5 overlaps`},
		{append([]string{"--socket-path", sock, "--translate-gid=bogus:0:1000:1"}, shared...), `--translate-gid rule #1 "bogus:0:1000:1"`},
		{append([]string{"--socket-path", sock, "--xattrmap=:prefix:all:"}, shared...), `invalid --xattrmap ":prefix:all:"`},
		{append([]string{"--socket-path", sock, "--posix-acl", "--translate-uid=map:0:1000:1"}, shared...), `--posix-acl cannot be combined with --translate-uid`},
		{append([]string{"--socket-path", sock, "stray"}, shared...), `unknown command or argument "stray"`},
		{append([]string{"--socket-path", sock, "--bogus"}, shared...), "unknown flag: --bogus\nRun 'ferryfs --help' for usage."},
	}
	for _, tt := range tests {
		_, started, _, err := parseDaemon(t, tt.args...)
		if started || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ferryfs %q: started %v, error %v; want %q", tt.args, started, err, tt.want)
		}
		if errors.Is(err, errNotSupportedYet) {
			t.Errorf("ferryfs %q: error %v claims a missing feature", tt.args, err)
		}
	}
}

// TestVirtiofsdSpellings checks that the daemon takes every flag of
// virtiofsd 1.13's struct Opt, so that none is rejected as unknown before
// it can be accepted or refused with a reason.
func TestVirtiofsdSpellings(t *testing.T) {
	long := []string{
		"shared-dir", "tag", "socket", "socket-path", "socket-group", "fd", "thread-pool-size",
		"xattr", "posix-acl", "xattrmap", "sandbox", "readonly", "seccomp", "announce-submounts",
		"no-announce-submounts", "inode-file-handles", "cache", "allow-mmap", "no-readdirplus",
		"writeback", "allow-direct-io", "print-capabilities", "modcaps", "log-level", "syslog",
		"rlimit-nofile", "no-killpriv-v2", "killpriv-v2", "security-label", "uid-map", "gid-map",
		"translate-uid", "translate-gid", "preserve-noatime", "migration-mode", "migration-on-error",
		"migration-verify-handles", "migration-confirm-paths", "help", "version",
	}
	root := newRootCmd()
	root.InitDefaultHelpFlag()
	fl := root.Flags()
	for _, name := range long {
		if fl.Lookup(name) == nil {
			t.Errorf("no --%s", name)
		}
	}
	for _, short := range []string{"o", "d", "f", "V", "h"} {
		if fl.ShorthandLookup(short) == nil {
			t.Errorf("no -%s", short)
		}
	}
}

// TestPrintCapabilities checks the JSON libvirt reads, and that it is
// printed whatever else is given.
func TestPrintCapabilities(t *testing.T) {
	const want = `{
  "type": "fs",
  "features": [
    "migrate-precopy",
    "separate-options"
  ]
}
`
	for _, args := range [][]string{
		{"--print-capabilities"},
		{"--print-capabilities", "--sandbox=namespace", "--shared-dir=/nonexistent"},
	} {
		_, started, out, err := parseDaemon(t, args...)
		if err != nil || started || out != want {
			t.Errorf("ferryfs %q: started %v, error %v, printed\n%s\nwant\n%s", args, started, err, out, want)
		}
	}
}

// TestContribBackendDescription checks contrib/50-ferryfs.json against
// QEMU's docs/interop/vhost-user.json schema for a back-end description.
func TestContribBackendDescription(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "contrib", "50-ferryfs.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var desc struct {
		Description string   `json:"description"`
		Type        string   `json:"type"`
		Binary      string   `json:"binary"`
		Tags        []string `json:"tags"`
	}
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields() // the schema's VhostUserBackend has no other members
	if err := dec.Decode(&desc); err != nil {
		t.Fatalf("parse 50-ferryfs.json: %v", err)
	}
	if dec.More() {
		t.Error("50-ferryfs.json holds more than one JSON value")
	}
	if desc.Type != "fs" || desc.Description == "" || !filepath.IsAbs(desc.Binary) || filepath.Base(desc.Binary) != "ferryfs" {
		t.Errorf("description = %+v, want type fs, a description and an absolute path to ferryfs", desc)
	}
}

// TestListenSocketPermissions checks that a new socket is for its owner
// only, or also for --socket-group, as virtiofsd makes it, whatever the
// umask.
func TestListenSocketPermissions(t *testing.T) {
	groupName, gid := ownGroup(t)
	old := unix.Umask(0)
	t.Cleanup(func() { unix.Umask(old) })
	for _, tt := range []struct {
		name     string
		gid      int
		wantMode os.FileMode
	}{
		{"owner only", -1, 0o700},
		{"with --socket-group " + groupName, gid, 0o770},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			fd, err := listenFD(daemonConfig{socketPath: path, fd: -1, socketGID: tt.gid})
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			var st unix.Stat_t
			if err := unix.Lstat(path, &st); err != nil {
				t.Fatal(err)
			}
			if mode := os.FileMode(st.Mode).Perm(); mode != tt.wantMode {
				t.Errorf("socket mode %v, want %v", mode, tt.wantMode)
			}
			if tt.gid >= 0 && int(st.Gid) != tt.gid {
				t.Errorf("socket group %d, want %d", st.Gid, tt.gid)
			}
			if got := unix.Umask(0); got != 0 {
				t.Errorf("umask left at %#o, want it restored to 0", got)
			}
		})
	}
}

// TestListenReplacesOnlySockets checks that a stale socket is replaced and
// anything else at the path is left alone.
func TestListenReplacesOnlySockets(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale")
	fd, err := listenFD(daemonConfig{socketPath: stale, fd: -1, socketGID: -1})
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd) // the socket file stays, as after a crash
	fd, err = listenFD(daemonConfig{socketPath: stale, fd: -1, socketGID: -1})
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	unix.Close(fd)

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := listenFD(daemonConfig{socketPath: file, fd: -1, socketGID: -1}); err == nil ||
		!strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("over a file: error %v, want it refused", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Errorf("file now holds %q, %v", b, err)
	}
}

// TestHelpGroups checks that the daemon's help files its flags under
// headings, and that "ferryfs mount" offers none of the daemon's own.
func TestHelpGroups(t *testing.T) {
	out, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, heading := range []string{groupSocket, groupFS, groupProcess, groupLogging, groupMigration, groupDeprecated, groupOther} {
		i := strings.Index(out, "\n"+heading+":\n")
		if i < 0 || i < last {
			t.Errorf("heading %q missing or out of order in\n%s", heading, out)
		}
		last = i
	}
	_, socket, _ := strings.Cut(out, "\n"+groupSocket+":\n")
	if section, _, _ := strings.Cut(socket, "\n\n"); !strings.Contains(section, "--socket-path") {
		t.Errorf("--socket-path is not under %q", groupSocket)
	}

	// Every flag of the daemon but --help, --version and
	// --print-capabilities has a heading.
	root := newRootCmd()
	root.Flags().VisitAll(func(f *pflag.Flag) {
		if len(f.Annotations[flagGroupKey]) == 0 && f.Name != "version" && f.Name != "print-capabilities" {
			t.Errorf("--%s has no heading", f.Name)
		}
	})

	out, err = run(t, "mount", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--socket-path", "--fd", "--tag", "--sandbox", "--seccomp", "--print-capabilities", "compat-options", "--migration-mode"} {
		if strings.Contains(out, flag) {
			t.Errorf("mount --help offers %s", flag)
		}
	}
	for _, flag := range []string{"--shared-dir", "--cache", "--no-killpriv-v2", "--syslog", "--log-level",
		"--posix-acl", "--security-label", "--xattrmap", "--translate-uid", "--translate-gid"} {
		if !strings.Contains(out, flag) {
			t.Errorf("mount --help does not offer %s", flag)
		}
	}
}

// fakeSyslog records what each severity was sent.
type fakeSyslog struct {
	mu   sync.Mutex
	sent []string // "severity: message"
}

func (f *fakeSyslog) record(sev, msg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, sev+": "+msg)
	return nil
}

func (f *fakeSyslog) Err(m string) error     { return f.record("err", m) }
func (f *fakeSyslog) Warning(m string) error { return f.record("warning", m) }
func (f *fakeSyslog) Info(m string) error    { return f.record("info", m) }
func (f *fakeSyslog) Debug(m string) error   { return f.record("debug", m) }

// TestSyslogLogger checks that each record goes to syslog once, with the
// severity of its level, without a time, and with its attributes.
func TestSyslogLogger(t *testing.T) {
	var w fakeSyslog
	log := newSyslogLogger(&w, levelTrace).With("dev", "fs0").WithGroup("req")
	log.Log(t.Context(), levelTrace, "deep", "op", 1)
	log.Debug("shallow")
	log.Info("hello")
	log.Warn("careful")
	log.Error("broken", "err", "EIO")
	want := []string{
		"debug: level=TRACE msg=deep dev=fs0 req.op=1",
		"debug: level=DEBUG msg=shallow dev=fs0",
		"info: level=INFO msg=hello dev=fs0",
		"warning: level=WARN msg=careful dev=fs0",
		"err: level=ERROR msg=broken dev=fs0 req.err=EIO",
	}
	if strings.Join(w.sent, "\n") != strings.Join(want, "\n") {
		t.Errorf("sent\n%s\nwant\n%s", strings.Join(w.sent, "\n"), strings.Join(want, "\n"))
	}

	// Below the level, nothing is sent.
	w.sent = nil
	newSyslogLogger(&w, slog.LevelWarn).Info("quiet")
	if len(w.sent) != 0 {
		t.Errorf("sent %q below the level", w.sent)
	}
}

// TestSyslogLoggerConcurrent checks that records logged at once from many
// goroutines keep their own severities.
func TestSyslogLoggerConcurrent(t *testing.T) {
	var w fakeSyslog
	log := newSyslogLogger(&w, slog.LevelDebug)
	levels := map[slog.Level]string{slog.LevelDebug: "debug", slog.LevelInfo: "info", slog.LevelWarn: "warning", slog.LevelError: "err"}
	var wg sync.WaitGroup
	for level := range levels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				log.Log(context.Background(), level, "m")
			}
		}()
	}
	wg.Wait()
	if len(w.sent) != 800 {
		t.Fatalf("sent %d records, want 800", len(w.sent))
	}
	for _, s := range w.sent {
		sev, rest, _ := strings.Cut(s, ": ")
		level := strings.TrimPrefix(strings.Fields(rest)[0], "level=")
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil || levels[l] != sev {
			t.Fatalf("record %q sent as %s", rest, sev)
		}
	}
}

// TestOpenLoggerStderr checks that without --syslog the logs go to stderr.
func TestOpenLoggerStderr(t *testing.T) {
	var b strings.Builder
	log, closeLog := openLogger(fsConfig{logLevel: slog.LevelInfo}, &b)
	defer closeLog()
	log.Info("to stderr")
	if !strings.Contains(b.String(), "msg=\"to stderr\"") {
		t.Errorf("stderr got %q", b.String())
	}
}
