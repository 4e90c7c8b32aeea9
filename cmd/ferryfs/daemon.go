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
	"os/user"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/fdlimit"
	"github.com/ferryfs/ferryfs/migrate"
	"github.com/ferryfs/ferryfs/passthrough"
	"github.com/ferryfs/ferryfs/vhostuser"
	"github.com/ferryfs/ferryfs/virtiofs"
)

// daemonFlags is the command line of the virtio-fs daemon (ferryfs with no
// subcommand): virtiofsd 1.13's, spelled as virtiofsd spells it.
type daemonFlags struct {
	fsFlags
	socketPath  string
	socketGroup string
	fd          int
	tag         string

	printCapabilities bool
	stateDump         string

	// The flags below are virtiofsd's for features ferryfs does not have
	// yet. They are parsed so that giving one is refused with a message
	// saying so (see refuseUnsupported), never silently ignored.
	allowMmap              bool
	announceSubmounts      bool
	sandbox                string
	seccomp                string
	modcaps                string
	uidMap                 []string
	gidMap                 []string
	migrationMode          string
	migrationOnError       string
	migrationVerifyHandles bool
	migrationConfirmPaths  bool

	// Deprecated spellings virtiofsd still takes.
	socket           string   // --socket, for --socket-path
	compatOptions    []string // -o, see applyCompatOptions
	compatDebug      bool     // -d, for --log-level=debug
	compatForeground bool     // -f, which does nothing

	// given maps the name of every flag set on the command line to how
	// it was set ("--posix-acl", or "-o posix_acl" for the -o form), so
	// that refusals name what the user wrote.
	given map[string]string
}

// daemonConfig is a validated daemonFlags.
type daemonConfig struct {
	fsConfig
	socketPath string
	socketGID  int // -1 unless --socket-group
	fd         int // -1 unless --fd
	tag        string
	stateDump  string // --state-dump
	migration  migrationConfig
}

func (f *daemonFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.socketPath, "socket-path", "", "vhost-user socket path")
	fl.StringVar(&f.socketGroup, "socket-group", "", "name of the group that may connect to the socket: it is made group-owned and mode 0770 instead of 0700")
	fl.IntVar(&f.fd, "fd", -1, "file descriptor number of an already listening vhost-user socket")
	fl.StringVar(&f.tag, "tag", "", "tag the device reports to the front-end (the front-end's own tag is used when unset)")
	setFlagGroup(fl, groupSocket, "socket-path", "socket-group", "fd", "tag")

	f.fsFlags.register(fl, "number of worker threads serving requests; 0 (the default, as in virtiofsd) serves each request on the thread that takes it off its queue", 0)
	fl.BoolVar(&f.allowMmap, "allow-mmap", false, "with --cache=never or metadata, let the guest mmap shared files (FUSE_DIRECT_IO_ALLOW_MMAP)")
	fl.BoolVar(&f.announceSubmounts, "announce-submounts", true, "tell the guest which directories are mount points (the default)")
	negatedBoolVar(fl, &f.announceSubmounts, "no-announce-submounts", "do not tell the guest which directories are mount points")
	setFlagGroup(fl, groupFS, "allow-mmap", "announce-submounts", "no-announce-submounts")

	fl.StringVar(&f.sandbox, "sandbox", "none", "sandbox mechanism to isolate the daemon (none; namespace and chroot are not supported yet). virtiofsd's default is namespace: ferryfs does not sandbox itself, so confine it from outside")
	fl.StringVar(&f.seccomp, "seccomp", "none", "action when seccomp finds a system call that is not allowed (none; kill, log and trap are not supported yet). virtiofsd's default is kill: ferryfs installs no seccomp filter")
	fl.StringVar(&f.modcaps, "modcaps", "", notYet("modify the capabilities the daemon keeps, e.g. +sys_admin:-chown"))
	fl.StringArrayVar(&f.uidMap, "uid-map", nil, notYet("map host UIDs into the sandbox's user namespace, as :NAMESPACE_UID:HOST_UID:COUNT:; repeatable"))
	fl.StringArrayVar(&f.gidMap, "gid-map", nil, notYet("map host GIDs into the sandbox's user namespace, as :NAMESPACE_GID:HOST_GID:COUNT:; repeatable"))
	setFlagGroup(fl, groupProcess, "sandbox", "seccomp", "modcaps", "uid-map", "gid-map")

	fl.StringVar(&f.migrationMode, "migration-mode", "find-paths", "how the destination finds the inodes the guest knows: find-paths (a path beneath the shared directory per inode) or file-handles (a file handle per inode; source and destination must share the file system)")
	fl.StringVar(&f.migrationOnError, "migration-on-error", "abort", "on the destination, what an inode or open file that cannot be found does: abort (fail the migration; the source keeps running) or guest-error (migrate the rest; the guest gets errors, ESTALE, for the lost ones)")
	fl.BoolVar(&f.migrationVerifyHandles, "migration-verify-handles", false, "find-paths only, on the source: send each inode's file handle too, so the destination checks that a path led it to the very same object (source and destination must share the file system)")
	fl.BoolVar(&f.migrationConfirmPaths, "migration-confirm-paths", false, "find-paths only, on the source: re-resolve every path at switch-over and send no path that leads to another object")
	setFlagGroup(fl, groupMigration, "migration-mode", "migration-on-error", "migration-verify-handles", "migration-confirm-paths")

	fl.StringArrayVarP(&f.compatOptions, "compat-options", "o", nil, "options in virtiofsd's legacy format, e.g. -o source=DIR,cache=auto,xattr [deprecated]")
	fl.BoolVarP(&f.compatDebug, "debug", "d", false, "same as --log-level=debug [deprecated]")
	fl.BoolVarP(&f.compatForeground, "foreground", "f", false, "has no effect: ferryfs always runs in the foreground [deprecated]")
	fl.StringVar(&f.socket, "socket", "", "same as --socket-path [deprecated]")
	setFlagGroup(fl, groupDeprecated, "compat-options", "debug", "foreground", "socket")

	fl.BoolVar(&f.printCapabilities, "print-capabilities", false, "print the vhost-user back-end capabilities as JSON and exit")
	fl.StringVar(&f.stateDump, "state-dump", "", "on SIGUSR1, write the migration state the daemon would send now to this file (for ferryfs state inspect); a ferryfs extension")
	setFlagGroup(fl, groupMigration, "state-dump")
}

