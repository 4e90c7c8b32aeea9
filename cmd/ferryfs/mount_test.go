package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/passthrough"
)

func TestMountConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// valid returns flags as the command's defaults leave them.
	valid := func() mountFlags {
		return mountFlags{fsFlags{
			sharedDir:        dir,
			cache:            "auto",
			inodeFileHandles: "prefer",
			rlimitNofile:     1_000_000,
			threadPoolSize:   4,
			logLevel:         "info",
		}}
	}
	tests := []struct {
		name    string
		edit    func(*mountFlags)
		args    []string
		wantErr string // substring; "" means success
		check   func(*testing.T, mountConfig)
	}{
		{
			name: "defaults",
			args: []string{"/mnt"},
			check: func(t *testing.T, c mountConfig) {
				want := passthrough.Options{
					SharedDir:        dir,
					Cache:            passthrough.CacheAuto,
					InodeFileHandles: inodestore.FileHandlesPrefer,
				}
				if c.fs != want {
					t.Errorf("fs options = %+v, want %+v", c.fs, want)
				}
				if c.mountpoint != "/mnt" || c.workers != 4 || c.logLevel != slog.LevelInfo ||
					c.rlimitNofile != 1_000_000 || c.rlimitExact {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "every option",
			edit: func(f *mountFlags) {
				f.cache = "metadata"
				f.writeback = true
				f.allowDirectIO = true
				f.noReaddirplus = true
				f.killprivV2 = true
				f.preserveNoatime = true
				f.readonly = true
				f.xattr = true
				f.inodeFileHandles = "mandatory"
				f.rlimitNofile = 5000
				f.rlimitNofileSet = true
				f.logLevel = "trace"
			},
			args: []string{"mnt"},
			check: func(t *testing.T, c mountConfig) {
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
					InodeFileHandles: inodestore.FileHandlesMandatory,
				}
				if c.fs != want {
					t.Errorf("fs options = %+v, want %+v", c.fs, want)
				}
				if c.rlimitNofile != 5000 || !c.rlimitExact || c.logLevel != levelTrace {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "cache never disables readdirplus",
			edit: func(f *mountFlags) { f.cache = "never" },
			args: []string{"/mnt"},
			check: func(t *testing.T, c mountConfig) {
				if c.fs.Cache != passthrough.CacheNever || !c.fs.NoReaddirplus {
					t.Errorf("cache %v, no readdirplus %v; want never, true", c.fs.Cache, c.fs.NoReaddirplus)
				}
			},
		},
		{
			name: "zero workers means one",
			edit: func(f *mountFlags) { f.threadPoolSize = 0 },
			args: []string{"/mnt"},
			check: func(t *testing.T, c mountConfig) {
				if c.workers != 1 {
					t.Errorf("workers = %d, want 1", c.workers)
				}
			},
		},
		{
			name:    "no mount point",
			wantErr: "expected exactly one MOUNTPOINT argument, got 0",
		},
		{
			name:    "two mount points",
			args:    []string{"/a", "/b"},
			wantErr: "expected exactly one MOUNTPOINT argument, got 2",
		},
		{
			name:    "empty mount point",
			args:    []string{""},
			wantErr: "MOUNTPOINT must not be empty",
		},
		{
			name:    "missing shared dir",
			edit:    func(f *mountFlags) { f.sharedDir = "" },
			args:    []string{"/mnt"},
			wantErr: "--shared-dir is required",
		},
		{
			name:    "shared dir does not exist",
			edit:    func(f *mountFlags) { f.sharedDir = filepath.Join(dir, "missing") },
			args:    []string{"/mnt"},
			wantErr: "shared directory " + filepath.Join(dir, "missing") + " does not exist",
		},
		{
			name:    "shared dir is a file",
			edit:    func(f *mountFlags) { f.sharedDir = file },
			args:    []string{"/mnt"},
			wantErr: "shared directory " + file + " is not a directory",
		},
		{
			name:    "bad cache",
			edit:    func(f *mountFlags) { f.cache = "sometimes" },
			args:    []string{"/mnt"},
			wantErr: `--cache: invalid cache policy "sometimes": want auto, always, never or metadata`,
		},
		{
			name:    "bad inode file handles",
			edit:    func(f *mountFlags) { f.inodeFileHandles = "maybe" },
			args:    []string{"/mnt"},
			wantErr: `--inode-file-handles: invalid inode file handles mode "maybe": want never, prefer or mandatory`,
		},
		{
			name: "fallback is prefer, with a warning",
			edit: func(f *mountFlags) { f.inodeFileHandles = "fallback" },
			args: []string{"/mnt"},
			check: func(t *testing.T, c mountConfig) {
				if c.fs.InodeFileHandles != inodestore.FileHandlesPrefer {
					t.Errorf("inode file handles = %v, want prefer", c.fs.InodeFileHandles)
				}
				if len(c.warnings) != 1 || !strings.Contains(c.warnings[0], "fallback is deprecated") {
					t.Errorf("warnings = %q, want one about fallback", c.warnings)
				}
			},
		},
		{
			name: "cache policy in capitals",
			edit: func(f *mountFlags) { f.cache = "Metadata" },
			args: []string{"/mnt"},
			check: func(t *testing.T, c mountConfig) {
				if c.fs.Cache != passthrough.CacheMetadata {
					t.Errorf("cache = %v, want metadata", c.fs.Cache)
				}
			},
		},
		{
			name:    "bad log level",
			edit:    func(f *mountFlags) { f.logLevel = "verbose" },
			args:    []string{"/mnt"},
			wantErr: `--log-level: invalid log level "verbose": want error, warn, info, debug, trace or off`,
		},
		{
			name:    "negative thread pool",
			edit:    func(f *mountFlags) { f.threadPoolSize = -1 },
			args:    []string{"/mnt"},
			wantErr: "--thread-pool-size must not be negative, got -1",
		},
		{
			name:    "huge thread pool",
			edit:    func(f *mountFlags) { f.threadPoolSize = maxWorkers + 1 },
			args:    []string{"/mnt"},
			wantErr: "--thread-pool-size 1025 exceeds the maximum of 1024",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := valid()
			if tt.edit != nil {
				tt.edit(&f)
			}
			cfg, err := f.config(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("config(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("config(%q): %v", tt.args, err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseLogLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
	}{
		{"error", slog.LevelError},
		{"warn", slog.LevelWarn},
		{"info", slog.LevelInfo},
		{"debug", slog.LevelDebug},
		{"trace", levelTrace},
		{"off", levelOff},
		// virtiofsd's log crate ignores case.
		{"INFO", slog.LevelInfo},
		{"Trace", levelTrace},
	}
	for _, tt := range tests {
		if got, err := parseLogLevel(tt.in); err != nil || got != tt.want {
			t.Errorf("parseLogLevel(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "warning", "err"} {
		if _, err := parseLogLevel(in); err == nil {
			t.Errorf("parseLogLevel(%q) succeeded", in)
		}
	}
}

func TestLoggerLevels(t *testing.T) {
	var b strings.Builder
	log := newLogger(&b, levelTrace)
	log.Log(t.Context(), levelTrace, "deep")
	log.Debug("shallow")
	if out := b.String(); !strings.Contains(out, "level=TRACE msg=deep") || !strings.Contains(out, "level=DEBUG msg=shallow") {
		t.Errorf("trace logger wrote %q", out)
	}

	b.Reset()
	log = newLogger(&b, levelOff)
	log.Error("nobody hears this")
	if b.Len() != 0 {
		t.Errorf("logger with level off wrote %q", b.String())
	}
}
