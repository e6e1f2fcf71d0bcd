package web

import (
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeClock is a manually advanced clock for the rate limiters, so that
// floods are judged the same way however slow the machine is.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestTokenBucket(t *testing.T) {
	clock := newFakeClock()
	b := newTokenBucket(10, 3, clock.now())
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, true}, {0, true}, // the full burst
		{0, false},                     // empty
		{50 * time.Millisecond, false}, // half a token
		{50 * time.Millisecond, true},  // one token refilled
		{0, false},
		{time.Hour, true}, {0, true}, {0, true}, // refilled to the cap, not beyond
		{0, false},
		{-time.Hour, false}, // a clock going backwards refills nothing
	}
	for i, st := range steps {
		clock.advance(st.advance)
		if got := b.take(clock.now()); got != st.want {
			t.Fatalf("step %d (+%v): take = %v, want %v", i, st.advance, got, st.want)
		}
	}
}

func TestRateLimiterVerdicts(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		cfg := Config{RateLimit: -1}
		cfg.SetDefaults()
		l := newRateLimiter(&cfg)
		if l != nil {
			t.Fatalf("negative RateLimit gave a limiter")
		}
		for range 10000 {
			if v := l.judge(); v != allow {
				t.Fatalf("disabled limiter judged %v", v)
			}
		}
	})
	t.Run("flood", func(t *testing.T) {
		clock := newFakeClock()
		cfg := Config{RateLimit: 20, RateBurst: 50, AbuseFactor: 3, now: clock.now}
		cfg.SetDefaults()
		l := newRateLimiter(&cfg)
		// An instant flood: 50 allowed, the next 100 limited, then abusive.
		for i := range 151 {
			want := allow
			switch {
			case i >= 150:
				want = abusive
			case i >= 50:
				want = limited
			}
			if v := l.judge(); v != want {
				t.Fatalf("message %d: verdict %v, want %v", i+1, v, want)
			}
		}
	})
	t.Run("sustained rates", func(t *testing.T) {
		tests := []struct {
			name        string
			interval    time.Duration // between messages; the limit is 20/s = 50ms
			wantLimited bool
			wantAbusive bool
		}{
			{"at the limit", 50 * time.Millisecond, false, false},
			{"twice the limit", 25 * time.Millisecond, true, false},
			{"four times the limit", 12500 * time.Microsecond, true, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				clock := newFakeClock()
				cfg := Config{RateLimit: 20, RateBurst: 50, AbuseFactor: 3, now: clock.now}
				cfg.SetDefaults()
				l := newRateLimiter(&cfg)
				var limitedSeen, abusiveSeen bool
				for range 2000 { // 100 s at the limit
					clock.advance(tt.interval)
					switch l.judge() {
					case limited:
						limitedSeen = true
					case abusive:
						abusiveSeen = true
					}
				}
				if limitedSeen != tt.wantLimited || abusiveSeen != tt.wantAbusive {
					t.Errorf("limited=%v abusive=%v, want %v %v", limitedSeen, abusiveSeen, tt.wantLimited, tt.wantAbusive)
				}
			})
		}
	})
}

// TestSignalingRateLimited: a client over the limit gets "rate-limited"
// for the excess messages and stays connected; once it slows down its
// messages are served again.
func TestSignalingRateLimited(t *testing.T) {
	clock := newFakeClock()
	env := newEnv(t, envOptions{cfg: Config{RateLimit: 10, RateBurst: 5, AbuseFactor: 3, now: clock.now}})
	c, _ := env.join("limited", "Al") // message 1
	for range 4 {                     // messages 2-5: the rest of the burst
		c.ping()
	}
	for range 3 { // over the limit: dropped, reported, still connected
		c.send(map[string]any{"v": 1, "type": "ping"})
		m := c.expectError(codeRateLimited)
		if m.Message == "" {
			t.Error("rate-limited error without message")
		}
	}
	clock.advance(100 * time.Millisecond) // one token at 10/s
	c.ping()
	c.send(map[string]any{"v": 1, "type": "ping"})
	c.expectError(codeRateLimited)

	clock.advance(time.Minute) // a quiet minute refills the burst (5), no more
	for range 5 {
		c.ping()
	}
	c.send(map[string]any{"v": 1, "type": "ping"})
	c.expectError(codeRateLimited)
	if n := localParticipants(env.engine, "limited"); n != 1 {
		t.Fatalf("%d participants, want the rate-limited client still there", n)
	}
}

// TestSignalingFloodClosed: a client flooding at more than AbuseFactor
// times the limit is disconnected with StatusPolicyViolation and leaves
// the room, while another client in the room is unaffected.
func TestSignalingFloodClosed(t *testing.T) {
	clock := newFakeClock()
	env := newEnv(t, envOptions{cfg: Config{RateLimit: 10, RateBurst: 5, AbuseFactor: 3, now: clock.now}})
	good, _ := env.join("flood", "Good")
	flooder, fj := env.join("flood", "Flooder") // 1 message
	good.expect(typeParticipantJoined)

	// The clock stands still: 4 more messages fit the burst, the next 10
	// are dropped with an error each, and the 16th (3x the burst) closes the
	// connection. Everything after that is ignored.
	for range 40 {
		// The server may already have closed the connection: stop then.
		if err := flooder.conn.Write(t.Context(), websocket.MessageText, []byte(`{"v":1,"type":"ping"}`)); err != nil {
			break
		}
	}
	var pongs, limited int
	for {
		m, err := flooder.read()
		if err != nil {
			code := websocket.CloseStatus(err)
			if code != websocket.StatusPolicyViolation {
				t.Fatalf("flooder connection ended with %v (%v), want %v", code, err, websocket.StatusPolicyViolation)
			}
			break
		}
		switch {
		case m.Type == typePong:
			pongs++
		case m.Type == typeError && m.Code == codeRateLimited:
			limited++
		default:
			t.Fatalf("flooder got %+v", m)
		}
	}
	// The close frame may overtake queued replies (the close is not a
	// flush), so only upper bounds are certain.
	if pongs > 4 || limited > 10 {
		t.Errorf("flooder got %d pongs and %d rate-limited errors, want at most 4 and 10", pongs, limited)
	}
	if pl := good.expect(typeParticipantLeft); pl.Participant == nil || pl.Participant.ID != fj.ParticipantID {
		t.Fatalf("participant-left = %+v, want the flooder", pl.Participant)
	}
	good.ping()
	waitFor(t, "the flooder to leave the room", func() bool { return localParticipants(env.engine, "flood") == 1 })
}

// TestSignalingRateLimitDisabled: with a negative RateLimit even a large
// burst is served.
func TestSignalingRateLimitDisabled(t *testing.T) {
	clock := newFakeClock()
	// The outbox holds every pong: this test is about the rate limit, not
	// about a client that reads too slowly (300 pongs would overflow the
	// default outbox when the writer falls behind under -race).
	env := newEnv(t, envOptions{cfg: Config{RateLimit: -1, OutboxSize: 1024, now: clock.now}})
	c, _ := env.join("unlimited", "Al")
	for range 300 {
		c.send(map[string]any{"v": 1, "type": "ping"})
	}
	for range 300 {
		c.expect(typePong)
	}
}