// config validates the flags, in this order: the -o options, the flags
// that are refused because their feature is missing, the socket, and the
// file system.
func (f *daemonFlags) config() (daemonConfig, error) {
	cfg := daemonConfig{fd: f.fd, socketGID: -1, tag: f.tag, stateDump: f.stateDump}
	if f.given == nil {
		f.given = make(map[string]string)
	}
	var warnings []string
	if len(f.compatOptions) > 0 {
		if err := f.applyCompatOptions(); err != nil {
			return cfg, err
		}
		warnings = append(warnings, "-o is deprecated: give the options as flags, e.g. --cache=auto instead of -o cache=auto")
	}
	if f.compatDebug {
		// Over --log-level and -o loglevel, as in virtiofsd.
		f.logLevel = "debug"
		warnings = append(warnings, "-d is deprecated: use --log-level=debug")
	}
	if f.compatForeground {
		warnings = append(warnings, "-f is deprecated and has no effect: remove it")
	}
	if err := f.refuseUnsupported(); err != nil {
		return cfg, err
	}
	mode, err := migrate.ParseMode(f.migrationMode)
	if err != nil {
		return cfg, fmt.Errorf("--migration-mode: %w", err)
	}
	onError, err := migrate.ParseOnError(f.migrationOnError)
	if err != nil {
		return cfg, err
	}
	cfg.migration = migrationConfig{
		export:  passthrough.ExportOptions{Mode: mode, VerifyHandles: f.migrationVerifyHandles, ConfirmPaths: f.migrationConfirmPaths},
		onError: onError,
	}

	cfg.socketPath = f.socketPath
	socketFlag := "--socket-path"
	if f.socket != "" {
		warnings = append(warnings, "--socket is deprecated: use --socket-path")
		if f.socketPath == "" {
			cfg.socketPath, socketFlag = f.socket, "--socket"
		}
	}
	_, tagGiven := f.given["tag"]
	switch {
	case cfg.socketPath == "" && f.fd < 0:
		return cfg, errors.New("either --socket-path or --fd is required")
	case cfg.socketPath != "" && f.fd >= 0:
		return cfg, fmt.Errorf("%s and --fd are mutually exclusive", socketFlag)
	case f.fd >= 0 && f.fd <= 2:
		return cfg, fmt.Errorf("--fd=%d is a standard stream, not a listening socket", f.fd)
	case f.socketGroup != "" && f.fd >= 0:
		return cfg, errors.New("--socket-group cannot be used with --fd: ferryfs does not create that socket")
	case tagGiven && f.tag == "":
		return cfg, errors.New("--tag must not be empty")
	case len(f.tag) > virtiofs.TagMax:
		return cfg, fmt.Errorf("--tag %q is longer than %d bytes", f.tag, virtiofs.TagMax)
	}
	if f.socketGroup != "" {
		gid, err := lookupGroup(f.socketGroup)
		if err != nil {
			return cfg, fmt.Errorf("--socket-group: %w", err)
		}
		cfg.socketGID = gid
	}

	fc, err := f.fsFlags.config()
	fc.fs.AllowMmap = f.allowMmap
	fc.fs.AnnounceSubmounts = f.announceSubmounts
	cfg.fsConfig = fc
	cfg.warnings = append(warnings, cfg.warnings...)
	return cfg, err
}

