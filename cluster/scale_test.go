package cluster

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// manyRooms runs the operator's scenario of docs/cluster.md (Control plane
// at scale): node-a opens rooms rooms (one participant each, no media) beside
// node-b while a cross-node call runs in another room, then opens and closes
// rooms at churnRate per second for churnFor. Throughout, node-a must stay
// ready with one session and at most DefaultConsulMaxConns connections to
// Consul; at the end every open room's record is in Consul and media still
// flows across.
func manyRooms(t testing.TB, rooms, churnRate int, churnFor time.Duration) {
	a := consulForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	na := startTestNode(ctx, t, a, "node-a", func(c *Config) { c.Logger = quietLogger() })
	nb := startTestNode(ctx, t, a, "node-b")
	itWaitCluster(ctx, t, na, nb)
	session := na.node.sessionID()

	// A cross-node call in room "demo".
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam")
	p := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	bob := itJoin(t, nb, "demo", "Bob")
	bobTrack := itWaitMedia(ctx, t, bob, p)

	notReady := 0
	checkReady := func(when string) {
		if err := na.node.Ready(); err != nil {
			notReady++
			if notReady <= 3 {
				t.Errorf("%s: node-a not ready: %v", when, err)
			}
		}
		if s := na.node.sessionID(); s != session {
			t.Fatalf("%s: node-a's session changed from %s to %q", when, session, s)
		}
	}
	open := make(map[string]*sfu.Participant)
	start := time.Now()
	for i := 0; i < rooms; i++ {
		name := "r" + strconv.Itoa(i)
		part, err := na.engine.Join(name, sfu.JoinParams{Name: "p", Events: nopEvents})
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		open[name] = part
		if i%500 == 0 {
			checkReady(fmt.Sprintf("after %d rooms", i))
		}
	}
	t.Cleanup(func() {
		for _, part := range open {
			part.Close()
		}
	})
	waitRecords := func(what string) {
		waitFor(ctx, t, what, func() bool {
			keys := kvKeys(t, a, roomsPrefix)
			have := make(map[string]bool, len(keys))
			for _, k := range keys {
				have[k] = true
			}
			for name := range open {
				if !have[roomNodeKey(name, "node-a")] {
					return false
				}
			}
			return true
		})
	}
	waitRecords("every room record of node-a in Consul")
	recorded := time.Since(start)
	waitFor(ctx, t, "every room of node-a read its records", func() bool {
		na.node.mu.Lock()
		ws := na.node.roomWatchesLocked()
		na.node.mu.Unlock()
		for _, w := range ws {
			if !w.readDone.Load() {
				return false
			}
		}
		return true
	})
	t.Logf("%d rooms opened: recorded in Consul %v, all read %v after the first join; consul stats %+v", rooms,
		recorded.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), na.node.ConsulStats())
	checkReady("after opening")

	// Churn: open and close rooms at churnRate per second.
	tick := time.NewTicker(time.Second / time.Duration(churnRate))
	churnEnd := time.Now().Add(churnFor)
	opened, closed, k := 0, 0, 0
	for time.Now().Before(churnEnd) {
		<-tick.C
		k++
		if k%2 == 0 {
			for name, part := range open { // close any one
				part.Close()
				delete(open, name)
				closed++
				break
			}
		} else {
			name := "c" + strconv.Itoa(k)
			part, err := na.engine.Join(name, sfu.JoinParams{Name: "p", Events: nopEvents})
			if err != nil {
				t.Fatalf("churn join %s: %v", name, err)
			}
			open[name] = part
			opened++
		}
		if k%50 == 0 {
			checkReady(fmt.Sprintf("churn step %d", k))
		}
	}
	tick.Stop()
	waitRecords("every room record of node-a in Consul after churn")
	waitFor(ctx, t, "closed rooms' records gone", func() bool {
		n := 0
		for _, k := range kvKeys(t, a, roomsPrefix) {
			if rk, ok := parseRoomKey(k); ok && rk.Node == "node-a" && rk.Producer == "" {
				n++
			}
		}
		return n == len(open)+1 // + demo
	})
	checkReady("after churn")
	st := na.node.ConsulStats()
	t.Logf("churn: %d opened, %d closed in %v; node-a consul stats %+v", opened, closed, churnFor, st)
	if st.MaxOpenConns > DefaultConsulMaxConns {
		t.Errorf("node-a opened up to %d connections to Consul, want at most %d", st.MaxOpenConns, DefaultConsulMaxConns)
	}
	if st.Errors > 0 {
		t.Errorf("node-a saw %d Consul errors", st.Errors)
	}
	// The call across nodes still flows.
	before := bobTrack.packets.Load()
	waitFor(ctx, t, "media still flows across nodes", func() bool { return bobTrack.packets.Load() > before+20 })
}

// TestNodeManyRooms is the small version of the 5,000-room run: 300 rooms
// (the count that broke the one-watch-per-room design) and 5 s of churn.
func TestNodeManyRooms(t *testing.T) { manyRooms(t, 300, 50, 5*time.Second) }

// BenchmarkManyRooms is the full run: CONFAB_MANY_ROOMS rooms
// (make bench: 5,000) and a minute of churn at 50/s; make test's single
// iteration runs 1,000 rooms with 5 s of churn.
func BenchmarkManyRooms(b *testing.B) {
	rooms, churn := 1000, 5*time.Second
	if n, _ := strconv.Atoi(os.Getenv("CONFAB_MANY_ROOMS")); n > 0 {
		rooms, churn = n, time.Minute
	}
	for i := 0; i < b.N; i++ {
		manyRooms(b, rooms, 50, churn)
	}
}
