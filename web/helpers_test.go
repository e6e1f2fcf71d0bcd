package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// waitTimeout bounds every wait in these tests. It is deliberately huge:
// tests never pass or fail on timing, the bound only turns a hang into a
// readable failure on a loaded machine.
const waitTimeout = 60 * time.Second

// testLogger discards logs unless CONFAB_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CONFAB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newEngine starts a real engine on an ephemeral loopback UDP port; it is
// closed when the test ends.
func newEngine(t testing.TB, mutate func(*sfu.Config)) *sfu.Engine {
	t.Helper()
	cfg := sfu.Config{
		NodeID:          "test-node",
		UDPAddr:         "127.0.0.1:0",
		IncludeLoopback: true,
		Logger:          testLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := sfu.New(cfg)
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("engine close: %v", err)
		}
	})
	return e
}

// testEnv is a running web.Server behind an httptest server.
type testEnv struct {
	t      *testing.T
	engine *sfu.Engine
	srv    *Server
	http   *httptest.Server
	gates  *gateListener
}

type envOptions struct {
	cfg    Config
	deps   Deps
	engine func(*sfu.Config)
}

// newEnv starts engine, web server and HTTP server. Cleanup order: web
// server (ends sessions), HTTP server, engine.
func newEnv(t *testing.T, opts envOptions) *testEnv {
	t.Helper()
	env := &testEnv{t: t}
	if opts.deps.Engine == nil {
		opts.deps.Engine = newEngine(t, opts.engine)
	}
	env.engine = opts.deps.Engine
	if opts.deps.Status == nil {
		opts.deps.Status = func(context.Context) (any, error) {
			return map[string]any{"mode": "test", "nodes": []string{"test-node"}}, nil
		}
	}
	if opts.cfg.Logger == nil {
		opts.cfg.Logger = testLogger()
	}
	srv, err := New(opts.cfg, opts.deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.srv = srv
	env.http = httptest.NewUnstartedServer(srv.Handler())
	env.gates = &gateListener{Listener: env.http.Listener}
	env.http.Listener = env.gates
	env.http.Start()
	t.Cleanup(env.http.Close)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("server close: %v", err)
		}
	})
	return env
}

// get performs a GET and returns status, headers and body.
func (env *testEnv) get(path string, hdr http.Header) (int, http.Header, string) {
	env.t.Helper()
	req, err := http.NewRequest(http.MethodGet, env.http.URL+path, nil)
	if err != nil {
		env.t.Fatalf("request %s: %v", path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	client := env.http.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		env.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		env.t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func (env *testEnv) wsURL(room string) string {
	return "ws" + strings.TrimPrefix(env.http.URL, "http") + "/rooms/" + room + "/ws"
}

// testMsg is any server message, decoded loosely.
type testMsg struct {
	V             int                      `json:"v"`
	Type          string                   `json:"type"`
	Code          string                   `json:"code"`
	Message       string                   `json:"message"`
	ParticipantID string                   `json:"participantId"`
	NodeID        string                   `json:"nodeId"`
	Room          string                   `json:"room"`
	Participants  []wireParticipant        `json:"participants"`
	Producers     []wireProducer           `json:"producers"`
	Participant   *wireParticipant         `json:"participant"`
	Producer      *wireProducer            `json:"producer"`
	SDP           *wireSDP                 `json:"sdp"`
	Target        string                   `json:"target"`
	Candidate     *webrtc.ICECandidateInit `json:"candidate"`
	Chat          json.RawMessage          `json:"chat"` // joined: a list; chat: one message
	Identity      string                   `json:"identity"`
	Grants        *wireGrants              `json:"grants"`
	Locked        bool                     `json:"locked"`
	Moderation    *wireModeration          `json:"moderation"`
	ICEServers    json.RawMessage          `json:"iceServers"` // joined, version 4
}

// wsClient is a raw signaling client driven synchronously by the test.
type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	local net.Addr // client side address of the TCP connection
	v     int      // protocol version it joins with and expects (protocolV1 unless set)
}

// dial opens a signaling connection to room; hdr may set e.g. Origin.
func (env *testEnv) dial(room string, hdr http.Header) (*wsClient, *http.Response, error) {
	env.t.Helper()
	var (
		mu    sync.Mutex
		local net.Addr
	)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				local = c.LocalAddr()
				mu.Unlock()
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, env.wsURL(room), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
		HTTPHeader: hdr,
	})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(1 << 20)
	c := &wsClient{t: env.t, conn: conn, v: protocolV1}
	mu.Lock()
	c.local = local
	mu.Unlock()
	env.t.Cleanup(func() { _ = conn.CloseNow() })
	return c, resp, nil
}

