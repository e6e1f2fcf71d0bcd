package cluster

import (
	"context"
	"errors"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
	"github.com/hashicorp/consul/api"
)

// Consul trouble: the agent hangs for a short while (sessions survive), or
// dies and comes back without its data (a dev agent: the hard case).

// fastConsul makes a node notice Consul trouble and recovery quickly.
func fastConsul(c *Config) {
	c.ConsulTimeout = time.Second
	c.WatchWait = 2 * time.Second
	c.MaxBackoff = 500 * time.Millisecond
}

// waitPackets waits until rt received at least n more packets than it had
// on entry: media keeps flowing.
func waitPackets(ctx context.Context, t *testing.T, what string, rt *itTrack, n int64) {
	t.Helper()
	base := rt.packets.Load()
	waitFor(ctx, t, what, func() bool { return rt.packets.Load() >= base+n })
}

// waitDegraded waits until n's Ready reports ErrDegraded.
func waitDegraded(ctx context.Context, t *testing.T, n *testNode) {
	t.Helper()
	waitFor(ctx, t, n.id+" reports degraded", func() bool { return errors.Is(n.node.Ready(), ErrDegraded) })
	t.Logf("%s Ready: %v", n.id, n.node.Ready())
}

// waitReady waits until n's Ready returns nil.
func waitReady(ctx context.Context, t *testing.T, n *testNode) {
	t.Helper()
	waitFor(ctx, t, n.id+" ready again", func() bool { return n.node.Ready() == nil })
}

// localMediaWorks joins a publisher and a subscriber to a new room on n and
// waits until the subscriber gets the publisher's media: the sfu works
// without Consul. It returns the new producer.
func localMediaWorks(ctx context.Context, t *testing.T, n *testNode, room string) sfu.ProducerInfo {
	t.Helper()
	start := time.Now()
	dave := itJoin(t, n, room, "Dave")
	dave.publishVP8(ctx, "dave-cam")
	prod := itLocalProducers(ctx, t, n, room, dave.p.ID(), 1)[0]
	erin := itJoin(t, n, room, "Erin")
	itWaitMedia(ctx, t, erin, prod)
	t.Logf("local join+publish+subscribe on %s during the outage took %v", n.id, time.Since(start).Round(10*time.Millisecond))
	return prod
}

// noRemoval fails the test if c ever got producer-removed for prod, or if
// its track of prod is not first (it was piped again).
func noRemoval(t *testing.T, c *itClient, prod string, first *itTrack) {
	t.Helper()
	if c.hasEvent(sfu.EventProducerRemoved, prod) {
		t.Errorf("%s got producer-removed for %s: the pipe was dropped", c.name, prod)
	}
	if rt := c.track(prod); rt != first {
		t.Errorf("%s receives %s on a new track: it was dropped and piped again", c.name, prod)
	}
}

// TestConsulOutageShort: the Consul agent hangs (SIGSTOP) for a few seconds,
// less than the session TTL. Media keeps flowing over the existing pipe,
// both nodes report degraded, a new local room works; when Consul answers
// again the nodes continue with the same sessions, write what changed
// meanwhile, and report ready.
func TestConsulOutageShort(t *testing.T) {
	checkLeaks(t)
	a := privateConsul(t)
	ctx := testContext(t)
	ttl := func(c *Config) { fastConsul(c); c.SessionTTL = 30 * time.Second }
	na := startTestNode(ctx, t, a, "node-a", ttl)
	nb := startTestNode(ctx, t, a, "node-b", ttl)
	itWaitCluster(ctx, t, na, nb)
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam")
	p1 := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	bob := itJoin(t, nb, "demo", "Bob")
	first := itWaitMedia(ctx, t, bob, p1)
	sessions := map[string]string{na.id: na.node.sessionID(), nb.id: nb.node.sessionID()}

	t.Log("consul hangs")
	frozen := time.Now()
	a.freeze(t)
	pd := localMediaWorks(ctx, t, na, "during")
	waitDegraded(ctx, t, na)
	waitDegraded(ctx, t, nb)
	waitPackets(ctx, t, "media over the pipe during the outage", first, 50)
	t.Logf("consul hung for %v", time.Since(frozen).Round(10*time.Millisecond))

	thawed := time.Now()
	a.thaw(t)
	waitReady(ctx, t, na)
	waitReady(ctx, t, nb)
	t.Logf("both nodes ready %v after consul answered again", time.Since(thawed).Round(10*time.Millisecond))
	waitFor(ctx, t, "records written during the outage", func() bool {
		return kvHas(t, a, roomNodeKey("during", "node-a")) && kvHas(t, a, producerKey("during", "node-a", pd.ID))
	})
	for _, n := range []*testNode{na, nb} {
		if got := n.node.sessionID(); got != sessions[n.id] {
			t.Errorf("%s session changed from %s to %s: a short outage must not cost the session", n.id, sessions[n.id], got)
		}
	}
	waitPackets(ctx, t, "media over the pipe after the outage", first, 50)
	noRemoval(t, bob, p1.ID, first)
}

