package web

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// dialFrom opens a signaling WebSocket to room from the loopback address
// src (any 127.0.0.0/8 address is local on Linux). On a refusal it returns
// the response (status and body read) and the error.
func dialFrom(ctx context.Context, env *testEnv, room, src string) (*websocket.Conn, int, string, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	conn, resp, err := websocket.Dial(ctx, env.wsURL(room), &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
	})
	if err != nil {
		status, body := 0, ""
		if resp != nil {
			status = resp.StatusCode
			if resp.Body != nil {
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
			}
		}
		return nil, status, body, err
	}
	return conn, http.StatusSwitchingProtocols, "", nil
}

// TestAdmissionCaps opens signaling connections from several loopback
// addresses against small caps: the per-address cap refuses with 429, the
// node-wide cap with 503, both before the upgrade and with a body saying
// why; a closed connection frees its slot.
func TestAdmissionCaps(t *testing.T) {
	type dial struct {
		src    string
		status int
		body   string // substring of the refusal body
	}
	tests := []struct {
		name          string
		maxConns      int
		maxConnsPerIP int
		dials         []dial
	}{
		{"per-address cap", 100, 2, []dial{
			{"127.0.0.1", 101, ""}, {"127.0.0.1", 101, ""},
			{"127.0.0.1", 429, "too many connections from your address"},
			{"127.0.0.2", 101, ""}, {"127.0.0.2", 101, ""},
			{"127.0.0.2", 429, "too many connections from your address"},
		}},
		{"node cap", 3, 50, []dial{
			{"127.0.0.1", 101, ""}, {"127.0.0.2", 101, ""}, {"127.0.0.3", 101, ""},
			{"127.0.0.4", 503, "too many connections to this node"},
			{"127.0.0.1", 503, "too many connections to this node"},
		}},
		{"node cap before address cap", 2, 1, []dial{
			{"127.0.0.1", 101, ""},
			{"127.0.0.1", 429, "from your address"},
			{"127.0.0.2", 101, ""},
			{"127.0.0.2", 503, "to this node"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, envOptions{cfg: Config{MaxConns: tt.maxConns, MaxConnsPerIP: tt.maxConnsPerIP}})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			var open []*websocket.Conn
			defer func() {
				for _, c := range open {
					_ = c.CloseNow()
				}
			}()
			for i, d := range tt.dials {
				conn, status, body, err := dialFrom(ctx, env, "caps", d.src)
				if status != d.status {
					t.Fatalf("dial %d from %s: status %d (err %v), want %d", i, d.src, status, err, d.status)
				}
				if conn != nil {
					open = append(open, conn)
					continue
				}
				if !strings.Contains(body, d.body) {
					t.Errorf("dial %d from %s: body %q, want it to contain %q", i, d.src, body, d.body)
				}
			}
			var want AdmissionStats
			for _, d := range tt.dials {
				switch d.status {
				case http.StatusServiceUnavailable:
					want.RefusedNode++
				case http.StatusTooManyRequests:
					want.RefusedAddr++
				default:
					want.Open++
				}
			}
			if got := env.srv.AdmissionStats(); got != want {
				t.Errorf("AdmissionStats = %+v, want %+v", got, want)
			}
			// Closing one frees its slot: the last refused dial now succeeds.
			_ = open[0].Close(websocket.StatusNormalClosure, "")
			open = open[1:]
			waitFor(t, "the slot to be released", func() bool { return env.srv.admission.open() == len(open) })
			src := tt.dials[0].src
			conn, status, _, err := dialFrom(ctx, env, "caps", src)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("dial from %s after a close: status %d (err %v), want 101", src, status, err)
			}
			open = append(open, conn)
		})
	}
}