// lookupGroup returns the ID of the group called name.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if errors.As(err, new(user.UnknownGroupError)) {
			return -1, fmt.Errorf("no group named %q", name)
		}
		return -1, fmt.Errorf("look up group %q: %w", name, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q has a non-numeric ID %q", name, g.Gid)
	}
	return gid, nil
}

// runDaemon listens on the vhost-user socket, serves the first front-end
// that connects, and returns when it disconnects (exit 0, as virtiofsd) or
// when ctx is done.
func runDaemon(ctx context.Context, cfg daemonConfig, stderr io.Writer) error {
	log, srv, pfs, closeFS, err := startFS(cfg.fsConfig, stderr)
	if err != nil {
		return err
	}
	defer closeFS()
	if cfg.stateDump != "" {
		defer dumpStateOnSignal(ctx, log, srv, pfs, cfg.migration.export, cfg.stateDump)()
	}
	plain, err := virtiofs.New(srv, cfg.tag)
	if err != nil {
		return err
	}
	dev := virtiofs.WithMigration(plain, &fsMigrator{fs: pfs, cfg: cfg.migration, log: log})

	lfd, err := listenFD(cfg)
	if err != nil {
		return err
	}
	log.Info("waiting for vhost-user front-end", "socket", cfg.socketPath, "fd", cfg.fd, "shared_dir", cfg.fs.SharedDir)
	connFD, err := accept(ctx, lfd)
	unix.Close(lfd)
	if cfg.socketPath != "" {
		os.Remove(cfg.socketPath) // one front-end per daemon, as virtiofsd
	}
	if err != nil {
		return err
	}
	log.Info("front-end connected")
	stop := context.AfterFunc(ctx, func() {
		// Unblock the message loop; Serve then stops the rings.
		unix.Shutdown(connFD, unix.SHUT_RDWR)
	})
	defer stop()
	be := vhostuser.New(dev, vhostuser.Options{Workers: cfg.workers, Logger: log})
	return be.Serve(connFD)
}

// startFS opens the logs and the shared directory, for the daemon and for
// "ferryfs mount" alike, and returns the FUSE server to serve and what
// closes it all.
func startFS(cfg fsConfig, stderr io.Writer) (*slog.Logger, *fuseproto.Server, *passthrough.FS, func(), error) {
	log, closeLog := openLogger(cfg, stderr)
	slog.SetDefault(log)
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	pfs, err := openFS(cfg, log)
	if err != nil {
		closeLog()
		return nil, nil, nil, nil, err
	}
	srv := fuseproto.NewServer(pfs, fuseproto.ServerOptions{Logger: log})
	return log, srv, pfs, func() { pfs.Close(); closeLog() }, nil
}

