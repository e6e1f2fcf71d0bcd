package relay

import (
	"log/slog"
	"sync"
	"time"
)

// limitInterval is the least time between two rate-limited log lines.
const limitInterval = 10 * time.Second

// limiter lets one warning through per limitInterval and counts the rest,
// so that a flood of bad requests (wrong credentials, stray packets) does
// not flood the log.
type limiter struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// warn logs msg at Warn unless another warning was logged less than
// limitInterval ago; the next line logged says how many were suppressed.
func (l *limiter) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed
	l.suppressed = 0
	l.next = now.Add(limitInterval)
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Warn(msg, args...)
}
