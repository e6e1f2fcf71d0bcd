package pipe

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ptRecorder is an http.RoundTripper that keeps a copy of the first
// request whose path ends in suffix (headers and body), then sends it on.
type ptRecorder struct {
	next   http.RoundTripper
	suffix string

	mu     sync.Mutex
	header http.Header
	body   []byte
	path   string
}

// RoundTrip implements http.RoundTripper.
func (r *ptRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, r.suffix) {
		r.mu.Lock()
		if r.header == nil && req.Body != nil {
			body, err := io.ReadAll(req.Body)
			if err != nil {
				r.mu.Unlock()
				return nil, err
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			r.header, r.body, r.path = req.Header.Clone(), body, req.URL.Path
		}
		r.mu.Unlock()
	}
	return r.next.RoundTrip(req)
}

// replay sends the recorded request to base with its signature header
// rewritten by sig, and returns the status and error code.
func (r *ptRecorder) replay(t *testing.T, base string, sig func(string) string) (int, string) {
	t.Helper()
	r.mu.Lock()
	header, body, path := r.header.Clone(), r.body, r.path
	r.mu.Unlock()
	if header == nil {
		t.Fatal("no request recorded")
	}
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	req.Header = header
	req.Header.Set(HeaderSignature, sig(header.Get(HeaderSignature)))
	return ptDo(t, req)
}

// TestAuthReplayToThirdNode: a's first offer to b (a new link id at seq 1,
// which makes a receiver drop its current link with a) is captured and
// replayed within the skew window to c, which has a real link with a, and
// to b itself with the signature in upper case. Both are refused and
// neither link changes: same link id, still connected, no failure seen.
func TestAuthReplayToThirdNode(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	rec := &ptRecorder{next: http.DefaultTransport.(*http.Transport).Clone(), suffix: "/negotiate"}
	hc := &http.Client{Transport: rec, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer hc.CloseIdleConnections()
	defer http.DefaultClient.CloseIdleConnections()
	c := newPTCluster(t, func(cfg *PipesConfig) {
		if cfg.NodeID == "a" {
			cfg.HTTPClient = hc
		}
	}, "a", "b", "c")
	a, b, cc := c.node("a"), c.node("b"), c.node("c")
	_, prodsB := ptPublishAV(ctx, t, b, "room", "user-b")
	_, prodsC := ptPublishAV(ctx, t, cc, "room", "user-c")
	ptJoin(t, a, "room", "viewer-a")
	ptPipeAll(ctx, t, a, "room", prodsB)
	ptWaitSettled(ctx, t, a, "b", 2)
	ptPipeAll(ctx, t, a, "room", prodsC)
	ptWaitSettled(ctx, t, a, "c", 2)
	linkB := ptExpectLink(t, b, "a", RoleAnswerer, nil, prodsB)
	linkC := ptExpectLink(t, cc, "a", RoleAnswerer, nil, prodsC)

	same := func(s string) string { return s }
	tests := []struct {
		name   string
		to     *ptNode
		sig    func(string) string
		status int
	}{
		{"replayed to a third node", cc, same, http.StatusForbidden},
		{"replayed to the recipient in upper case", b, strings.ToUpper, http.StatusUnauthorized},
		{"replayed to the recipient", b, same, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if status, code := rec.replay(t, tc.to.srv.URL, tc.sig); status != tc.status {
				t.Errorf("replay = %d %q, want %d", status, code, tc.status)
			}
		})
	}
	// Give a wrongly accepted offer time to take effect before checking.
	time.Sleep(200 * time.Millisecond)
	if got := ptExpectLink(t, b, "a", RoleAnswerer, nil, prodsB); got != linkB {
		t.Errorf("b's link with a changed from %s to %s", linkB, got)
	}
	if got := ptExpectLink(t, cc, "a", RoleAnswerer, nil, prodsC); got != linkC {
		t.Errorf("c's link with a changed from %s to %s", linkC, got)
	}
	for _, n := range []*ptNode{a, b, cc} {
		n.mu.Lock()
		failed := n.failed
		n.mu.Unlock()
		if len(failed) != 0 {
			t.Errorf("%s saw link failures with %v", n.id, failed)
		}
	}
}

