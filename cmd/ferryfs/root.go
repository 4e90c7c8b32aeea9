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
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Short: "ferryfs is a virtio-fs back-end daemon",
		Use:   "ferryfs --socket-path=PATH --shared-dir=DIR [flags]",
		Long: `ferryfs serves a host directory to a guest over virtio-fs: QEMU connects to
the vhost-user socket and the guest mounts the directory with
"mount -t virtiofs TAG /mnt". It takes virtiofsd's flags.

"ferryfs mount" serves it on a local FUSE mount instead, with the same
options, which is handy for trying the file system without a virtual machine.`,
		Version: versionString(),
		// Errors are printed once, by main, without the usage text that
		// would bury them.
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun '%s --help' for usage.", err, cmd.CommandPath())
	})
	var df daemonFlags
	df.register(root)
	root.RunE = daemonRunE(&df)
	root.Args = cobra.ArbitraryArgs
	root.AddCommand(newMountCmd())
	return root
}
