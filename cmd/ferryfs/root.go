package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release version, set at link time with
// -ldflags "-X main.version=v1.2.3". Empty means: ask the build info.
var version string

// versionString returns version, else the module version the go command
// stamped into the binary, else "devel".
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newRootCmd returns the ferryfs command tree.
func newRootCmd() *cobra.Command { return newCommandTree(runDaemon) }

// newCommandTree returns the ferryfs command tree, whose root runs the
// daemon with daemon.
func newCommandTree(daemon daemonFunc) *cobra.Command {
	root := &cobra.Command{
		Short: "ferryfs is a virtio-fs back-end daemon",
		Use:   "ferryfs --socket-path=PATH --shared-dir=DIR [flags]",
		Long: `ferryfs serves a host directory to a guest over virtio-fs: QEMU connects to
the vhost-user socket and the guest mounts the directory with
"mount -t virtiofs TAG /mnt".

It takes virtiofsd 1.13's command line, so libvirt, Kata Containers or a
host agent can run it in place of virtiofsd. The flags mean what they mean
there, with these differences: ferryfs neither sandboxes itself nor
installs a seccomp filter, so --sandbox and --seccomp default to none; and
a virtiofsd flag whose feature ferryfs does not have yet is refused with
an error saying so, never ignored.

"ferryfs mount" serves the directory on a local FUSE mount instead, with the
same file system options, which is handy for trying the file system without
a virtual machine.`,
		Version: versionString(),
		// Errors are printed once, by main, without the usage text that
		// would bury them.
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{err: err, command: cmd.CommandPath()}
	})
	setGroupedUsage(root)
	var df daemonFlags
	df.register(root)
	// -V as virtiofsd's; cobra would make it -v.
	root.Flags().BoolP("version", "V", false, "print version")
	root.RunE = daemonRunE(&df, daemon)
	root.Args = cobra.ArbitraryArgs
	root.AddCommand(newMountCmd(), newStateCmd())
	return root
}

// usageError is a command-line error followed by where to read the usage,
// on a line of its own as cobra's own errors put it.
type usageError struct {
	err     error
	command string
}

func (e usageError) Error() string {
	return fmt.Sprintf("%v\nRun '%s --help' for usage.", e.err, e.command)
}

func (e usageError) Unwrap() error { return e.err }
