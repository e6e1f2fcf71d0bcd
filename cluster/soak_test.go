package cluster

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Soak: bounded churn across two nodes, then everything must return to its
// baseline.
const (
	soakCycles      = 200             // join/publish/subscribe/leave cycles in total
	soakWorkers     = 4               // cycles running at once (rooms soak-0..3)
	soakBudget      = 4 * time.Minute // stop starting cycles after this; never fails by itself
	soakCycleBound  = 60 * time.Second
	soakGoroutineOK = 10 // goroutines allowed above the baseline at the end
)

// idleConns closes the idle HTTP connections of n's Consul and control
// clients, whose reader goroutines would otherwise linger up to their idle
// timeout and blur the goroutine count.
func idleConns(n *testNode) {
	n.node.reg.close()
	n.node.pipes.CloseIdleConnections()
}

// settledGoroutines waits (bounded) until the goroutine count is at most
// limit and returns the last count.
func settledGoroutines(limit int, bound time.Duration, nodes ...*testNode) int {
	deadline := time.Now().Add(bound)
	for {
		for _, n := range nodes {
			idleConns(n)
		}
		got := runtime.NumGoroutine()
		if got <= limit || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSoak: 200 cycles of a pion client publishing on node A and one
// subscribing on node B (the producer is piped A->B) then both leaving, four
// at a time, with real Consul. Each cycle must deliver media. Afterwards the
// goroutine count, the links and the Consul records return to their
// baseline. Bounded: after soakBudget no new cycle starts (the test then
// reports how many ran; it fails only if an invariant breaks).
func TestSoak(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	itWaitCluster(ctx, t, na, nb)
	baseline := settledGoroutines(0, time.Second, na, nb)
	baseKeys := kvKeys(t, a, kvRoot)

	start := time.Now()
	var next, done atomic.Int64
	var slowest atomic.Int64
	var perWorker [soakWorkers]atomic.Int64
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wt := &workerT{t}
			room := fmt.Sprintf("soak-%d", w)
			for time.Since(start) < soakBudget && !t.Failed() {
				i := next.Add(1)
				if i > soakCycles {
					return
				}
				took := soakCycle(wt, na, nb, room, int(i))
				done.Add(1)
				perWorker[w].Add(1)
				for {
					cur := slowest.Load()
					if int64(took) <= cur || slowest.CompareAndSwap(cur, int64(took)) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	n := done.Load()
	t.Logf("soak: %d/%d cycles in %v (%d at a time; %v per cycle on average, slowest %v)", n, soakCycles,
		elapsed.Round(100*time.Millisecond), soakWorkers, (elapsed / time.Duration(max(n, 1))).Round(time.Millisecond),
		time.Duration(slowest.Load()).Round(time.Millisecond))
	counts := make([]int64, soakWorkers)
	for w := range perWorker {
		counts[w] = perWorker[w].Load()
	}
	t.Logf("soak: cycles per worker %v", counts)
	if n < soakCycles && !t.Failed() {
		t.Logf("soak: stopped early after the %v budget", soakBudget)
	}
	if t.Failed() {
		return
	}

	ctx = testContext(t) // the cycles may have outlived the first one
	settle := time.Now()
	waitFor(ctx, t, "no rooms left", func() bool { return len(na.engine.Rooms()) == 0 && len(nb.engine.Rooms()) == 0 })
	waitFor(ctx, t, "no links left (after the idle timeout)", func() bool {
		return len(na.node.pipes.Status()) == 0 && len(nb.node.pipes.Status()) == 0
	})
	waitFor(ctx, t, "consul records back to the baseline", func() bool {
		return len(kvKeys(t, a, roomsPrefix)) == 0 && fmt.Sprint(kvKeys(t, a, kvRoot)) == fmt.Sprint(baseKeys)
	})
	final := settledGoroutines(baseline+soakGoroutineOK, 60*time.Second, na, nb)
	t.Logf("soak: goroutines %d before, %d after (allowed +%d); rooms, links and records at baseline %v after the last cycle",
		baseline, final, soakGoroutineOK, time.Since(settle).Round(100*time.Millisecond))
	if final > baseline+soakGoroutineOK {
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		out := buf.String()
		if len(out) > 20000 {
			out = out[:20000]
		}
		t.Fatalf("goroutines did not return to the baseline: %d, baseline %d\n%s", final, baseline, out)
	}
}

// workerT is the itT of a soak worker goroutine: failures are reported on
// the test (Errorf is safe from any goroutine) and end only the worker
// (FailNow may not be called off the test goroutine).
type workerT struct{ t *testing.T }

func (w *workerT) Helper()                        {}
func (w *workerT) Cleanup(f func())               { w.t.Cleanup(f) }
func (w *workerT) Errorf(format string, a ...any) { w.t.Errorf(format, a...) }
func (w *workerT) Fatalf(format string, a ...any) {
	w.t.Errorf(format, a...)
	runtime.Goexit()
}
func (w *workerT) Fatal(a ...any) {
	w.t.Error(a...)
	runtime.Goexit()
}

// soakCycle runs one cycle in room: a publisher joins node A, a subscriber
// joins node B and receives the piped producer, both leave (in an order
// that alternates). It returns how long the cycle took.
func soakCycle(t itT, na, nb *testNode, room string, i int) time.Duration {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), soakCycleBound)
	defer cancel()
	pub := itJoin(t, na, room, fmt.Sprintf("pub-%d", i))
	pub.publishVP8(ctx, "cam")
	prod := itLocalProducers(ctx, t, na, room, pub.p.ID(), 1)[0]
	sub := itJoin(t, nb, room, fmt.Sprintf("sub-%d", i))
	itWaitMedia(ctx, t, sub, prod)
	var wg sync.WaitGroup
	if i%2 == 0 {
		pub.close()
		sub.close()
	} else {
		// Both leave at once.
		wg.Add(2)
		go func() { defer wg.Done(); sub.close() }()
		go func() { defer wg.Done(); pub.close() }()
		wg.Wait()
	}
	return time.Since(start)
}