// TestConsulRestartLosesData: the Consul agent is killed while two nodes
// exchange media in both directions, and comes back on the same ports
// without its data. During the outage media keeps flowing, the nodes report
// degraded and new local rooms work. After the restart every node
// re-creates its session and writes its node record, service, rooms and
// producers again — each exactly once — and nothing that was piped is
// dropped or piped again (not even when the resync grace period ends); a
// producer published after the recovery is piped across.
func TestConsulRestartLosesData(t *testing.T) {
	checkLeaks(t)
	a := privateConsul(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a", fastConsul)
	nb := startTestNode(ctx, t, a, "node-b", fastConsul)
	itWaitCluster(ctx, t, na, nb)
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam")
	pa := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	bob := itJoin(t, nb, "demo", "Bob")
	bob.publishVP8(ctx, "cam")
	pb := itLocalProducers(ctx, t, nb, "demo", bob.p.ID(), 1)[0]
	atBob := itWaitMedia(ctx, t, bob, pa)
	atAlice := itWaitMedia(ctx, t, alice, pb)
	oldSessions := []string{na.node.sessionID(), nb.node.sessionID()}
	// Push the directory's index well above what the fresh agent reaches,
	// so the watches see it go backwards (one of several signals of lost
	// data; the lost session and the vanished own records are others).
	bump := nodesPrefix + "zz-bump" // not a valid node record: ignored
	for i := 0; i < 100; i++ {
		if _, err := a.client.KV().Put(&api.KVPair{Key: bump, Value: []byte{byte(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.client.KV().Delete(bump, nil); err != nil {
		t.Fatal(err)
	}

	t.Log("consul dies")
	a.stop()
	pd := localMediaWorks(ctx, t, na, "during")
	waitDegraded(ctx, t, na)
	waitDegraded(ctx, t, nb)
	waitPackets(ctx, t, "A->B media during the outage", atBob, 50)
	waitPackets(ctx, t, "B->A media during the outage", atAlice, 50)

	t.Log("consul restarts on the same ports without its data")
	restarted := time.Now()
	a2 := a.restart(t)
	answering := time.Now()
	t.Logf("fresh consul agent answering %v after the restart began", answering.Sub(restarted).Round(10*time.Millisecond))
	want := []string{
		nodeKey("node-a"), nodeKey("node-b"),
		roomNodeKey("demo", "node-a"), roomNodeKey("demo", "node-b"),
		producerKey("demo", "node-a", pa.ID), producerKey("demo", "node-b", pb.ID),
		roomNodeKey("during", "node-a"), producerKey("during", "node-a", pd.ID),
	}
	sort.Strings(want)
	waitFor(ctx, t, "every record back", func() bool {
		return slices.Equal(kvKeys(t, a2, kvRoot), want)
	})
	t.Logf("all records back in Consul %v after the fresh agent answered", time.Since(answering).Round(10*time.Millisecond))
	waitReady(ctx, t, na)
	waitReady(ctx, t, nb)
	t.Logf("both nodes ready %v after the fresh agent answered", time.Since(answering).Round(10*time.Millisecond))

	t.Log("each record exactly once, held by its node's new session")
	for _, n := range []*testNode{na, nb} {
		session := n.node.sessionID()
		if slices.Contains(oldSessions, session) {
			t.Errorf("%s kept a session the new agent never knew", n.id)
		}
		pairs, _, err := a2.client.KV().List(kvRoot, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			id, isNode := parseNodeKey(p.Key)
			k, isRoom := parseRoomKey(p.Key)
			if (isNode && id == n.id || isRoom && k.Node == n.id) && p.Session != session {
				t.Errorf("%s is held by session %q, want %s's %q", p.Key, p.Session, n.id, session)
			}
		}
		services, err := a2.client.Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		if services[serviceID(n.id)] == nil {
			t.Errorf("service of %s not registered again", n.id)
		}
	}
	sessions, _, err := a2.client.Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 2 {
		t.Errorf("sessions on the new agent = %d, want 2 (one per node)", len(sessions))
	}

	t.Log("nothing piped was dropped, also once the resync grace period is over")
	waitFor(ctx, t, "resync grace periods over", func() bool {
		now := time.Now()
		return !na.node.inResync(now) && !nb.node.inResync(now)
	})
	for _, n := range []*testNode{na, nb} {
		n.node.pokeRooms()
	}
	waitPackets(ctx, t, "A->B media after the grace period", atBob, 50)
	waitPackets(ctx, t, "B->A media after the grace period", atAlice, 50)
	noRemoval(t, bob, pa.ID, atBob)
	noRemoval(t, alice, pb.ID, atAlice)

	t.Log("a producer published after the recovery is piped across")
	alice.publishVP8(ctx, "cam2")
	var p2 sfu.ProducerInfo
	for _, p := range itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 2) {
		if p.ID != pa.ID {
			p2 = p
		}
	}
	itWaitMedia(ctx, t, bob, p2)

	// Close while the restarted agent still runs (its cleanup stops it first).
	for _, n := range []*testNode{nb, na} {
		if err := n.node.Close(); err != nil {
			t.Errorf("close %s: %v", n.id, err)
		}
	}
}
