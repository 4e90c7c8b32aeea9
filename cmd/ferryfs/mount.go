package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferryfs/ferryfs/fusedev"
	"github.com/ferryfs/ferryfs/idmap"
	"github.com/ferryfs/ferryfs/inodestore"
	"github.com/ferryfs/ferryfs/internal/fdlimit"
	"github.com/ferryfs/ferryfs/passthrough"
	"github.com/ferryfs/ferryfs/xattrmap"
)

// maxWorkers bounds --thread-pool-size: every worker holds a request and a
// reply buffer of a little over 1 MiB each.
const maxWorkers = 1024

// lowGuestFDs is the guest descriptor budget below which we warn, as
// virtiofsd does; the number is as arbitrary as virtiofsd's.
const lowGuestFDs = 128

// mountFlags is the command line of "ferryfs mount" as cobra parsed it.
type mountFlags struct {
	fsFlags
}

// fsFlags are the flags that configure the file system and the process,
// the same for the virtio-fs daemon and for "ferryfs mount".
type fsFlags struct {
	sharedDir        string
	cache            string
	writeback        bool
	allowDirectIO    bool
	noReaddirplus    bool
	killprivV2       bool
	preserveNoatime  bool
	readonly         bool
	xattr            bool
	posixACL         bool
	securityLabel    bool
	xattrmap         string
	translateUID     []string
	translateGID     []string
	inodeFileHandles string
	rlimitNofile     uint64
	// rlimitNofileSet is whether --rlimit-nofile was given: an explicit
	// value is set exactly, the default only ever raises the limit.
	rlimitNofileSet bool
	threadPoolSize  int
	logLevel        string
	syslog          bool
}

// mountConfig is a validated mountFlags.
type mountConfig struct {
	mountpoint string
	fsConfig
}

// fsConfig is a validated fsFlags.
type fsConfig struct {
	// fs lacks MaxGuestFDs and Logger, which are known only at run time.
	fs           passthrough.Options
	rlimitNofile uint64
	rlimitExact  bool
	workers      int
	logLevel     slog.Level
	syslog       bool
	// warnings are about deprecated spellings, logged once the logger
	// is set up.
	warnings []string
}

func defaultWorkers() int { return max(2, 2*runtime.GOMAXPROCS(0)) }

