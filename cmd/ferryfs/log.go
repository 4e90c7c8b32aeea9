package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
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

// parseLogLevel parses a --log-level value.
func parseLogLevel(s string) (slog.Level, error) {
	for _, l := range logLevels {
		if s == l.name {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("invalid log level %q: want error, warn, info, debug, trace or off", s)
}

// newLogger returns a text logger writing to w at level and above.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			// slog would print trace as "DEBUG-4".
			if a.Key == slog.LevelKey && len(groups) == 0 {
				if l, ok := a.Value.Any().(slog.Level); ok && l <= levelTrace {
					a.Value = slog.StringValue("TRACE")
				}
			}
			return a
		},
	}))
}
