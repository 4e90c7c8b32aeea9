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
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ferryfs/ferryfs/fuseproto"
	"github.com/ferryfs/ferryfs/internal/fdlimit"
	"github.com/ferryfs/ferryfs/passthrough"
	"github.com/ferryfs/ferryfs/vhostuser"
	"github.com/ferryfs/ferryfs/virtiofs"
)

// daemonFlags is the command line of the virtio-fs daemon (ferryfs with no
// subcommand), spelled as virtiofsd spells it.
type daemonFlags struct {
	fsFlags
	socketPath string
	fd         int
	tag        string
}

// daemonConfig is a validated daemonFlags.
type daemonConfig struct {
	fsConfig
	socketPath string
	fd         int // -1 unless --fd
	tag        string
}

func (f *daemonFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVar(&f.socketPath, "socket-path", "", "vhost-user socket path")
	fl.IntVar(&f.fd, "fd", -1, "file descriptor number of an already listening vhost-user socket")
	fl.StringVar(&f.tag, "tag", "", "tag the device reports to the front-end (the front-end's own tag is used when unset)")
	f.fsFlags.register(fl, "number of workers serving requests (0 means one)")
}

func (f *daemonFlags) config() (daemonConfig, error) {
	cfg := daemonConfig{socketPath: f.socketPath, fd: f.fd, tag: f.tag}
	switch {
	case f.socketPath == "" && f.fd < 0:
		return cfg, errors.New("either --socket-path or --fd is required")
	case f.socketPath != "" && f.fd >= 0:
		return cfg, errors.New("--socket-path and --fd are mutually exclusive")
	case f.fd >= 0 && f.fd <= 2:
		return cfg, fmt.Errorf("--fd=%d is a standard stream, not a listening socket", f.fd)
	case len(f.tag) > virtiofs.TagMax:
		return cfg, fmt.Errorf("--tag %q is longer than %d bytes", f.tag, virtiofs.TagMax)
	}
	fc, err := f.fsFlags.config()
	cfg.fsConfig = fc
	return cfg, err
}

// runDaemon listens on the vhost-user socket, serves the first front-end
// that connects, and returns when it disconnects (exit 0, as virtiofsd) or
// when ctx is done.
func runDaemon(ctx context.Context, cfg daemonConfig, stderr io.Writer) error {
	log := newLogger(stderr, cfg.logLevel)
	slog.SetDefault(log)
	pfs, err := openFS(cfg.fsConfig, log)
	if err != nil {
		return err
	}
	defer pfs.Close()
	srv := fuseproto.NewServer(pfs, fuseproto.ServerOptions{Logger: log})
	dev, err := virtiofs.New(srv, cfg.tag)
	if err != nil {
		return err
	}

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
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: cfg.socketPath}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", cfg.socketPath, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
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

// daemonRunE runs the daemon for the root command.
func daemonRunE(f *daemonFlags) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command or argument %q", args[0])
		}
		if cmd.Flags().NFlag() == 0 {
			return cmd.Help()
		}
		f.rlimitNofileSet = cmd.Flags().Changed("rlimit-nofile")
		cfg, err := f.config()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runDaemon(ctx, cfg, cmd.ErrOrStderr())
	}
}