// ptCountingBody is a request body that counts the bytes read from it.
type ptCountingBody struct {
	mu   sync.Mutex
	n    int64
	left int64
}

// Read implements io.Reader, producing left spaces.
func (b *ptCountingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), b.left)
	for i := range k {
		p[i] = ' '
	}
	b.left -= k
	b.n += k
	return int(k), nil
}

// Close implements io.Closer.
func (*ptCountingBody) Close() error { return nil }

// read returns the bytes read so far.
func (b *ptCountingBody) read() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// TestAuthHeadersFirst: a request is judged on its headers (recipient,
// sender in the directory, timestamp, declared length, MAC) before its
// body is read: a large body from an unknown node, an oversized or
// undeclared length and a bad MAC are refused with nothing read.
func TestAuthHeadersFirst(t *testing.T) {
	ptLeakCheck(t)
	c := newPTCluster(t, nil, "a")
	a := c.node("a")
	c.setURL("b", "http://127.0.0.1:1")
	const big = 64 << 20
	path := controlPrefix + "rooms/room/events"
	tests := []struct {
		name   string
		from   string
		length int64 // declared Content-Length (-1: none, chunked)
		mutate func(r *http.Request)
		status int
	}{
		{"large body from an unknown node", "mallory", big, nil, http.StatusForbidden},
		{"large body declared by a known node", "b", big, nil, http.StatusRequestEntityTooLarge},
		{"undeclared length", "b", -1, nil, http.StatusRequestEntityTooLarge},
		{"bad signature", "b", 1 << 10, func(r *http.Request) { r.Header.Set(HeaderSignature, strings.Repeat("ab", 32)) }, http.StatusUnauthorized},
		{"stale timestamp", "b", 1 << 10, func(r *http.Request) {
			r.Header.Set(HeaderTimestamp, "1000")
		}, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := &ptCountingBody{left: max(tc.length, big)}
			r := httptest.NewRequest(http.MethodPost, path, nil)
			// Signed over an empty body: the MAC is only checked after the
			// header checks, and the body must never be read either way.
			signRequest(ptSecret, r, tc.from, "a", nil, time.Now())
			r.Body = body
			r.ContentLength = tc.length
			if tc.mutate != nil {
				tc.mutate(r)
			}
			w := httptest.NewRecorder()
			a.pipes.Handler().ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if n := body.read(); n != 0 {
				t.Errorf("handler read %d body bytes before refusing", n)
			}
			if w.Header().Get(HeaderSignature) == "" {
				t.Errorf("refusal is not signed")
			}
		})
	}
}

// TestPipeRefusedToNodeWithoutRoom: a node serves a producer only to a
// peer its MayServe says has the room open; others get "not-in-room" and
// no pipe.
func TestPipeRefusedToNodeWithoutRoom(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	var (
		mu     sync.Mutex
		asked  []string
		member = map[string]bool{"open": true}
	)
	c := newPTCluster(t, func(cfg *PipesConfig) {
		if cfg.NodeID == "b" {
			cfg.MayServe = func(node, room string) bool {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, node+"/"+room)
				return node == "a" && member[room]
			}
		}
	}, "a", "b")
	a, b := c.node("a"), c.node("b")
	tests := []struct {
		room    string
		refused bool
	}{
		{"closed", true},
		{"open", false},
	}
	for _, tc := range tests {
		t.Run(tc.room, func(t *testing.T) {
			_, prods := ptPublishAV(ctx, t, b, tc.room, "user-b-"+tc.room)
			ptJoin(t, a, tc.room, "viewer-a-"+tc.room)
			err := a.pipes.PipeIn(ctx, tc.room, prods[0])
			var rej *RejectedError
			switch {
			case tc.refused && (!errors.As(err, &rej) || rej.Reason != RejectNotInRoom):
				t.Fatalf("PipeIn = %v, want a %s rejection", err, RejectNotInRoom)
			case !tc.refused && err != nil:
				t.Fatalf("PipeIn = %v, want nil", err)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(asked, " "), "a/closed") {
		t.Errorf("MayServe asked %v, want a/closed among them", asked)
	}
}