// TestAdmissionRefusalHeaders: a refusal is a plain-text response with
// Retry-After, sent without upgrading.
func TestAdmissionRefusalHeaders(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{MaxConns: 1}})
	first := env.mustDial("hdr")
	defer first.conn.CloseNow()
	req, err := http.NewRequest(http.MethodGet, env.http.URL+"/rooms/hdr/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
	} {
		req.Header.Set(k, v)
	}
	resp, err := env.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "too many connections") {
		t.Errorf("refusal: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}

// TestJoinDeadline: a connection that does not join within JoinTimeout is
// closed with 1008 "join timeout" and frees its slot; one that sends
// garbage instead of a join is closed too; one that joined stays open
// past the deadline.
func TestJoinDeadline(t *testing.T) {
	const deadline = 300 * time.Millisecond
	env := newEnv(t, envOptions{cfg: Config{JoinTimeout: deadline}})
	tests := []struct {
		name    string
		send    []byte // sent right after the upgrade (nil: nothing)
		join    bool
		closeIt bool // expect the join-timeout close
	}{
		{"silent", nil, false, true},
		{"garbage instead of join", []byte(`{"v":1,"type":"nonsense"}`), false, true},
		{"invalid join", []byte(`{"v":1,"type":"join","name":""}`), false, true},
		{"joined", nil, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := env.mustDial("deadline")
			if tt.send != nil {
				c.sendRaw(tt.send)
			}
			if tt.join {
				c.send(map[string]any{"v": 1, "type": "join", "name": "Joiner"})
				c.expect(typeJoined)
			}
			if tt.closeIt {
				code, reason := c.expectClose()
				if code != websocket.StatusPolicyViolation || reason != reasonJoinTimeout {
					t.Fatalf("closed with %d %q, want %d %q", code, reason, websocket.StatusPolicyViolation, reasonJoinTimeout)
				}
				return
			}
			time.Sleep(3 * deadline)
			c.ping() // still open and answering
			_ = c.conn.Close(websocket.StatusNormalClosure, "")
		})
	}
	waitFor(t, "every slot to be released", func() bool { return env.srv.admission.open() == 0 })
	if got, want := env.srv.AdmissionStats(), (AdmissionStats{JoinTimeouts: 3}); got != want {
		t.Errorf("AdmissionStats = %+v, want %+v", got, want)
	}
}

// TestAdmissionConfig: defaults and validation of the admission fields.
func TestAdmissionConfig(t *testing.T) {
	var c Config
	c.SetDefaults()
	if c.MaxConns != DefaultMaxConns || c.MaxConnsPerIP != DefaultMaxConnsPerIP || c.JoinTimeout != DefaultJoinTimeout {
		t.Errorf("defaults: %d %d %v", c.MaxConns, c.MaxConnsPerIP, c.JoinTimeout)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"defaults", func(*Config) {}, true},
		{"negative max conns", func(c *Config) { c.MaxConns = -1 }, false},
		{"negative per ip", func(c *Config) { c.MaxConnsPerIP = -5 }, false},
		{"negative join timeout", func(c *Config) { c.JoinTimeout = -time.Second }, false},
		{"one each", func(c *Config) { c.MaxConns, c.MaxConnsPerIP = 1, 1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{}
			c.SetDefaults()
			tt.mutate(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// openFDs counts the process's open file descriptors (Linux), -1 if
// unknown.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// rawConn is a minimal WebSocket client on a bare TCP connection: it
// upgrades and then only waits for the server's close frame (cheap enough
// on the client side to open a thousand at once).
type rawConn struct {
	conn   net.Conn
	br     *bufio.Reader
	closed time.Time // when the close frame arrived (set by awaitClose)
}

// dialRaw upgrades a TCP connection from src to a signaling WebSocket of
// room; the error says what the server answered instead of 101.
func dialRaw(ctx context.Context, env *testEnv, room, src string) (*rawConn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	host := strings.TrimPrefix(env.http.URL, "http://")
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	req := "GET /rooms/" + room + "/ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	return &rawConn{conn: conn, br: br}, nil
}

// awaitClose reads the server's first frame, which must be a close frame,
// and returns its code and reason; it then closes the TCP connection.
func (c *rawConn) awaitClose(deadline time.Time) (websocket.StatusCode, string, error) {
	defer c.conn.Close()
	_ = c.conn.SetReadDeadline(deadline)
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return 0, "", err
	}
	c.closed = time.Now()
	if hdr[0] != 0x88 || hdr[1]&0x80 != 0 || hdr[1] < 2 || hdr[1] > 125 {
		return 0, "", fmt.Errorf("frame header %x, want an unmasked close frame", hdr)
	}
	payload := make([]byte, hdr[1])
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, "", err
	}
	return websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:]), nil
}

// manualTimers is a Config.joinTimer whose timers fire only when the test
// calls fire: the join deadline then passes at a moment the test chooses,
// however long opening the connections took on a loaded machine.
type manualTimers struct {
	mu     sync.Mutex
	timers []*manualTimer
}

type manualTimer struct {
	f              func()
	fired, stopped bool
}

func (m *manualTimers) start(_ time.Duration, f func()) func() bool {
	t := &manualTimer{f: f}
	m.mu.Lock()
	m.timers = append(m.timers, t)
	m.mu.Unlock()
	return func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		if t.fired {
			return false
		}
		t.stopped = true
		return true
	}
}

// fire runs every pending timer (the deadline has passed for all) and
// returns how many it ran.
func (m *manualTimers) fire() int {
	m.mu.Lock()
	var due []*manualTimer
	for _, t := range m.timers {
		if !t.fired && !t.stopped {
			t.fired = true
			due = append(due, t)
		}
	}
	m.mu.Unlock()
	for _, t := range due {
		t.f()
	}
	return len(due)
}