// mustDial is dial that fails the test on error.
func (env *testEnv) mustDial(room string) *wsClient {
	env.t.Helper()
	c, _, err := env.dial(room, nil)
	if err != nil {
		env.t.Fatalf("dial %s: %v", room, err)
	}
	return c
}

// join dials room, joins as name with protocol version 1 and returns the
// client and its "joined".
func (env *testEnv) join(room, name string) (*wsClient, testMsg) {
	env.t.Helper()
	return env.joinVersion(room, name, protocolV1)
}

// joinVersion is join with protocol version v: the client then sends and
// expects v in every message.
func (env *testEnv) joinVersion(room, name string, v int) (*wsClient, testMsg) {
	env.t.Helper()
	c := env.mustDial(room)
	c.v = v
	c.send(map[string]any{"v": v, "type": "join", "name": name})
	return c, c.expect(typeJoined)
}

func (c *wsClient) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("marshal: %v", err)
	}
	c.sendRaw(b)
}

// read returns the next message, or the error that ended the connection.
func (c *wsClient) read() (testMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return testMsg{}, err
	}
	var m testMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return testMsg{}, errors.New("undecodable server message: " + string(b))
	}
	return m, nil
}

// expect reads messages until one of type typ arrives, skipping room
// events (participant/producer/offer/candidate/encodings), and fails on
// anything else (e.g. an unexpected error message) and on messages not of
// the client's protocol version.
func (c *wsClient) expect(typ string) testMsg {
	c.t.Helper()
	for {
		m, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", typ, err)
		}
		if m.V != c.v {
			c.t.Fatalf("message %q without v=%d: %+v", m.Type, c.v, m)
		}
		if m.Type == typ {
			return m
		}
		switch m.Type {
		case typeParticipantJoined, typeParticipantLeft, typeProducerAdded, typeProducerRemoved,
			typeSubscriberOffer, typeCandidate, typePong, typeEncodings, typeParticipantUpdated, typeChat, typeModerated:
			continue
		}
		c.t.Fatalf("waiting for %q, got %+v", typ, m)
	}
}

// expectError expects an "error" message with the given code.
func (c *wsClient) expectError(code string) testMsg {
	c.t.Helper()
	m := c.expect(typeError)
	if m.Code != code {
		c.t.Fatalf("error code = %q (%s), want %q", m.Code, m.Message, code)
	}
	if m.Message == "" {
		c.t.Errorf("error %q has no message", code)
	}
	return m
}

// expectClose reads until the connection ends and returns its close status.
func (c *wsClient) expectClose() (websocket.StatusCode, string) {
	c.t.Helper()
	for {
		_, err := c.read()
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

// ping round-trips a ping: proof the session is alive and responsive.
func (c *wsClient) ping() {
	c.t.Helper()
	c.send(map[string]any{"v": c.v, "type": "ping"})
	c.expect(typePong)
}

// waitFor polls cond until it holds, failing after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// localParticipants returns the number of local participants in room.
func localParticipants(e *sfu.Engine, room string) int {
	r := e.Room(room)
	if r == nil {
		return 0
	}
	return len(r.LocalParticipants())
}

// gateListener wraps accepted connections in gateConns so a test can stall
// the server's writes to one client, exactly like a client that stopped
// reading once the TCP buffers are full.
type gateListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*gateConn
}

func (l *gateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	gc := &gateConn{Conn: c, closed: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, gc)
	l.mu.Unlock()
	return gc, nil
}

// conn returns the server side of the connection whose client end is at
// clientAddr.
func (l *gateListener) conn(t *testing.T, clientAddr net.Addr) *gateConn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.RemoteAddr().String() == clientAddr.String() {
			return c
		}
	}
	t.Fatalf("no server connection from %v", clientAddr)
	return nil
}

// gateConn is a net.Conn whose writes can be held back.
type gateConn struct {
	net.Conn
	mu        sync.Mutex
	gate      chan struct{} // non-nil while writes are held; closed to release
	closed    chan struct{}
	closeOnce sync.Once
}

// hold makes subsequent writes block until release (or Close).
func (c *gateConn) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate == nil {
		c.gate = make(chan struct{})
	}
}

// release lets held writes proceed.
func (c *gateConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gate != nil {
		close(c.gate)
		c.gate = nil
	}
}

func (c *gateConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(b)
}

func (c *gateConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