func newMountCmd() *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount --shared-dir DIR MOUNTPOINT [flags]",
		Short: "Serve a shared directory on a local FUSE mount",
		Long: `Mount serves the shared directory on MOUNTPOINT through the kernel's FUSE
driver, with the same file system and options the virtio-fs daemon uses. It
runs in the foreground until SIGINT or SIGTERM, then unmounts; it also exits
when someone else unmounts MOUNTPOINT. It needs root (CAP_SYS_ADMIN).`,
		Args: cobra.ArbitraryArgs, // counted by config, for a clearer message
		RunE: func(cmd *cobra.Command, args []string) error {
			f.rlimitNofileSet = cmd.Flags().Changed("rlimit-nofile")
			cfg, err := f.config(args)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runMount(ctx, stop, cfg, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	f.register(fl, "number of workers serving requests from /dev/fuse (0 means one)", defaultWorkers())
	return cmd
}

// register adds the file system, process and logging flags to fl.
func (f *fsFlags) register(fl *pflag.FlagSet, poolHelp string, poolDefault int) {
	fl.StringVar(&f.sharedDir, "shared-dir", "", "shared directory path (required)")
	fl.StringVar(&f.cache, "cache", "auto", "the caching policy the file system should use (auto, always, never, metadata)")
	fl.BoolVar(&f.writeback, "writeback", false, "enable writeback cache")
	fl.BoolVar(&f.allowDirectIO, "allow-direct-io", false, "honor the O_DIRECT flag passed down by applications")
	fl.BoolVar(&f.noReaddirplus, "no-readdirplus", false, "disable support for READDIRPLUS operations")
	fl.BoolVar(&f.killprivV2, "killpriv-v2", false, "enable KILLPRIV V2 support")
	negatedBoolVar(fl, &f.killprivV2, "no-killpriv-v2", "disable KILLPRIV V2 support")
	fl.BoolVar(&f.preserveNoatime, "preserve-noatime", false, "preserve O_NOATIME instead of clearing it")
	fl.BoolVar(&f.readonly, "readonly", false, "prevent modifications to the file system")
	fl.BoolVar(&f.xattr, "xattr", false, "enable support for extended attributes")
	fl.StringVar(&f.inodeFileHandles, "inode-file-handles", "prefer", "when to use file handles to reference inodes instead of O_PATH file descriptors (never, prefer, mandatory); virtiofsd 1.13.0 defaulted to never")
	fl.BoolVar(&f.posixACL, "posix-acl", false, "enable support for POSIX ACLs (implies --xattr)")
	fl.BoolVar(&f.securityLabel, "security-label", false, "set the security label the guest gives a new file on it (FUSE_SECURITY_CTX; implies --xattr)")
	fl.StringVar(&f.xattrmap, "xattrmap", "", "rules for translating extended attribute names between host and guest, in virtiofsd's syntax (implies --xattr)")
	fl.StringArrayVar(&f.translateUID, "translate-uid", nil, "translate UIDs between guest and host, as TYPE:SOURCE:TARGET:COUNT (TYPE guest, host, map, squash-guest or squash-host) or forbid-guest:SOURCE:COUNT; repeatable")
	fl.StringArrayVar(&f.translateGID, "translate-gid", nil, "translate GIDs between guest and host, like --translate-uid; repeatable")
	setFlagGroup(fl, groupFS, "shared-dir", "cache", "writeback", "allow-direct-io", "no-readdirplus",
		"killpriv-v2", "no-killpriv-v2", "preserve-noatime", "readonly", "xattr", "inode-file-handles",
		"posix-acl", "security-label", "xattrmap", "translate-uid", "translate-gid")

	fl.IntVar(&f.threadPoolSize, "thread-pool-size", poolDefault, poolHelp)
	fl.Uint64Var(&f.rlimitNofile, "rlimit-nofile", fdlimit.Default(), "set maximum number of file descriptors (0 leaves rlimit unchanged); the default, min(1000000, /proc/sys/fs/nr_open), only ever raises it")
	setFlagGroup(fl, groupProcess, "thread-pool-size", "rlimit-nofile")

	fl.StringVar(&f.logLevel, "log-level", "info", "log level (error, warn, info, debug, trace, off)")
	fl.BoolVar(&f.syslog, "syslog", false, "log to syslog instead of stderr")
	setFlagGroup(fl, groupLogging, "log-level", "syslog")
}

// negatedBoolVar adds the "--no-X" half of the flag pair whose other half
// sets *p: giving it sets *p to false. Both halves write *p, so the one
// given last wins, as with virtiofsd's pairs.
func negatedBoolVar(fl *pflag.FlagSet, p *bool, name, usage string) {
	fl.Var(negatedBool{p}, name, usage)
	fl.Lookup(name).NoOptDefVal = "true"
}

// negatedBool is a pflag.Value holding the negation of *p.
type negatedBool struct{ p *bool }

func (b negatedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b.p = !v
	return nil
}

func (b negatedBool) String() string { return strconv.FormatBool(!*b.p) }

// Type says "bool" so that the help shows no value placeholder.
func (b negatedBool) Type() string { return "bool" }

// config validates the flags and the arguments.
func (f *mountFlags) config(args []string) (mountConfig, error) {
	var cfg mountConfig
	if len(args) != 1 {
		return cfg, fmt.Errorf("expected exactly one MOUNTPOINT argument, got %d", len(args))
	}
	if args[0] == "" {
		return cfg, errors.New("MOUNTPOINT must not be empty")
	}
	cfg.mountpoint = args[0]
	fc, err := f.fsFlags.config()
	cfg.fsConfig = fc
	// /dev/fuse is only read by workers.
	cfg.workers = max(cfg.workers, 1)
	return cfg, err
}

// config validates the file system flags.
func (f *fsFlags) config() (fsConfig, error) {
	var cfg fsConfig
	if f.sharedDir == "" {
		return cfg, errors.New("--shared-dir is required")
	}
	fi, err := os.Stat(f.sharedDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cfg, fmt.Errorf("shared directory %s does not exist", f.sharedDir)
	case err != nil:
		return cfg, fmt.Errorf("shared directory: %w", err)
	case !fi.IsDir():
		return cfg, fmt.Errorf("shared directory %s is not a directory", f.sharedDir)
	}

	// virtiofsd compares cache policy names without regard to case.
	cache, err := passthrough.ParseCachePolicy(strings.ToLower(f.cache))
	if err != nil {
		return cfg, fmt.Errorf("--cache: %w", err)
	}
	handleMode := f.inodeFileHandles
	if handleMode == "fallback" {
		// virtiofsd still takes its old name for prefer.
		cfg.warnings = append(cfg.warnings, "--inode-file-handles=fallback is deprecated: use --inode-file-handles=prefer")
		handleMode = "prefer"
	}
	handles, err := inodestore.ParseFileHandleMode(handleMode)
	if err != nil {
		return cfg, fmt.Errorf("--inode-file-handles: %w", err)
	}
	if cfg.logLevel, err = parseLogLevel(f.logLevel); err != nil {
		return cfg, fmt.Errorf("--log-level: %w", err)
	}
	switch {
	case f.threadPoolSize < 0:
		return cfg, fmt.Errorf("--thread-pool-size must not be negative, got %d", f.threadPoolSize)
	case f.threadPoolSize > maxWorkers:
		return cfg, fmt.Errorf("--thread-pool-size %d exceeds the maximum of %d", f.threadPoolSize, maxWorkers)
	}
	cfg.workers = f.threadPoolSize
	cfg.rlimitNofile = f.rlimitNofile
	cfg.rlimitExact = f.rlimitNofileSet
	cfg.syslog = f.syslog

	uids, err := idmap.ParseUIDMap(f.translateUID)
	if err != nil {
		return cfg, err // it names the flag and the rule
	}
	gids, err := idmap.ParseGIDMap(f.translateGID)
	if err != nil {
		return cfg, err
	}
	if f.posixACL && (!uids.IsIdentity() || !gids.IsIdentity()) {
		// As virtiofsd: ACLs name users and groups inside the attribute
		// value, which is passed through untranslated.
		return cfg, errors.New("--posix-acl cannot be combined with --translate-uid or --translate-gid: the ids inside ACLs are not translated")
	}
	var xattrs *xattrmap.Map
	if f.xattrmap != "" {
		if xattrs, err = xattrmap.Parse(f.xattrmap); err != nil {
			return cfg, fmt.Errorf("invalid --xattrmap %q: %w", f.xattrmap, err)
		}
	}

	cfg.fs = passthrough.Options{
		SharedDir: f.sharedDir,
		Cache:     cache,
		Writeback: f.writeback,
		// As virtiofsd: with nothing cached, READDIRPLUS would fetch
		// attributes the kernel throws away at once.
		NoReaddirplus:   f.noReaddirplus || cache == passthrough.CacheNever,
		AllowDirectIO:   f.allowDirectIO,
		KillprivV2:      f.killprivV2,
		PreserveNoatime: f.preserveNoatime,
		Readonly:        f.readonly,
		// As virtiofsd, each of these implies --xattr.
		Xattr:            f.xattr || f.posixACL || f.securityLabel || xattrs != nil,
		PosixACL:         f.posixACL,
		SecurityLabel:    f.securityLabel,
		XattrMap:         xattrs,
		UIDMap:           uids,
		GIDMap:           gids,
		InodeFileHandles: handles,
	}
	return cfg, nil
}

// runMount serves cfg until ctx is done, then unmounts. unhandle stops
// catching the signals that cancel ctx, so that a second one kills a daemon
// whose unmount hangs.
func runMount(ctx context.Context, unhandle func(), cfg mountConfig, stderr io.Writer) error {
	log, srv, _, closeFS, err := startFS(cfg.fsConfig, stderr)
	if err != nil {
		return err
	}
	defer closeFS()
	opts := cfg.fs

	// default_permissions, as a guest's virtio-fs mount has: the daemon
	// opens files as itself, so the kernel checks the callers' access.
	conn, err := fusedev.Mount(cfg.mountpoint, fusedev.MountOptions{ReadOnly: opts.Readonly, DefaultPermissions: true, Logger: log})
	if err != nil {
		return err
	}
	defer conn.Close() // before pfs.Close: no request may be in flight then

	served := make(chan error, 1)
	go func() { served <- conn.Serve(srv, cfg.workers) }()
	log.Info("mounted", "mountpoint", conn.Mountpoint(), "shared_dir", opts.SharedDir,
		"cache", opts.Cache, "workers", cfg.workers)

	select {
	case err := <-served:
		if err != nil {
			// Leave no dead mount behind. Abort the connection
			// first: unmounting may write back cached data, and
			// nobody would answer.
			conn.Close()
			if uerr := conn.Unmount(); uerr != nil {
				log.Error("unmount after failure", "err", uerr)
			}
			return fmt.Errorf("serve %s: %w", conn.Mountpoint(), err)
		}
		log.Info("unmounted externally", "mountpoint", conn.Mountpoint())
		return nil
	case <-ctx.Done():
	}
	unhandle()
	log.Info("unmounting", "mountpoint", conn.Mountpoint())
	if err := conn.Unmount(); err != nil {
		return err
	}
	if err := <-served; err != nil {
		return fmt.Errorf("serve %s: %w", conn.Mountpoint(), err)
	}
	log.Info("unmounted", "mountpoint", conn.Mountpoint())
	return nil
}

// setRlimit applies --rlimit-nofile as virtiofsd does and returns the limit
// in force: an explicit value exactly, the default only ever upwards.
func setRlimit(n uint64, exact bool) (uint64, error) {
	if exact {
		limit, err := fdlimit.Set(n)
		if err != nil {
			return 0, fmt.Errorf("--rlimit-nofile: %w", err)
		}
		return limit, nil
	}
	limit, err := fdlimit.Raise(n)
	if err != nil {
		return 0, fmt.Errorf("raise the open file limit: %w", err)
	}
	return limit, nil
}
