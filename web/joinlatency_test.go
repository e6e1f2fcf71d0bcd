package web

import (
	"sync"
	"testing"
	"time"
)

// latencies records what Deps.ObserveJoin is told.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) observe(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) snapshot() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.d...)
}

// TestObserveJoin: every successful join is observed once, with a positive
// latency, once "joined" was written; refused joins are not observed.
func TestObserveJoin(t *testing.T) {
	rec := &latencies{}
	env := newEnv(t, envOptions{deps: Deps{ObserveJoin: rec.observe}})

	steps := []struct {
		name string
		do   func()
		want int // observations after the step
	}{
		{"invalid name is refused", func() {
			c := env.mustDial("r")
			c.send(map[string]any{"v": 1, "type": "join", "name": ""})
			c.expectError(codeInvalidName)
		}, 0},
		{"first join", func() {
			c, _ := env.join("r", "alice")
			c.send(map[string]any{"v": 1, "type": "join", "name": "alice"})
			c.expectError(codeAlreadyJoined)
		}, 1},
		{"second participant", func() { env.join("r", "bob") }, 2},
	}
	for _, st := range steps {
		st.do()
		// The client may read "joined" a moment before the writer
		// observes it: wait for the observation, then check the count.
		waitFor(t, "observations after "+st.name, func() bool { return len(rec.snapshot()) >= st.want })
		if got := rec.snapshot(); len(got) != st.want {
			t.Fatalf("after %s: %d observations %v, want %d", st.name, len(got), got, st.want)
		}
	}
	for i, d := range rec.snapshot() {
		if d <= 0 {
			t.Errorf("observation %d = %v, want > 0", i, d)
		}
	}
}