// TestIdleFlood opens floodConns idle signaling WebSockets from 20
// loopback addresses (50 each, the default per-address cap, so the caps
// are not what stops them) and checks that real participants still join,
// publish and receive media while they are open; then the join deadline
// passes (the test fires it): every idle connection is closed with 1008
// "join timeout" and the real participants keep their media. It prints the
// cost per idle connection (both ends are in this process) as a
// measurement.
func TestIdleFlood(t *testing.T) {
	const (
		floodConns = 1000
		addrs      = 20
	)
	timers := &manualTimers{}
	env := newEnv(t, envOptions{cfg: Config{joinTimer: timers.start}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	fdsBefore, gorBefore := openFDs(), runtime.NumGoroutine()

	start := time.Now()
	conns := make([]*rawConn, floodConns)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		dialErr error
	)
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < floodConns; i += workers {
				src := fmt.Sprintf("127.0.1.%d", 1+i%addrs)
				c, err := dialRaw(ctx, env, "flood", src)
				if err != nil {
					errMu.Lock()
					dialErr = errors.Join(dialErr, fmt.Errorf("dial %d from %s: %w", i, src, err))
					errMu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.conn.Close()
			}
		}
	}()
	if dialErr != nil {
		t.Fatalf("opening the idle connections: %v", dialErr)
	}
	opened := time.Since(start)

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	fdsAfter, gorAfter := openFDs(), runtime.NumGoroutine()
	t.Logf("opened %d idle WebSockets in %v; per idle connection (client and server ends together, "+
		"the client a bare TCP socket): %.2f fds, %.2f goroutines, %.1f KiB heap",
		floodConns, opened.Round(time.Millisecond),
		float64(fdsAfter-fdsBefore)/floodConns, float64(gorAfter-gorBefore)/floodConns,
		float64(int64(after.HeapInuse)-int64(before.HeapInuse))/floodConns/1024)

	// Real participants join and exchange media while the flood is open.
	negotiateStart := time.Now()
	alice, _ := newRTCClient(t, env, "real", "Alice")
	bob, _ := newRTCClient(t, env, "real", "Bob")
	alice.publishVP8()
	bob.expect(typeProducerAdded)
	waitFor(t, "Bob to receive Alice's RTP", func() bool { return bob.received.Load() >= 10 })
	t.Logf("real participants joined and received media in %v with the flood open",
		time.Since(negotiateStart).Round(time.Millisecond))
	if open := env.srv.admission.open(); open != floodConns+2 {
		t.Fatalf("%d connections open while the real participants negotiated, want %d", open, floodConns+2)
	}

	// The join deadline passes: every idle connection is closed with 1008
	// "join timeout", the real participants stay.
	type result struct {
		code   websocket.StatusCode
		reason string
		err    error
	}
	results := make([]result, floodConns)
	var closeWG sync.WaitGroup
	for i, c := range conns {
		closeWG.Add(1)
		go func() {
			defer closeWG.Done()
			code, reason, err := c.awaitClose(time.Now().Add(waitTimeout))
			results[i] = result{code, reason, err}
		}()
	}
	closeStart := time.Now()
	fired := timers.fire()
	closeWG.Wait()
	n := 0
	for i, r := range results {
		if r.err != nil || r.code != websocket.StatusPolicyViolation || r.reason != reasonJoinTimeout {
			if n++; n <= 3 {
				t.Errorf("idle connection %d: close %d %q (err %v), want 1008 %q", i, r.code, r.reason, r.err, reasonJoinTimeout)
			}
		}
	}
	waitFor(t, "the idle slots to be released", func() bool { return env.srv.admission.open() == 2 })
	t.Logf("join deadline fired for %d connections; idle ones closed and released in %v",
		fired, time.Since(closeStart).Round(time.Millisecond))
	received := bob.received.Load()
	waitFor(t, "Bob to keep receiving Alice's RTP", func() bool { return bob.received.Load() >= received+10 })
}

// TestClientAddr: which address a connection is counted under.
func TestClientAddr(t *testing.T) {
	tests := []struct {
		remote string
		want   string // "" = not parsable
	}{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5000", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2::1]:443", "2001:db8:1:2::"},
		{"[fe80::1%eth0]:443", "fe80::"},
		{"not an address", ""},
	}
	for _, tt := range tests {
		r := &http.Request{RemoteAddr: tt.remote}
		got, ok := clientAddr(r)
		if (tt.want == "") == ok || (ok && got.String() != tt.want) {
			t.Errorf("clientAddr(%q) = %v, %v; want %q", tt.remote, got, ok, tt.want)
		}
	}
}
