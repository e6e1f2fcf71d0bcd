package pipe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// ptSignedRequest builds a control request to base+path signed as node
// for recipient to with secret at time at.
func ptSignedRequest(t *testing.T, base, method, path, node, to string, secret, body []byte, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	signRequest(secret, req, node, to, body, at)
	return req
}

// ptDo sends req and returns the status and decoded error code.
func ptDo(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var e errorResponse
	if resp.StatusCode >= 300 {
		if ct := resp.Header.Get("Content-Type"); ct != contentTypeJSON {
			t.Errorf("error Content-Type = %q, want %q", ct, contentTypeJSON)
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Errorf("error body is not JSON: %v", err)
		}
	}
	return resp.StatusCode, e.Error
}

func TestAuthControlRequests(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, nil, "a")
	a := c.node("a")
	// b and c are in a's directory (their URLs are never dialled here).
	c.setURL("b", "http://127.0.0.1:1")
	c.setURL("c", "http://127.0.0.1:1")
	defer http.DefaultClient.CloseIdleConnections()
	var (
		mu     sync.Mutex
		events []RoomEvent
	)
	a.pipes.SetRoomEventHandler(func(ev RoomEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})

	negotiate := controlPrefix + "links/b/negotiate"
	validNegotiate, _ := json.Marshal(negotiateRequest{LinkID: "l1", Offer: ptOffer(t), Wanted: []PipeRef{{Room: "room", ProducerID: "p"}}})
	event := controlPrefix + "rooms/room/events"
	now := time.Now()
	sign := func(method, path, node string, secret, body []byte, at time.Time) *http.Request {
		return ptSignedRequest(t, a.srv.URL, method, path, node, "a", secret, body, at)
	}

	tests := []struct {
		name     string
		req      func() *http.Request
		status   int
		code     string
		replayed bool // send a second time: the first is accepted (202), the copy refused
	}{
		{
			name: "unsigned",
			req: func() *http.Request {
				r, _ := http.NewRequest(http.MethodPost, a.srv.URL+negotiate, bytes.NewReader(validNegotiate))
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "bad signature",
			req: func() *http.Request {
				r := sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now)
				r.Header.Set(HeaderSignature, strings.Repeat("ab", 32))
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "signature not hex",
			req: func() *http.Request {
				r := sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now)
				r.Header.Set(HeaderSignature, "zz")
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "wrong secret",
			req: func() *http.Request {
				return sign(http.MethodPost, negotiate, "b", []byte("another-secret-of-16+bytes"), validNegotiate, now)
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "old timestamp",
			req: func() *http.Request {
				return sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now.Add(-2*DefaultPipeMaxClockSkew))
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "future timestamp",
			req: func() *http.Request {
				return sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now.Add(2*DefaultPipeMaxClockSkew))
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "malformed timestamp",
			req: func() *http.Request {
				r := sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now)
				r.Header.Set(HeaderTimestamp, "yesterday")
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "body tampered",
			req: func() *http.Request {
				r := sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now)
				tampered := bytes.Replace(validNegotiate, []byte(`"room"`), []byte(`"moor"`), 1)
				r.Body = readCloser(tampered)
				r.ContentLength = int64(len(tampered))
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "signed for another path",
			req: func() *http.Request {
				r := sign(http.MethodPost, controlPrefix+"links/b/close", "b", ptSecret, validNegotiate, now)
				r.URL.Path = negotiate
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "sender impersonated in header",
			req: func() *http.Request {
				r := sign(http.MethodPost, negotiate, "b", ptSecret, validNegotiate, now)
				r.Header.Set(HeaderNode, "c")
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "signature in upper-case hex",
			req: func() *http.Request {
				r := sign(http.MethodPost, event, "b", ptSecret, []byte(`{"n":2}`), now)
				r.Header.Set(HeaderSignature, strings.ToUpper(r.Header.Get(HeaderSignature)))
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "addressed to another node",
			req: func() *http.Request {
				r := ptSignedRequest(t, a.srv.URL, http.MethodPost, event, "b", "c", ptSecret, []byte(`{"n":3}`), now)
				return r
			},
			status: http.StatusForbidden, code: "forbidden",
		},
		{
			name: "recipient header rewritten",
			req: func() *http.Request {
				r := ptSignedRequest(t, a.srv.URL, http.MethodPost, event, "b", "c", ptSecret, []byte(`{"n":4}`), now)
				r.Header.Set(HeaderTo, "a")
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "sender not in the directory",
			req: func() *http.Request {
				return sign(http.MethodPost, event, "mallory", ptSecret, []byte(`{"n":5}`), now)
			},
			status: http.StatusForbidden, code: "forbidden",
		},
		{
			name: "nonce rewritten",
			req: func() *http.Request {
				r := sign(http.MethodPost, event, "b", ptSecret, []byte(`{"n":6}`), now)
				r.Header.Set(HeaderNonce, strings.Repeat("0", 2*nonceBytes))
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name: "no nonce",
			req: func() *http.Request {
				r := sign(http.MethodPost, event, "b", ptSecret, []byte(`{"n":7}`), now)
				r.Header.Del(HeaderNonce)
				return r
			},
			status: http.StatusUnauthorized, code: "unauthorized",
		},
		{
			name:     "replayed request",
			req:      func() *http.Request { return sign(http.MethodPost, event, "b", ptSecret, []byte(`{"n":1}`), now) },
			status:   http.StatusUnauthorized,
			code:     "unauthorized",
			replayed: true,
		},
		{
			name: "malformed body",
			req: func() *http.Request {
				return sign(http.MethodPost, negotiate, "b", ptSecret, []byte(`{"linkId":`), now)
			},
			status: http.StatusBadRequest, code: "bad-request",
		},
		{
			name: "not an offer",
			req: func() *http.Request {
				body, _ := json.Marshal(negotiateRequest{LinkID: "l1", Wanted: []PipeRef{}})
				return sign(http.MethodPost, negotiate, "b", ptSecret, body, now)
			},
			status: http.StatusBadRequest, code: "bad-request",
		},
		{
			name:   "room event not JSON",
			req:    func() *http.Request { return sign(http.MethodPost, event, "b", ptSecret, []byte(`chat: hi`), now) },
			status: http.StatusBadRequest, code: "bad-request",
		},
		{
			name: "body too large",
			req: func() *http.Request {
				return sign(http.MethodPost, event, "b", ptSecret, bytes.Repeat([]byte(" "), maxControlBody+1), now)
			},
			status: http.StatusRequestEntityTooLarge, code: "too-large",
		},
		{
			name:   "another node's link",
			req:    func() *http.Request { return sign(http.MethodPost, negotiate, "c", ptSecret, validNegotiate, now) },
			status: http.StatusForbidden, code: "forbidden",
		},
		{
			name: "link to itself",
			req: func() *http.Request {
				return sign(http.MethodPost, controlPrefix+"links/a/negotiate", "a", ptSecret, validNegotiate, now)
			},
			status: http.StatusForbidden, code: "forbidden", // a node is never in its own directory of peers
		},
		{
			name:   "unknown route",
			req:    func() *http.Request { return sign(http.MethodGet, controlPrefix+"nothing", "b", ptSecret, nil, now) },
			status: http.StatusNotFound, code: "not-found",
		},
		{
			name:   "wrong method",
			req:    func() *http.Request { return sign(http.MethodGet, negotiate, "b", ptSecret, nil, now) },
			status: http.StatusNotFound, code: "not-found",
		},
	}
	wantEvents := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req()
			if tc.replayed {
				replay := req.Clone(context.Background())
				body, _ := req.GetBody()
				replay.Body = body
				if status, code := ptDo(t, req); status != http.StatusAccepted {
					t.Fatalf("first request: status %d (%s), want 202", status, code)
				}
				wantEvents++
				req = replay
			}
			status, code := ptDo(t, req)
			if status != tc.status || code != tc.code {
				t.Errorf("status %d code %q, want %d %q", status, code, tc.status, tc.code)
			}
			if st := a.pipes.Status(); len(st) != 0 {
				t.Errorf("refused request changed state: links %+v", st)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != wantEvents {
		t.Errorf("room event handler called %d times, want %d", len(events), wantEvents)
	}
}

// ptOffer returns a valid SDP offer with one recvonly video m-line.
func ptOffer(t *testing.T) webrtc.SessionDescription {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	defer func() { _ = pc.Close() }()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatalf("AddTransceiverFromKind: %v", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatalf("CreateOffer: %v", err)
	}
	return offer
}

// readCloser wraps b as a request body.
func readCloser(b []byte) *bodyReader { return &bodyReader{Reader: bytes.NewReader(b)} }

// bodyReader is a bytes.Reader with a no-op Close.
type bodyReader struct{ *bytes.Reader }

// Close implements io.Closer.
func (*bodyReader) Close() error { return nil }

func TestAuthResponseSignature(t *testing.T) {
	ptLeakCheck(t)
	now := time.Now()
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, body []byte)
		wantErr error
		notErr  error // the error must not also be this (a forged verdict)
	}{
		{
			name: "signed response",
			respond: func(w http.ResponseWriter, r *http.Request, body []byte) {
				signResponse(ptSecret, w.Header(), http.StatusAccepted, r.Header.Get(HeaderSignature), "peer", body, now)
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write(body)
			},
		},
		{
			name: "unsigned response",
			respond: func(w http.ResponseWriter, _ *http.Request, body []byte) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlBadResponse,
		},
		{
			name: "response signed for another request",
			respond: func(w http.ResponseWriter, _ *http.Request, body []byte) {
				signResponse(ptSecret, w.Header(), http.StatusAccepted, "other-request", "peer", body, now)
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlBadResponse,
		},
		{
			name: "response from another node",
			respond: func(w http.ResponseWriter, r *http.Request, body []byte) {
				signResponse(ptSecret, w.Header(), http.StatusAccepted, r.Header.Get(HeaderSignature), "mallory", body, now)
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlBadResponse,
		},
		{
			name: "signed error status",
			respond: func(w http.ResponseWriter, r *http.Request, _ []byte) {
				body := []byte(`{"error":"unavailable","message":"busy"}`)
				signResponse(ptSecret, w.Header(), http.StatusServiceUnavailable, r.Header.Get(HeaderSignature), "peer", body, now)
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlUnavailable,
		},
		{
			name: "unsigned error status",
			respond: func(w http.ResponseWriter, _ *http.Request, _ []byte) {
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write([]byte(`{"error":"conflict","message":"unknown link"}`))
			},
			wantErr: ErrControlBadResponse,
			notErr:  ErrControlConflict,
		},
		{
			name: "forged error status",
			respond: func(w http.ResponseWriter, r *http.Request, _ []byte) {
				body := []byte(`{"error":"conflict","message":"unknown link"}`)
				signResponse([]byte("not-the-cluster-secret-at-all"), w.Header(), http.StatusConflict, r.Header.Get(HeaderSignature), "peer", body, now)
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlBadResponse,
			notErr:  ErrControlConflict,
		},
		{
			name: "signed error with another status",
			respond: func(w http.ResponseWriter, r *http.Request, _ []byte) {
				body := []byte(`{"error":"conflict","message":"unknown link"}`)
				signResponse(ptSecret, w.Header(), http.StatusServiceUnavailable, r.Header.Get(HeaderSignature), "peer", body, now)
				w.WriteHeader(http.StatusConflict)
				_, _ = w.Write(body)
			},
			wantErr: ErrControlBadResponse,
			notErr:  ErrControlConflict,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.respond(w, r, []byte(`{"ok":true}`))
			}))
			defer srv.Close()
			hc := newOwnHTTPClient(5 * time.Second)
			defer hc.CloseIdleConnections()
			cl := &controlClient{
				nodeID: "me", secret: ptSecret, maxSkew: time.Minute, http: hc, now: time.Now,
				resolve: func(string) (string, bool) { return srv.URL, true },
			}
			err := cl.sendRoomEvent(context.Background(), "peer", "room", json.RawMessage(`{"x":1}`))
			if tc.wantErr == nil && err != nil {
				t.Fatalf("sendRoomEvent: %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("sendRoomEvent error = %v, want %v", err, tc.wantErr)
			}
			var ce *ControlError
			if tc.notErr != nil && (errors.Is(err, tc.notErr) || errors.As(err, &ce)) {
				t.Fatalf("sendRoomEvent error = %v: a forged or unsigned answer was taken as the peer's verdict", err)
			}
		})
	}
}

func TestAuthReplayCache(t *testing.T) {
	clock := time.Unix(1_000_000, 0)
	v := newVerifier(ptSecret, "a", func(n string) bool { return n == "b" }, time.Second, func() time.Time { return clock })
	v.maxEntries = 3
	req := func(n int) *http.Request {
		body := []byte(strconv.Itoa(n))
		r := httptest.NewRequest(http.MethodPost, controlPrefix+"rooms/r/events", bytes.NewReader(body))
		signRequest(ptSecret, r, "b", "a", body, clock)
		return r
	}
	check := func(n int, r *http.Request) error {
		h, err := v.verifyHeaders(r, maxControlBody)
		if err != nil {
			return err
		}
		return v.accept(h, []byte(strconv.Itoa(n)))
	}

	r1 := req(1)
	if err := check(1, r1); err != nil {
		t.Fatalf("first request: %v", err)
	}
	if err := check(1, r1); !errors.Is(err, ErrControlUnauthorized) {
		t.Fatalf("replay: %v, want ErrControlUnauthorized", err)
	}
	for _, variant := range []string{strings.ToUpper(r1.Header.Get(HeaderSignature)), " " + r1.Header.Get(HeaderSignature), r1.Header.Get(HeaderSignature) + "00"} {
		r := r1.Clone(context.Background())
		r.Header.Set(HeaderSignature, variant)
		if err := check(1, r); !errors.Is(err, ErrControlUnauthorized) {
			t.Fatalf("replay with signature %q: %v, want ErrControlUnauthorized", variant, err)
		}
	}
	if got := v.size(); got != 1 {
		t.Errorf("cache size after replays = %d, want 1", got)
	}
	for n := 2; n <= 3; n++ {
		if err := check(n, req(n)); err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
	}
	if err := check(4, req(4)); !errors.Is(err, ErrControlUnavailable) {
		t.Fatalf("request over the cache limit: %v, want ErrControlUnavailable", err)
	}
	// Once the skew window passed, entries expire, and so do the requests:
	// a replay is refused by its timestamp.
	clock = clock.Add(2 * time.Second)
	if err := check(5, req(5)); err != nil {
		t.Fatalf("request after expiry: %v", err)
	}
	if got := v.size(); got != 1 {
		t.Errorf("cache size after pruning = %d, want 1", got)
	}
	if err := check(1, r1); !errors.Is(err, ErrControlUnauthorized) {
		t.Errorf("late replay: %v, want ErrControlUnauthorized", err)
	}
}

func TestAuthRoomEvents(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")
	ctx := ptContext(t)

	if err := b.pipes.SendRoomEvent(ctx, "a", "room", json.RawMessage(`{"type":"chat"}`)); !errors.Is(err, ErrControlNotImplemented) {
		t.Fatalf("without handler: %v, want ErrControlNotImplemented", err)
	}
	got := make(chan RoomEvent, 1)
	a.pipes.SetRoomEventHandler(func(ev RoomEvent) { got <- ev })
	if err := b.pipes.SendRoomEvent(ctx, "a", "my room", json.RawMessage(`{"type":"chat","text":"hi"}`)); err != nil {
		t.Fatalf("SendRoomEvent: %v", err)
	}
	select {
	case ev := <-got:
		if ev.From != "b" || ev.Room != "my room" || string(ev.Body) != `{"type":"chat","text":"hi"}` {
			t.Errorf("event = %+v (body %s)", ev, ev.Body)
		}
	case <-ctx.Done():
		t.Fatal("room event not delivered")
	}
	if err := b.pipes.SendRoomEvent(ctx, "a", "room", json.RawMessage(`nope`)); !errors.Is(err, ErrControlBadRequest) {
		t.Errorf("invalid JSON: %v, want ErrControlBadRequest", err)
	}
	if err := b.pipes.SendRoomEvent(ctx, "nobody", "room", json.RawMessage(`{}`)); !errors.Is(err, ErrNodeUnresolved) {
		t.Errorf("unknown node: %v, want ErrNodeUnresolved", err)
	}
}

func TestPipesConfigValidate(t *testing.T) {
	valid := func() PipesConfig {
		c := PipesConfig{NodeID: "a", Secret: ptSecret, Resolve: func(string) (string, bool) { return "", false }}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name   string
		mutate func(*PipesConfig)
		ok     bool
	}{
		{"valid", func(*PipesConfig) {}, true},
		{"no node id", func(c *PipesConfig) { c.NodeID = "" }, false},
		{"short secret", func(c *PipesConfig) { c.Secret = []byte("short") }, false},
		{"no resolve", func(c *PipesConfig) { c.Resolve = nil }, false},
		{"negative timeout", func(c *PipesConfig) { c.RequestTimeout = -1 }, false},
		{"negative skew", func(c *PipesConfig) { c.MaxClockSkew = -1 }, false},
		{"negative idle", func(c *PipesConfig) { c.LinkIdleTimeout = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	var c PipesConfig
	c.SetDefaults()
	if c.RequestTimeout != DefaultPipeRequestTimeout || c.MaxClockSkew != DefaultPipeMaxClockSkew ||
		c.LinkIdleTimeout != DefaultLinkIdleTimeout || c.Logger == nil {
		t.Errorf("SetDefaults left %+v", c)
	}
}