// openFS applies the descriptor limits and opens the shared directory.
func openFS(cfg fsConfig, log *slog.Logger) (*passthrough.FS, error) {
	limit, err := setRlimit(cfg.rlimitNofile, cfg.rlimitExact)
	if err != nil {
		return nil, err
	}
	if !cfg.rlimitExact && limit < cfg.rlimitNofile {
		log.Warn("could not raise the open file limit as far as wanted", "limit", limit, "wanted", cfg.rlimitNofile)
	}
	opts := cfg.fs
	opts.MaxGuestFDs = fdlimit.Budget(limit)
	opts.Logger = log
	if opts.MaxGuestFDs < lowGuestFDs {
		log.Warn("open file limit is very small", "limit", limit, "guest_fds", opts.MaxGuestFDs)
	}
	log.Debug("file descriptor limits", "rlimit_nofile", limit, "guest_fds", opts.MaxGuestFDs)
	return passthrough.New(opts)
}

// listenFD returns the listening socket: --fd as given, or a new socket at
// --socket-path (a stale socket left there by a dead daemon is replaced;
// anything else at that path is an error).
//
// As virtiofsd's, a new socket is mode 0700, or 0770 and owned by
// --socket-group when that is given: whoever may connect to it may drive
// the device and read or write the whole shared directory.
func listenFD(cfg daemonConfig) (int, error) {
	if cfg.fd >= 0 {
		typ, err := unix.GetsockoptInt(cfg.fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil {
			return -1, fmt.Errorf("--fd=%d is not a socket: %w", cfg.fd, err)
		}
		if typ != unix.SOCK_STREAM {
			return -1, fmt.Errorf("--fd=%d is not a stream socket", cfg.fd)
		}
		unix.CloseOnExec(cfg.fd)
		return cfg.fd, nil
	}
	if fi, err := os.Lstat(cfg.socketPath); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return -1, fmt.Errorf("--socket-path %s exists and is not a socket", cfg.socketPath)
		}
		if err := os.Remove(cfg.socketPath); err != nil {
			return -1, fmt.Errorf("remove stale socket %s: %w", cfg.socketPath, err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// bind creates the socket file with mode 0777 less the umask. Setting
	// the umask around it, as virtiofsd does, leaves no moment at which
	// others could connect, as a chmod after bind would. The umask is
	// per process, but nothing else creates files while the daemon starts.
	mask := 0o077
	if cfg.socketGID >= 0 {
		mask = 0o007
	}
	old := unix.Umask(mask)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: cfg.socketPath})
	unix.Umask(old)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", cfg.socketPath, err)
	}
	if cfg.socketGID >= 0 {
		if err := os.Lchown(cfg.socketPath, -1, cfg.socketGID); err != nil {
			unix.Close(fd)
			os.Remove(cfg.socketPath)
			return -1, fmt.Errorf("--socket-group: %w", err)
		}
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		os.Remove(cfg.socketPath)
		return -1, fmt.Errorf("listen on %s: %w", cfg.socketPath, err)
	}
	return fd, nil
}

// accept waits for one connection, or for ctx.
func accept(ctx context.Context, lfd int) (int, error) {
	fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	for {
		if ctx.Err() != nil {
			return -1, errors.New("stopped before a front-end connected")
		}
		fds[0].Revents = 0
		n, err := unix.Poll(fds, 200)
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("wait for a front-end: %w", err)
		}
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("accept: %w", err)
		}
		return cfd, nil
	}
}

// daemonFunc runs the daemon with a validated configuration until ctx is
// done; newCommandTree takes it so that tests can stop short of serving.
type daemonFunc func(ctx context.Context, cfg daemonConfig, stderr io.Writer) error

// daemonRunE runs the daemon for the root command.
func daemonRunE(f *daemonFlags, run daemonFunc) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command or argument %q", args[0])
		}
		if f.printCapabilities {
			// libvirt runs "--print-capabilities" alone; like virtiofsd,
			// print them whatever else is given.
			return printCapabilities(cmd.OutOrStdout())
		}
		if cmd.Flags().NFlag() == 0 {
			return cmd.Help()
		}
		f.given = make(map[string]string)
		cmd.Flags().Visit(func(fl *pflag.Flag) { f.given[fl.Name] = "--" + fl.Name })
		f.rlimitNofileSet = cmd.Flags().Changed("rlimit-nofile")
		cfg, err := f.config()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return run(ctx, cfg, cmd.ErrOrStderr())
	}
}
