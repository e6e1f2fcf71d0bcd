package relay

import (
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLoggerFactory adapts slog to pion's logging interface: pion's trace,
// debug and info messages become slog Debug; its warnings and errors
// (which a flood of bad packets can cause) go through a rate limiter.
type pionLoggerFactory struct {
	log   *slog.Logger
	limit *limiter
}

// NewLogger implements logging.LoggerFactory.
func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope), limit: f.limit}
}

type pionLogger struct {
	log   *slog.Logger
	limit *limiter
}

func (l pionLogger) Trace(msg string)                  { l.log.Debug(msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pionLogger) Debug(msg string)                  { l.log.Debug(msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pionLogger) Info(msg string)                   { l.log.Debug(msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l pionLogger) Warn(msg string)                   { l.limit.warn(l.log, msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.limit.warn(l.log, fmt.Sprintf(format, args...))
}
func (l pionLogger) Error(msg string) { l.limit.warn(l.log, msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	l.limit.warn(l.log, fmt.Sprintf(format, args...))
}
