package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/consul/api"
)

// maintenanceCheck returns the Consul maintenance check of node's service,
// or nil.
func maintenanceCheck(t *testing.T, a *consulAgent, node string) *api.AgentCheck {
	t.Helper()
	checks, err := a.client.Agent().Checks()
	if err != nil {
		t.Fatalf("agent checks: %v", err)
	}
	for _, c := range checks {
		if c.ServiceID == serviceID(node) && c.CheckID == "_service_maintenance:"+serviceID(node) {
			return c
		}
	}
	return nil
}

// TestNodeDrain: a draining node keeps its rooms and pipes running, reports
// ErrDraining from Ready, marks its record draining (other nodes see it) and
// its service critical; Close afterwards removes every record.
func TestNodeDrain(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := newTestNode(t, a, "node-a")
	if err := na.node.Drain(ctx); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Drain before Start = %v, want ErrNotStarted", err)
	}
	if err := na.node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	nb := startTestNode(ctx, t, a, "node-b")
	itWaitCluster(ctx, t, na, nb)
	alice := itJoin(t, na, "demo", "Alice")
	alice.publishVP8(ctx, "cam")
	p1 := itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 1)[0]
	bob := itJoin(t, nb, "demo", "Bob")
	rt := itWaitMedia(ctx, t, bob, p1)

	if err := na.node.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := na.node.Drain(ctx); err != nil {
		t.Fatalf("second Drain: %v", err)
	}
	if err := na.node.Ready(); !errors.Is(err, ErrDraining) {
		t.Fatalf("Ready while draining = %v, want ErrDraining", err)
	}
	if err := nb.node.Ready(); err != nil {
		t.Fatalf("the other node's Ready = %v", err)
	}
	rec, ok := readNodeRecord(t, a, "node-a")
	if !ok || !rec.Draining || rec.URL != na.srv.URL {
		t.Fatalf("node record while draining = %+v, %v", rec, ok)
	}
	if c := maintenanceCheck(t, a, "node-a"); c == nil || c.Status != api.HealthCritical {
		t.Fatalf("maintenance check of the draining node = %+v, want critical", c)
	}
	if c := maintenanceCheck(t, a, "node-b"); c != nil {
		t.Fatalf("node-b in maintenance: %+v", c)
	}
	waitFor(ctx, t, "node-b sees node-a draining", func() bool {
		ni, count := nodeView(ctx, t, nb, "node-a")
		return count == 1 && ni.Draining && ni.Alive
	})
	if ni, _ := nodeView(ctx, t, na, "node-a"); !ni.Draining || !ni.Self {
		t.Errorf("node-a's own view of itself = %+v, want draining", ni)
	}

	t.Log("the draining node's rooms and pipes keep running")
	waitPackets(ctx, t, "media from the draining node", rt, 50)
	alice.publishVP8(ctx, "cam2")
	for _, p := range itLocalProducers(ctx, t, na, "demo", alice.p.ID(), 2) {
		itWaitMedia(ctx, t, bob, p)
	}

	t.Log("Close after Drain removes every record")
	if err := na.node.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, prefix := range []string{nodeKey("node-a"), roomNodeKey("demo", "node-a"), roomPrefix("demo") + roomProdDir + "node-a/"} {
		if keys := kvKeys(t, a, prefix); len(keys) != 0 {
			t.Errorf("records left after Close: %v", keys)
		}
	}
	if services, err := a.client.Agent().Services(); err != nil || services[serviceID("node-a")] != nil {
		t.Errorf("service still registered after Close (%v)", err)
	}
	if err := na.node.Drain(ctx); !errors.Is(err, ErrNodeClosed) {
		t.Errorf("Drain after Close = %v, want ErrNodeClosed", err)
	}
	waitFor(ctx, t, "node-b sees node-a gone", func() bool {
		ni, _ := nodeView(ctx, t, nb, "node-a")
		return !ni.Alive
	})
}

// TestNodeDrainConsulRestart: a draining node whose Consul agent restarts
// without data registers again as draining (record and maintenance mode).
func TestNodeDrainConsulRestart(t *testing.T) {
	checkLeaks(t)
	a := privateConsul(t)
	ctx := testContext(t)
	n := startTestNode(ctx, t, a, "node-a", fastConsul)
	if err := n.node.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	a.stop()
	a2 := a.restart(t)
	waitFor(ctx, t, "draining record and maintenance back", func() bool {
		rec, ok := readNodeRecord(t, a2, "node-a")
		c := maintenanceCheck(t, a2, "node-a")
		return ok && rec.Draining && c != nil && c.Status == api.HealthCritical
	})
	if err := n.node.Ready(); !errors.Is(err, ErrDraining) {
		t.Errorf("Ready = %v, want ErrDraining", err)
	}
	if err := n.node.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestDrainConsulDown: Drain with Consul hanging returns an error within its
// bound (the Consul timeout) but the node drains anyway; the record is
// written once Consul answers again.
func TestDrainConsulDown(t *testing.T) {
	checkLeaks(t)
	a := privateConsul(t)
	ctx := testContext(t)
	n := startTestNode(ctx, t, a, "node-a", fastConsul)
	a.freeze(t)
	dctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	if err := n.node.Drain(dctx); err == nil {
		t.Fatal("Drain with Consul down succeeded")
	} else {
		t.Logf("Drain with Consul down: %v", err)
	}
	if err := n.node.Ready(); !errors.Is(err, ErrDraining) {
		t.Errorf("Ready = %v, want ErrDraining", err)
	}
	a.thaw(t)
	waitFor(ctx, t, "draining record written after the outage", func() bool {
		rec, ok := readNodeRecord(t, a, "node-a")
		return ok && rec.Draining
	})
}
