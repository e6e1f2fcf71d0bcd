package web

import "time"

// tokenBucket is a classic token bucket: it holds up to burst tokens,
// refills at rate tokens per second, and every allowed event takes one
// token. The zero value is unusable; build it with newTokenBucket. Not safe
// for concurrent use: each bucket belongs to one session's reader goroutine.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64 // capacity
	tokens float64
	last   time.Time // when tokens was last brought up to date
}

// newTokenBucket returns a full bucket.
func newTokenBucket(rate, burst float64, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst, last: now}
}

// take refills the bucket up to now and takes one token, reporting whether
// there was one. A clock going backwards refills nothing.
func (b *tokenBucket) take(now time.Time) bool {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens += elapsed.Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// verdict is what the rate limiter decides about one client message.
type verdict int

const (
	allow   verdict = iota // handle the message
	limited                // drop it and tell the client "rate-limited"
	abusive                // close the connection (StatusPolicyViolation)
)

// rateLimiter judges the message rate of one signaling connection with two
// token buckets that every message (accepted or not) is counted against:
//
//   - the limit bucket (Config.RateLimit per second, Config.RateBurst at
//     once): a message that finds it empty is dropped ("rate-limited");
//   - the abuse bucket (AbuseFactor times both): a message that finds it
//     empty means the client keeps sending at several times the limit, and
//     the connection is closed.
//
// A client staying under the limit is never affected; one sending between
// the limit and AbuseFactor times it loses the excess messages but stays
// connected. A nil *rateLimiter allows everything. Owned by the session's
// reader goroutine; not safe for concurrent use.
type rateLimiter struct {
	now   func() time.Time
	limit *tokenBucket
	abuse *tokenBucket
}

// newRateLimiter returns the limiter configured by cfg (after
// SetDefaults), or nil when cfg.RateLimit is negative (disabled).
func newRateLimiter(cfg *Config) *rateLimiter {
	if cfg.RateLimit < 0 {
		return nil
	}
	now := cfg.now()
	burst := float64(cfg.RateBurst)
	return &rateLimiter{
		now:   cfg.now,
		limit: newTokenBucket(cfg.RateLimit, burst, now),
		abuse: newTokenBucket(cfg.RateLimit*cfg.AbuseFactor, burst*cfg.AbuseFactor, now),
	}
}

// judge counts one client message and returns what to do with it.
func (l *rateLimiter) judge() verdict {
	if l == nil {
		return allow
	}
	now := l.now()
	// Both buckets are always charged, so that dropped messages count
	// towards abuse too.
	underAbuse := l.abuse.take(now)
	underLimit := l.limit.take(now)
	switch {
	case !underAbuse:
		return abusive
	case !underLimit:
		return limited
	default:
		return allow
	}
}
