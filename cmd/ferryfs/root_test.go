package main

import (
	"bytes"
	"strings"
	"testing"
)

// run executes the command tree with args and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersion(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })

	version = "v1.2.3"
	out, err := run(t, "--version")
	if err != nil || out != "ferryfs v1.2.3\n" {
		t.Errorf("ferryfs --version = %q, %v; want %q", out, err, "ferryfs v1.2.3\n")
	}

	version = ""
	if v := versionString(); v == "" || v == "(devel)" {
		t.Errorf("versionString() without ldflags = %q", v)
	}
}

func TestRootHelp(t *testing.T) {
	out, err := run(t)
	if err != nil {
		t.Fatalf("ferryfs: %v", err)
	}
	if !strings.Contains(out, "Usage:") || !strings.Contains(out, "mount") {
		t.Errorf("ferryfs without arguments printed %q, want help listing mount", out)
	}
}

func TestCommandLineErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command or argument "frobnicate"`},
		{[]string{"mount", "--bogus"}, "unknown flag: --bogus\nRun 'ferryfs mount --help' for usage."},
		{[]string{"mount", "--rlimit-nofile=-1", "/mnt"}, `invalid argument "-1" for "--rlimit-nofile"`},
		{[]string{"mount", "/mnt"}, "--shared-dir is required"},
		{[]string{"mount", "--shared-dir", "/"}, "expected exactly one MOUNTPOINT argument, got 0"},
		{[]string{"mount", "--shared-dir", "/", "--cache", "x", "/mnt"}, "--cache: invalid cache policy"},
	}
	for _, tt := range tests {
		_, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ferryfs %q: error %v, want %q", tt.args, err, tt.want)
		}
	}
}
