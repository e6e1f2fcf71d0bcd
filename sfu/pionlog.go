package sfu

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
	"golang.org/x/time/rate"
)

// pionLoggerFactory routes pion's logs to slog: pion warnings and errors
// become slog Warn (pion reports many benign shutdown races as errors),
// pion info becomes slog Debug, pion debug/trace are dropped.
type pionLoggerFactory struct{ log *slog.Logger }

// NewLogger implements logging.LoggerFactory. The ICE mux ("udpmux")
// warns about every malformed STUN datagram anyone sends to the media port,
// so its lines are rate-limited (at most one per abuseLogInterval).
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	l := pionLogger{log: f.log.With("pion", scope)}
	if scope == "udpmux" {
		l.limit = rate.NewLimiter(rate.Every(abuseLogInterval), 1)
	}
	return l
}

// quietLogger is a pion logger whose warnings and errors are logged at
// Debug: for the ICE-TCP mux, which warns about every TCP connection that
// does not carry an ICE stream (a browser that chose UDP closes its TCP
// attempts; anyone can connect to the port), so at Warn any client could
// flood the log.
func (f pionLoggerFactory) quietLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope), quiet: true}
}

type pionLogger struct {
	log   *slog.Logger
	limit *rate.Limiter // nil: every line is logged
	quiet bool          // warnings and errors at Debug
}

// warnLevel is the slog level of pion warnings and errors.
func (l pionLogger) warnLevel() slog.Level {
	if l.quiet {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	if l.limit != nil && !l.limit.Allow() {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}
func (l pionLogger) Info(msg string)     { l.log.Debug(msg) }
func (l pionLogger) Infof(format string, args ...any) {
	l.logf(slog.LevelDebug, format, args...)
}
func (l pionLogger) Warn(msg string) { l.logf(l.warnLevel(), "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.logf(l.warnLevel(), format, args...)
}
func (l pionLogger) Error(msg string) { l.logf(l.warnLevel(), "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	l.logf(l.warnLevel(), format, args...)
}
