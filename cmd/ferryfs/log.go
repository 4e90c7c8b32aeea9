package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"math"
	"strings"
	"sync"
)

// Log levels beyond slog's four, for virtiofsd's --log-level names.
const (
	levelTrace = slog.LevelDebug - 4
	// levelOff is above every level anything logs at.
	levelOff = slog.Level(math.MaxInt)
)

// logLevels maps virtiofsd's --log-level names to slog levels.
var logLevels = []struct {
	name  string
	level slog.Level
}{
	{"error", slog.LevelError},
	{"warn", slog.LevelWarn},
	{"info", slog.LevelInfo},
	{"debug", slog.LevelDebug},
	{"trace", levelTrace},
	{"off", levelOff},
}

// parseLogLevel parses a --log-level value. Case does not matter, as for
// virtiofsd, whose log crate compares level names that way.
func parseLogLevel(s string) (slog.Level, error) {
	for _, l := range logLevels {
		if strings.EqualFold(s, l.name) {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("invalid log level %q: want error, warn, info, debug, trace or off", s)
}

// replaceAttr names the trace level, which slog would print as "DEBUG-4",
// and drops the time when dropTime is set.
func replaceAttr(dropTime bool) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) > 0 {
			return a
		}
		switch a.Key {
		case slog.TimeKey:
			if dropTime {
				return slog.Attr{}
			}
		case slog.LevelKey:
			if l, ok := a.Value.Any().(slog.Level); ok && l <= levelTrace {
				a.Value = slog.StringValue("TRACE")
			}
		}
		return a
	}
}

// newLogger returns a text logger writing to w at level and above.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: replaceAttr(false),
	}))
}

// openLogger returns the logger cfg asks for and a function that releases
// it: syslog with --syslog, else text on stderr. Like virtiofsd, it falls
// back to stderr, with a warning, when syslog cannot be reached: a daemon
// that refused to start over its logs would be worse.
func openLogger(cfg fsConfig, stderr io.Writer) (*slog.Logger, func()) {
	if !cfg.syslog {
		return newLogger(stderr, cfg.logLevel), func() {}
	}
	// LOG_USER, as virtiofsd; the severity is chosen per record.
	w, err := syslog.New(syslog.LOG_USER|syslog.LOG_INFO, "ferryfs")
	if err != nil {
		log := newLogger(stderr, cfg.logLevel)
		log.Warn("cannot log to syslog, logging to stderr instead", "err", err)
		return log, func() {}
	}
	return newSyslogLogger(w, cfg.logLevel), func() { w.Close() }
}

// syslogWriter is what the syslog handler needs of a *syslog.Writer: one
// method per severity it maps slog's levels to.
type syslogWriter interface {
	Err(string) error
	Warning(string) error
	Info(string) error
	Debug(string) error
}

// newSyslogLogger returns a logger that formats records as slog's text
// handler does, without the time (syslog stamps its own), and sends each
// to w with the severity of its level.
func newSyslogLogger(w syslogWriter, level slog.Level) *slog.Logger {
	out := &syslogOut{w: w}
	text := slog.NewTextHandler(out, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: replaceAttr(true),
	})
	return slog.New(syslogHandler{Handler: text, out: out})
}

// syslogHandler is a text handler whose output goes to syslog. The text
// handler writes each record with one Write call from inside Handle, so
// Handle tells out the record's level just before, under out's lock.
type syslogHandler struct {
	slog.Handler
	out *syslogOut
}

func (h syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.level = r.Level
	return h.Handler.Handle(ctx, r)
}

func (h syslogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return syslogHandler{Handler: h.Handler.WithAttrs(attrs), out: h.out}
}

func (h syslogHandler) WithGroup(name string) slog.Handler {
	return syslogHandler{Handler: h.Handler.WithGroup(name), out: h.out}
}

// syslogOut sends formatted records to syslog.
type syslogOut struct {
	mu    sync.Mutex
	w     syslogWriter
	level slog.Level // of the record being written; guarded by mu
}

func (o *syslogOut) Write(p []byte) (int, error) {
	msg := string(bytes.TrimSuffix(p, []byte("\n")))
	var err error
	switch {
	case o.level >= slog.LevelError:
		err = o.w.Err(msg)
	case o.level >= slog.LevelWarn:
		err = o.w.Warning(msg)
	case o.level >= slog.LevelInfo:
		err = o.w.Info(msg)
	default:
		err = o.w.Debug(msg)
	}
	if err != nil {
		return 0, fmt.Errorf("write to syslog: %w", err)
	}
	return len(p), nil
}
