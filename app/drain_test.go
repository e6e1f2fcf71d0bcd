package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/confab/confab/cluster"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

// waitBound turns a hang into a failure; tests never pass or fail on how
// fast something happens within it.
const waitBound = 60 * time.Second

// node is a Run in progress.
type node struct {
	t      *testing.T
	base   string // http://host:port
	cancel context.CancelFunc
	done   chan error
}

// testConfig is a single-node Config on free loopback ports.
func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg.UDPIP = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.NodeID = "test-node"
	cfg.LogLevel = "error"
	cfg.TURNPort = 0 // nodes of one test would share the default port
	return cfg
}

// startNode runs cfg until the test cancels it (or the test ends).
func startNode(t *testing.T, cfg Config) *node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, base: "http://" + cfg.HTTPAddr, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- Run(ctx, cfg) }()
	client := &http.Client{Timeout: 5 * time.Second}
	waitHealthy(t, client, n.base+"/healthz", n.done)
	client.CloseIdleConnections()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(waitBound):
			t.Error("Run did not return")
		}
	})
	return n
}

// wait returns Run's result, failing after waitBound.
func (n *node) wait() error {
	n.t.Helper()
	select {
	case err := <-n.done:
		n.done <- err // for the cleanup
		return err
	case <-time.After(waitBound):
		n.t.Fatal("Run did not return")
		return nil
	}
}

// returned reports whether Run has returned already.
func (n *node) returned() bool {
	select {
	case err := <-n.done:
		n.done <- err
		return true
	default:
		return false
	}
}

// get returns status and body of a GET.
func (n *node) get(path string) (int, string) {
	n.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(n.base + path)
	if err != nil {
		n.t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// wsMsg is a server message, decoded loosely.
type wsMsg struct {
	Type    string     `json:"type"`
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Reason  string     `json:"reason"`
	NodeID  string     `json:"nodeId"`
	Nodes   []web.Peer `json:"nodes"`
}

// wsClient is a minimal signaling client.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func (n *node) dial(room string) *wsClient {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.base, "http")+"/rooms/"+room+"/ws", nil)
	if err != nil {
		n.t.Fatalf("dial %s: %v", room, err)
	}
	n.t.Cleanup(func() { _ = conn.CloseNow() })
	return &wsClient{t: n.t, conn: conn}
}

func (c *wsClient) send(v map[string]any) {
	c.t.Helper()
	v["v"] = 1
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next message, skipping room events.
func (c *wsClient) read() (wsMsg, error) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		_, b, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			return wsMsg{}, err
		}
		var m wsMsg
		if err := json.Unmarshal(b, &m); err != nil {
			return wsMsg{}, err
		}
		switch m.Type {
		case "participant-joined", "participant-left", "producer-added", "producer-removed", "subscriber-offer", "candidate":
			continue
		}
		return m, nil
	}
}

func (c *wsClient) expect(typ string) wsMsg {
	c.t.Helper()
	m, err := c.read()
	if err != nil || m.Type != typ {
		c.t.Fatalf("want %q, got %+v (%v)", typ, m, err)
	}
	return m
}

func (c *wsClient) join(name string) wsMsg {
	c.t.Helper()
	c.send(map[string]any{"type": "join", "name": name})
	return c.expect("joined")
}

