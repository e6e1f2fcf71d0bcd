package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
	"github.com/hashicorp/consul/api"
)

// testSecret is the cluster secret of test nodes.
const testSecret = "0123456789abcdef-test-secret"

// testNode is one full confab node in the test process: an sfu.Engine on an
// ephemeral loopback UDP port, a cluster.Node with real Consul, and an HTTP
// server (the AdvertiseURL) serving the control channel and /healthz.
type testNode struct {
	id     string
	engine *sfu.Engine
	node   *Node
	srv    *httptest.Server
}

type nodeOpt func(*Config)

// newTestNode creates (but does not start) a node. Cleanup closes the node,
// then the HTTP server, then the engine (the app's order).
func newTestNode(t testing.TB, a *consulAgent, id string, opts ...nodeOpt) *testNode {
	t.Helper()
	engine, err := sfu.New(sfu.Config{
		NodeID:          id,
		UDPAddr:         "127.0.0.1:0",
		IncludeLoopback: true,
		Logger:          testLogger(t).With("node", id, "component", "sfu"),
	})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	t.Cleanup(func() {
		if err := engine.Close(); err != nil {
			t.Errorf("engine %s close: %v", id, err)
		}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := Config{
		NodeID:       id,
		ConsulAddr:   a.Addr(),
		AdvertiseURL: srv.URL,
		Secret:       testSecret,
		Version:      "test",
		Logger:       testLogger(t).With("node", id, "component", "cluster"),
		WatchWait:    10 * time.Second,
		MaxBackoff:   time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	node, err := New(cfg, engine)
	if err != nil {
		t.Fatalf("cluster.New: %v", err)
	}
	mux.Handle("/cluster/", node.Handler())
	engine.SetObserver(node)
	t.Cleanup(func() {
		if err := node.Close(); err != nil {
			t.Errorf("node %s close: %v", id, err)
		}
	})
	return &testNode{id: id, engine: engine, node: node, srv: srv}
}

// startTestNode creates and starts a node.
func startTestNode(ctx context.Context, t testing.TB, a *consulAgent, id string, opts ...nodeOpt) *testNode {
	t.Helper()
	n := newTestNode(t, a, id, opts...)
	if err := n.node.Start(ctx); err != nil {
		t.Fatalf("node %s start: %v", id, err)
	}
	return n
}

// nopEvents is an EventHandler for participants whose events do not matter.
var nopEvents = sfu.EventHandlerFunc(func(sfu.Event) {})

func join(t *testing.T, e *sfu.Engine, room, name string) *sfu.Participant {
	t.Helper()
	p, err := e.Join(room, sfu.JoinParams{Name: name, Events: nopEvents})
	if err != nil {
		t.Fatalf("join %s: %v", room, err)
	}
	t.Cleanup(p.Close)
	return p
}

func readNodeRecord(t *testing.T, a *consulAgent, id string) (nodeRecord, bool) {
	t.Helper()
	p, _, err := a.client.KV().Get(nodeKey(id), nil)
	if err != nil {
		t.Fatalf("get node record: %v", err)
	}
	if p == nil {
		return nodeRecord{}, false
	}
	var rec nodeRecord
	if err := json.Unmarshal(p.Value, &rec); err != nil {
		t.Fatalf("node record %s: %v", p.Value, err)
	}
	return rec, true
}

func TestNodeLifecycle(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	n := newTestNode(t, a, "node-a")
	if err := n.node.Ready(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Ready before Start = %v, want ErrNotStarted", err)
	}
	if err := n.node.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := n.node.Start(ctx); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start = %v, want ErrAlreadyStarted", err)
	}
	if err := n.node.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}

	rec, ok := readNodeRecord(t, a, "node-a")
	if !ok || rec.ID != "node-a" || rec.URL != n.srv.URL || rec.Version != "test" || rec.StartedAt.IsZero() {
		t.Fatalf("node record = %+v, %v", rec, ok)
	}
	pair, _, err := a.client.KV().Get(nodeKey("node-a"), nil)
	if err != nil || pair.Session == "" {
		t.Fatalf("node record not held by a session: %+v %v", pair, err)
	}
	info, _, err := a.client.Session().Info(pair.Session, nil)
	if err != nil || info == nil || info.Name != "confab-node-a" || info.Behavior != api.SessionBehaviorDelete {
		t.Fatalf("session = %+v, %v", info, err)
	}
	if _, _, err := a.client.Agent().Service("confab-node-a", nil); err != nil {
		t.Fatalf("service not registered: %v", err)
	}

	// A room opens: its record appears; a local producer is recorded.
	p := join(t, n.engine, "demo", "Alice")
	waitFor(ctx, t, "room record", func() bool { return kvHas(t, a, roomNodeKey("demo", "node-a")) })
	room := n.engine.Room("demo")
	prod := sfu.ProducerInfo{ID: "prod1", Kind: sfu.KindVideo, ParticipantID: p.ID(), ParticipantName: "Alice",
		Codec: sfu.Codec{MimeType: "video/VP8", ClockRate: 90000}, Origin: "node-a"}
	n.node.ProducerAdded(room, prod)
	pk := producerKey("demo", "node-a", "prod1")
	waitFor(ctx, t, "producer record", func() bool { return kvHas(t, a, pk) })
	got, _, err := a.client.KV().Get(pk, nil)
	if err != nil {
		t.Fatal(err)
	}
	var gotRec producerRecord
	if err := json.Unmarshal(got.Value, &gotRec); err != nil || gotRec.ID != "prod1" || gotRec.Origin != "node-a" || gotRec.Remote {
		t.Fatalf("producer record %s (%v)", got.Value, err)
	}
	if got.Session != pair.Session {
		t.Fatal("producer record not held by the node's session")
	}
	waitFor(ctx, t, "load 1 in the node record", func() bool {
		rec, _ := readNodeRecord(t, a, "node-a")
		return rec.Load == 1
	})

	st, err := n.node.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.NodeID != "node-a" || st.Mode != "consul" || len(st.Nodes) != 1 || !st.Nodes[0].Alive || !st.Nodes[0].Self ||
		len(st.Rooms) != 1 || st.Rooms[0].Name != "demo" || len(st.Rooms[0].Participants) != 1 ||
		st.Consul == nil || st.Consul.Session != pair.Session || st.Links == nil {
		t.Fatalf("Status = %+v", st)
	}
	waitFor(ctx, t, "room nodes in status", func() bool {
		st, _ := n.node.Status(ctx)
		return len(st.Rooms) == 1 && len(st.Rooms[0].Nodes) == 1 && st.Rooms[0].Nodes[0] == "node-a"
	})

	n.node.ProducerRemoved("demo", prod)
	waitFor(ctx, t, "producer record deleted", func() bool { return !kvHas(t, a, pk) })

	// Last participant leaves: the room record goes.
	p.Close()
	waitFor(ctx, t, "room record deleted", func() bool { return !kvHas(t, a, roomNodeKey("demo", "node-a")) })

	if err := n.node.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.node.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := readNodeRecord(t, a, "node-a"); ok {
		t.Fatal("node record survived Close")
	}
	if info, _, _ := a.client.Session().Info(pair.Session, nil); info != nil {
		t.Fatal("session survived Close")
	}
	services, err := a.client.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := services["confab-node-a"]; ok {
		t.Fatal("service survived Close")
	}
	if err := n.node.Ready(); !errors.Is(err, ErrNodeClosed) {
		t.Fatalf("Ready after Close = %v, want ErrNodeClosed", err)
	}
	if _, err := n.node.Status(ctx); !errors.Is(err, ErrNodeClosed) {
		t.Fatalf("Status after Close = %v, want ErrNodeClosed", err)
	}
	if err := n.node.Start(ctx); !errors.Is(err, ErrNodeClosed) {
		t.Fatalf("Start after Close = %v, want ErrNodeClosed", err)
	}
}

// TestNodeClearsStaleRecords: a node id that died left records behind (held
// by its still-alive session, or by no session); when the id starts again
// they are deleted before the new records are written.
func TestNodeClearsStaleRecords(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	kv := a.client.KV()
	old, _, err := a.client.Session().Create(&api.SessionEntry{Name: "confab-node-a", TTL: "120s", Behavior: api.SessionBehaviorDelete}, nil)
	if err != nil {
		t.Fatal(err)
	}
	staleProducer := producerKey("old-room", "node-a", "old-prod")
	staleRoom := roomNodeKey("old-room", "node-a")
	for _, k := range []string{nodeKey("node-a"), staleRoom} {
		if ok, _, err := kv.Acquire(&api.KVPair{Key: k, Value: []byte(`{"id":"node-a","url":"http://127.0.0.1:1"}`), Session: old}, nil); err != nil || !ok {
			t.Fatalf("acquire %s: %v %v", k, ok, err)
		}
	}
	if _, err := kv.Put(&api.KVPair{Key: staleProducer, Value: []byte(`{"id":"old-prod"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	other := producerKey("old-room", "node-b", "b-prod")
	if _, err := kv.Put(&api.KVPair{Key: other, Value: []byte(`{"id":"b-prod"}`)}, nil); err != nil {
		t.Fatal(err)
	}

	n := startTestNode(ctx, t, a, "node-a")
	if kvHas(t, a, staleProducer) || kvHas(t, a, staleRoom) {
		t.Fatal("stale records of node-a survived Start")
	}
	if !kvHas(t, a, other) {
		t.Fatal("another node's record was deleted")
	}
	rec, ok := readNodeRecord(t, a, "node-a")
	if !ok || rec.URL != n.srv.URL {
		t.Fatalf("node record after restart = %+v, %v", rec, ok)
	}
	if info, _, _ := a.client.Session().Info(old, nil); info != nil {
		t.Fatal("the earlier life's session survived Start")
	}
}

// TestNodeSessionLost: when the session disappears (here: destroyed behind
// the node's back, as after an outage longer than the TTL) the node creates
// a new one and writes all its records again.
func TestNodeSessionLost(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	n := startTestNode(ctx, t, a, "node-a")
	join(t, n.engine, "demo", "Alice")
	waitFor(ctx, t, "room record", func() bool { return kvHas(t, a, roomNodeKey("demo", "node-a")) })
	n.node.ProducerAdded(n.engine.Room("demo"), sfu.ProducerInfo{ID: "p1", Kind: sfu.KindAudio, ParticipantID: "x", Origin: "node-a"})
	pk := producerKey("demo", "node-a", "p1")
	waitFor(ctx, t, "producer record", func() bool { return kvHas(t, a, pk) })
	first := n.node.sessionID()
	if _, err := a.client.Session().Destroy(first, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "records rewritten under a new session", func() bool {
		p, _, err := a.client.KV().Get(nodeKey("node-a"), nil)
		if err != nil || p == nil || p.Session == "" || p.Session == first {
			return false
		}
		r, _, _ := a.client.KV().Get(roomNodeKey("demo", "node-a"), nil)
		pp, _, _ := a.client.KV().Get(pk, nil)
		return r != nil && pp != nil && r.Session == p.Session && pp.Session == p.Session
	})
	if err := n.node.Ready(); err != nil {
		t.Fatalf("Ready after session recovery = %v", err)
	}
}

// TestNodeDirectory: nodes see each other come and go.
func TestNodeDirectory(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	alive := func(n *testNode, id string) (found, isAlive bool) {
		st, err := n.node.Status(ctx)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		for _, ni := range st.Nodes {
			if ni.ID == id {
				return true, ni.Alive
			}
		}
		return false, false
	}
	waitFor(ctx, t, "a sees b", func() bool { f, al := alive(na, "node-b"); return f && al })
	waitFor(ctx, t, "b sees a", func() bool { f, al := alive(nb, "node-a"); return f && al })
	if url, ok := na.node.resolve("node-b"); !ok || url != nb.srv.URL {
		t.Fatalf("resolve(node-b) = %q, %v; want %q", url, ok, nb.srv.URL)
	}
	if _, ok := na.node.resolve("node-a"); ok {
		t.Fatal("a node resolves itself")
	}
	if err := nb.node.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "a sees b gone", func() bool { f, al := alive(na, "node-b"); return f && !al })
	// Alive can turn false first through the liveness probe (b's control
	// channel closed) while b's record delete is still on its way from
	// Consul; resolve follows the record, so wait for it too.
	waitFor(ctx, t, "a no longer resolves b", func() bool { _, ok := na.node.resolve("node-b"); return !ok })
}

// TestNodeObserverBeforeStart: rooms opened before Start are recorded and
// watched once the node starts.
func TestNodeObserverBeforeStart(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	n := newTestNode(t, a, "node-a")
	join(t, n.engine, "early", "Alice")
	gone := join(t, n.engine, "gone", "Bob")
	gone.Close()
	if err := n.node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "early room record", func() bool { return kvHas(t, a, roomNodeKey("early", "node-a")) })
	if kvHas(t, a, roomNodeKey("gone", "node-a")) {
		t.Fatal("a room closed before Start was recorded")
	}
	waitFor(ctx, t, "early room watched", func() bool {
		st, _ := n.node.Status(ctx)
		return len(st.Rooms) == 1 && len(st.Rooms[0].Nodes) == 1
	})
}

// TestNodeLateRoomClosed: a RoomClosed report for a name whose current
// engine room is the watched one is about an older room and is ignored.
func TestNodeLateRoomClosed(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	n := startTestNode(ctx, t, a, "node-a")
	join(t, n.engine, "demo", "Alice")
	waitFor(ctx, t, "room record", func() bool { return kvHas(t, a, roomNodeKey("demo", "node-a")) })
	n.node.RoomOpened(n.engine.Room("demo")) // duplicate report: no-op
	n.node.RoomClosed("demo")                // late report of an older room
	// Prove the writer processed everything queued before checking.
	n.node.ProducerAdded(n.engine.Room("demo"), sfu.ProducerInfo{ID: "marker", Kind: sfu.KindAudio, ParticipantID: "x", Origin: "node-a"})
	waitFor(ctx, t, "marker record", func() bool { return kvHas(t, a, producerKey("demo", "node-a", "marker")) })
	if !kvHas(t, a, roomNodeKey("demo", "node-a")) {
		t.Fatal("late RoomClosed deleted the open room's record")
	}
	n.node.mu.Lock()
	w := n.node.rooms["demo"]
	n.node.mu.Unlock()
	if w == nil || w.ctx.Err() != nil {
		t.Fatal("late RoomClosed stopped the open room's watch")
	}
}

func TestNodeStartUnreachableConsul(t *testing.T) {
	checkLeaks(t)
	ports, err := freeConsulPorts()
	if err != nil {
		t.Fatal(err)
	}
	unreachable := &consulAgent{ports: ports}
	n := newTestNode(t, unreachable, "node-a", func(c *Config) { c.ConsulTimeout = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.node.Start(ctx); err == nil {
		t.Fatal("Start with an unreachable Consul succeeded")
	}
	if err := n.node.Ready(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Ready after failed Start = %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	checkLeaks(t)
	engine, err := sfu.New(sfu.Config{NodeID: "node-a", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	tests := []struct {
		name   string
		cfg    func() Config
		engine *sfu.Engine
	}{
		{name: "nil engine", cfg: validConfig, engine: nil},
		{name: "node id mismatch", cfg: func() Config { c := validConfig(); c.NodeID = "node-b"; return c }, engine: engine},
		{name: "bad config", cfg: func() Config { c := validConfig(); c.Secret = ""; return c }, engine: engine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg(), tt.engine); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	st := Status{
		NodeID: "a", Mode: "consul",
		Nodes:  []NodeInfo{{ID: "a", URL: "http://x", Load: 1, StartedAt: time.Unix(0, 0).UTC(), Alive: true, Self: true}},
		Rooms:  []RoomStatus{{Name: "r", Participants: []ParticipantStatus{}, LocalProducers: []ProducerStatus{}, PipedProducers: []ProducerStatus{}, Nodes: []string{"a"}}},
		Links:  []pipe.LinkStatus{},
		Consul: &ConsulStatus{Address: "127.0.0.1:8500", Session: "s", Healthy: true},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"nodeId"`, `"mode"`, `"nodes"`, `"startedAt"`, `"alive"`, `"rooms"`, `"participants"`,
		`"localProducers"`, `"pipedProducers"`, `"links"`, `"consul"`, `"healthy"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("status JSON %s lacks %s", b, key)
		}
	}
}

// TestNodeConsulRestart: the Consul agent restarts without its data (a dev
// agent); the node notices its records and session are gone and registers
// everything again, service included.
func TestNodeConsulRestart(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	a, err := startConsulAgent(dir)
	if err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	t.Cleanup(func() { a.stop() })
	ctx := testContext(t)
	n := startTestNode(ctx, t, a, "node-a", func(c *Config) { c.WatchWait = 2 * time.Second; c.MaxBackoff = 500 * time.Millisecond })
	join(t, n.engine, "demo", "Alice")
	waitFor(ctx, t, "room record", func() bool { return kvHas(t, a, roomNodeKey("demo", "node-a")) })

	a.stop()
	a2, err := startConsulAgentOn(a.bin, dir, a.ports)
	if err != nil {
		t.Fatalf("restart consul agent: %v", err)
	}
	t.Cleanup(func() { a2.stop() })
	waitFor(ctx, t, "records written again", func() bool {
		return kvHas(t, a2, nodeKey("node-a")) && kvHas(t, a2, roomNodeKey("demo", "node-a"))
	})
	waitFor(ctx, t, "service registered again", func() bool {
		services, err := a2.client.Agent().Services()
		return err == nil && services["confab-node-a"] != nil
	})
	waitFor(ctx, t, "healthy status", func() bool {
		st, err := n.node.Status(ctx)
		return err == nil && st.Consul.Healthy
	})
	// Close while the restarted agent still runs (cleanups stop it first).
	if err := n.node.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
