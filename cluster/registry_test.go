package cluster

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func testRegistry(t *testing.T, a *consulAgent, node string) *registry {
	t.Helper()
	cfg := Config{NodeID: node, ConsulAddr: a.Addr(), SessionTTL: DefaultSessionTTL, ConsulTimeout: 5 * time.Second}
	r, err := newRegistry(cfg)
	if err != nil {
		t.Fatalf("newRegistry: %v", err)
	}
	t.Cleanup(r.close)
	return r
}

func TestRegistrySession(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	r := testRegistry(t, a, "node-s")

	id, err := r.createSession(ctx)
	if err != nil {
		t.Fatalf("createSession: %v", err)
	}
	info, _, err := a.client.Session().Info(id, nil)
	if err != nil || info == nil {
		t.Fatalf("session info: %v, %v", info, err)
	}
	if info.Name != "confab-node-s" || info.TTL != "10s" || info.Behavior != api.SessionBehaviorDelete || info.LockDelay != time.Millisecond {
		t.Fatalf("session = name %q ttl %q behavior %q lock delay %v; want confab-node-s, 10s, delete, 1ms",
			info.Name, info.TTL, info.Behavior, info.LockDelay)
	}
	if err := r.renewSession(ctx, id); err != nil {
		t.Fatalf("renewSession: %v", err)
	}

	// Keys acquired with the session vanish with it.
	if err := r.acquire(ctx, "confab/test/k", []byte("v"), id); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	// The same session may rewrite its key.
	if err := r.acquire(ctx, "confab/test/k", []byte("v2"), id); err != nil {
		t.Fatalf("re-acquire: %v", err)
	}
	// Another session may not.
	other, err := r.createSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.acquire(ctx, "confab/test/k", []byte("x"), other); !errors.Is(err, ErrKeyHeld) {
		t.Fatalf("acquire of a held key = %v, want ErrKeyHeld", err)
	}
	if err := r.destroySession(ctx, id); err != nil {
		t.Fatalf("destroySession: %v", err)
	}
	if kvHas(t, a, "confab/test/k") {
		t.Fatal("key of a destroyed session still exists (behavior delete)")
	}
	// The 1ms lock delay lets another session take the key at once.
	waitFor(ctx, t, "re-acquire after lock delay", func() bool {
		return r.acquire(ctx, "confab/test/k", []byte("x"), other) == nil
	})
	if err := r.renewSession(ctx, id); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("renew of a destroyed session = %v, want ErrSessionLost", err)
	}
	if err := r.acquire(ctx, "confab/test/k2", []byte("x"), id); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("acquire with a destroyed session = %v, want ErrSessionLost", err)
	}
}

func TestRegistryClearNode(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	kv := a.client.KV()
	// An earlier life of node-x left records, some held by its (still
	// alive) session, some without any session; node-x1 and node-y are
	// other nodes whose records must survive.
	old, _, err := a.client.Session().Create(&api.SessionEntry{Name: "confab-node-x", TTL: "60s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := []string{nodeKey("node-x"), roomNodeKey("r1", "node-x"), producerKey("r1", "node-x", "p1")}
	loose := []string{roomNodeKey("r2", "node-x"), producerKey("r2", "node-x", "p2")}
	keep := []string{nodeKey("node-x1"), roomNodeKey("r1", "node-x1"), producerKey("r1", "node-x1", "p3"), producerKey("r1", "node-y", "p4")}
	for _, k := range held {
		if ok, _, err := kv.Acquire(&api.KVPair{Key: k, Value: []byte("{}"), Session: old}, nil); err != nil || !ok {
			t.Fatalf("acquire %s: %v %v", k, ok, err)
		}
	}
	for _, k := range append(slices.Clone(loose), keep...) {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte("{}")}, nil); err != nil {
			t.Fatal(err)
		}
	}

	r := testRegistry(t, a, "node-x")
	deleted, err := r.clearNode(ctx, "node-x")
	if err != nil {
		t.Fatalf("clearNode: %v", err)
	}
	if len(deleted) != len(held)+len(loose) {
		t.Fatalf("clearNode deleted %v, want %d keys", deleted, len(held)+len(loose))
	}
	for _, k := range append(held, loose...) {
		if kvHas(t, a, k) {
			t.Errorf("stale key %s survived clearNode", k)
		}
	}
	for _, k := range keep {
		if !kvHas(t, a, k) {
			t.Errorf("key %s of another node was deleted", k)
		}
	}

	mine, err := r.createSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.destroyStaleSessions(ctx, mine)
	if err != nil || n != 1 {
		t.Fatalf("destroyStaleSessions = %d, %v; want 1", n, err)
	}
	if info, _, _ := a.client.Session().Info(old, nil); info != nil {
		t.Fatal("stale session survived")
	}
	if info, _, _ := a.client.Session().Info(mine, nil); info == nil {
		t.Fatal("own session was destroyed")
	}
	// The node's key is free at once (deleting did not start a lock delay).
	if err := r.acquire(ctx, nodeKey("node-x"), []byte("{}"), mine); err != nil {
		t.Fatalf("acquire own node key after cleanup: %v", err)
	}
}

func TestRegistryService(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	r := testRegistry(t, a, "node-svc")
	if err := r.registerService(ctx, "http://127.0.0.1:18081", "v1.2.3"); err != nil {
		t.Fatalf("registerService: %v", err)
	}
	// Idempotent.
	if err := r.registerService(ctx, "http://127.0.0.1:18081", "v1.2.3"); err != nil {
		t.Fatalf("registerService again: %v", err)
	}
	svc, _, err := a.client.Agent().Service("confab-node-svc", nil)
	if err != nil {
		t.Fatalf("agent service: %v", err)
	}
	if svc.Service != "confab" || svc.Address != "127.0.0.1" || svc.Port != 18081 || svc.Meta["node"] != "node-svc" {
		t.Fatalf("service = %+v", svc)
	}
	checks, err := a.client.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range checks {
		if c.ServiceID == "confab-node-svc" {
			found = true
			if c.Type != "http" {
				t.Fatalf("check type %q, want http", c.Type)
			}
		}
	}
	if !found {
		t.Fatal("no health check registered for the service")
	}
	if err := r.deregisterService(ctx); err != nil {
		t.Fatalf("deregisterService: %v", err)
	}
	services, err := a.client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["confab-node-svc"]; ok {
		t.Fatal("service still registered")
	}
}

func TestRegistryUnreachable(t *testing.T) {
	checkLeaks(t)
	ports, err := freeConsulPorts() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{NodeID: "n", ConsulAddr: "127.0.0.1:" + strconv.Itoa(ports.http), SessionTTL: DefaultSessionTTL, ConsulTimeout: time.Second}
	r, err := newRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.createSession(ctx); err == nil {
		t.Fatal("createSession against a closed port succeeded")
	}
}