// closeStatus reads until the connection ends.
func (c *wsClient) closeStatus() websocket.StatusCode {
	for {
		if _, err := c.read(); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// TestRunDrainWaitsForClients: cancelling Run's context drains the node:
// the connected client is told to move, new joins are refused, /readyz
// says draining, and Run returns once the client has left (long before
// the drain timeout).
func TestRunDrainWaitsForClients(t *testing.T) {
	// Registered first, so it runs after every other cleanup (node, sockets).
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg := testConfig(t)
	cfg.DrainTimeout = 10 * time.Minute // only the client leaving can end the drain
	n := startNode(t, cfg)

	alice := n.dial("standup")
	if j := alice.join("Alice"); j.NodeID != "test-node" || len(j.Nodes) != 1 || j.Nodes[0].ID != "test-node" {
		t.Fatalf("joined = %+v, want this node alone in nodes", j)
	}

	n.cancel() // SIGTERM
	m := alice.expect("move")
	if m.Reason != "draining" || m.Nodes == nil || len(m.Nodes) != 0 {
		t.Errorf("move = %+v, want reason draining and no other node", m)
	}
	if status, body := n.get("/readyz"); status != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Errorf("GET /readyz while draining = %d %s", status, body)
	}
	bob := n.dial("standup")
	bob.send(map[string]any{"type": "join", "name": "Bob"})
	if e := bob.expect("error"); e.Code != "draining" {
		t.Errorf("join while draining: %+v, want error draining", e)
	}
	if code := bob.closeStatus(); code != websocket.StatusTryAgainLater {
		t.Errorf("refused join closed with %v, want try again later", code)
	}
	alice.send(map[string]any{"type": "ping"})
	alice.expect("pong") // still served
	if n.returned() {
		t.Fatal("Run returned while a client was still in a room")
	}

	alice.send(map[string]any{"type": "leave"})
	if code := alice.closeStatus(); code != websocket.StatusNormalClosure {
		t.Errorf("close after leave = %v", code)
	}
	if err := n.wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// TestRunDrainTimeout: a client that ignores "move" keeps the node up
// until the drain timeout; then Run shuts down (the client's socket is
// closed with going away) and returns nil.
func TestRunDrainTimeout(t *testing.T) {
	// Registered first, so it runs after every other cleanup (node, sockets).
	t.Cleanup(func() { goleak.VerifyNone(t) })
	cfg := testConfig(t)
	cfg.DrainTimeout = 500 * time.Millisecond
	n := startNode(t, cfg)

	stubborn := n.dial("standup")
	stubborn.join("Stubborn")
	start := time.Now()
	n.cancel()
	stubborn.expect("move")
	if code := stubborn.closeStatus(); code != websocket.StatusGoingAway {
		t.Errorf("close = %v, want going away", code)
	}
	if err := n.wait(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if elapsed := time.Since(start); elapsed < cfg.DrainTimeout {
		t.Errorf("Run returned %v after cancel, before the drain timeout %v", elapsed, cfg.DrainTimeout)
	}
}

// TestRunLimits: --max-participants and --max-rooms reach the engine and
// are reported through the WebSocket with a clear message.
func TestRunLimits(t *testing.T) {
	// Registered first, so it runs after every other cleanup (node, sockets).
	t.Cleanup(func() { goleak.VerifyNone(t) })
	port := strconv.Itoa(freePort(t))
	cfg, err := ParseConfig([]string{
		"--http-addr", "127.0.0.1:" + port, "--udp-ip", "127.0.0.1", "--udp-port", "0", "--node-id", "limits",
		"--log-level", "error", "--max-participants", "2", "--max-rooms", "1", "--turn-port", "0",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	n := startNode(t, cfg)
	n.dial("first").join("A")
	n.dial("first").join("B")

	c := n.dial("first")
	c.send(map[string]any{"type": "join", "name": "C"})
	if e := c.expect("error"); e.Code != "room-full" || !strings.Contains(e.Message, `room "first" is full`) {
		t.Errorf("third participant: %+v, want room-full explaining the room is full", e)
	}
	d := n.dial("second")
	d.send(map[string]any{"type": "join", "name": "D"})
	if e := d.expect("error"); e.Code != "too-many-rooms" || !strings.Contains(e.Message, `cannot open room "second"`) {
		t.Errorf("second room: %+v, want too-many-rooms explaining the node's limit", e)
	}
}

// statusMembership is a single-node membership reporting a given Status.
type statusMembership struct {
	*cluster.Local
	status cluster.Status
	err    error
}

func (m statusMembership) Status(context.Context) (cluster.Status, error) { return m.status, m.err }

func TestPeersOf(t *testing.T) {
	engine, err := sfu.New(sfu.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	local := cluster.NewLocal(engine)
	tests := []struct {
		name   string
		status cluster.Status
		err    error
		want   []web.Peer
	}{
		{
			name: "cluster",
			status: cluster.Status{Nodes: []cluster.NodeInfo{
				{ID: "n1", URL: "http://10.0.0.1:8081", Alive: false, Self: true}, // Consul trouble: still us
				{ID: "n2", URL: "http://10.0.0.2:8082", Alive: true},
				{ID: "n3", URL: "http://10.0.0.3:8083", Alive: false}, // departed
				{ID: "n4", URL: "", Alive: true},
				{ID: "n5", URL: "http://10.0.0.5:8085", Alive: true, Draining: true}, // shutting down
			}},
			want: []web.Peer{{ID: "n1", URL: "http://10.0.0.1:8081"}, {ID: "n2", URL: "http://10.0.0.2:8082"}},
		},
		{
			name: "this node while draining",
			status: cluster.Status{Nodes: []cluster.NodeInfo{
				{ID: "n1", URL: "http://10.0.0.1:8081", Alive: true, Draining: true, Self: true},
				{ID: "n2", URL: "http://10.0.0.2:8082", Alive: true},
			}},
			want: []web.Peer{{ID: "n1", URL: "http://10.0.0.1:8081"}, {ID: "n2", URL: "http://10.0.0.2:8082"}},
		},
		{
			name:   "single node without URL",
			status: cluster.Status{Nodes: []cluster.NodeInfo{{ID: "n1", Alive: true, Self: true}}},
			want:   []web.Peer{},
		},
		{name: "status error", err: errors.New("closed"), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := peersOf(statusMembership{Local: local, status: tt.status, err: tt.err}, "n1")(context.Background())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("peers = %#v, want %#v", got, tt.want)
			}
		})
	}
	t.Run("local membership", func(t *testing.T) {
		// cluster.Local knows no URL for this node: web fills it in.
		if got := peersOf(local, "n1")(context.Background()); len(got) != 0 {
			t.Errorf("peers of Local = %+v, want none", got)
		}
	})
}

// drainRecorder is a single-node membership with a Drain hook.
type drainRecorder struct {
	*cluster.Local
	drained chan struct{}
}

func (d *drainRecorder) Drain(ctx context.Context) error {
	close(d.drained)
	return errors.New("consul unreachable") // logged; draining goes on
}

// TestDrainCallsMembershipHook: drain runs the membership's Drain hook
// before asking the web server to drain, even when the hook fails.
func TestDrainCallsMembershipHook(t *testing.T) {
	// Registered first, so it runs after every other cleanup (node, sockets).
	t.Cleanup(func() { goleak.VerifyNone(t) })
	engine, err := sfu.New(sfu.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	m := &drainRecorder{Local: cluster.NewLocal(engine), drained: make(chan struct{})}
	srv, err := web.New(web.Config{Logger: discardLogger()}, web.Deps{Engine: engine, Status: func(context.Context) (any, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !drain(m, srv, engine, time.Minute, make(chan struct{}), discardLogger()) {
		t.Fatal("drain reported an HTTP server failure")
	}
	select {
	case <-m.drained:
	default:
		t.Fatal("the membership's Drain hook was not called")
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
