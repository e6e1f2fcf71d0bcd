package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
	"github.com/hashicorp/consul/api"
)

func TestCheckNodeURL(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		url   string
		allow []netip.Prefix
		ok    bool
	}{
		{"http://10.0.0.5:8080", nil, true},
		{"https://node-a.example:8443", nil, true},
		{"http://10.0.0.5:8080/", nil, true},
		{"http://[fd00::5]:8080", lan, true},
		{"http://10.0.0.5:8080", lan, true},
		{"http://10.0.0.5:8080", []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}, false}, // v4-mapped prefixes never match an unmapped IPv4
		{"http://192.168.1.5:8080", lan, false},
		{"http://node-a.example:8080", lan, false}, // names are not resolved with an allowlist
		{"javascript:alert(1)", nil, false},
		{"ftp://10.0.0.5", nil, false},
		{"file:///etc/passwd", nil, false},
		{"//10.0.0.5:8080", nil, false},
		{"10.0.0.5:8080", nil, false},
		{"http://", nil, false},
		{"http://:8080", nil, false},
		{"http://user:pw@10.0.0.5:8080", nil, false},
		{"http://user@10.0.0.5:8080", nil, false},
		{"http://10.0.0.5:8080?x=1", nil, false},
		{"http://10.0.0.5:8080?", nil, false},
		{"http://10.0.0.5:8080#top", nil, false},
		{"http://10.0.0.5:8080#", nil, false},
		{"http://10.0.0.5:8080/evil", nil, false},
		{"http:10.0.0.5", nil, false},
		{"", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := CheckNodeURL(tc.url, tc.allow)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckNodeURL(%q, %v) = %v, want ok=%v", tc.url, tc.allow, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadNodeURL) {
				t.Errorf("error %v does not wrap ErrBadNodeURL", err)
			}
		})
	}
}

// putNodeRecord writes a node record for id with url straight into
// Consul, as a node (or anyone with write access to the KV) would.
func putNodeRecord(t *testing.T, a *consulAgent, id, url string) {
	t.Helper()
	v, err := json.Marshal(nodeRecord{ID: id, URL: url, Version: "test", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.KV().Put(&api.KVPair{Key: nodeKey(id), Value: v}, nil); err != nil {
		t.Fatalf("put node record %s: %v", id, err)
	}
}

// newOutsider returns Pipes acting as node id with the cluster's secret,
// outside any cluster.Node, which reaches node-a at url.
func newOutsider(t *testing.T, id, url string) (*pipe.Pipes, *sfu.Engine) {
	t.Helper()
	engine, err := sfu.New(sfu.Config{NodeID: id, UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	p, err := pipe.NewPipes(pipe.PipesConfig{
		NodeID: id, Secret: []byte(testSecret), Logger: testLogger(t),
		Resolve: func(n string) (string, bool) { return url, n == "node-a" },
	}, engine)
	if err != nil {
		t.Fatalf("NewPipes: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, engine
}

// TestDirectoryRefusals: node records with unusable URLs (or URLs outside
// the CIDR allowlist) are ignored, never resolved nor listed; the control
// channel answers only nodes of the directory; and a room's producers are
// served only to a node known to have the room open.
func TestDirectoryRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := consulForTest(t)
	n := startTestNode(ctx, t, a, "node-a", func(c *Config) {
		c.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	join(t, n.engine, "demo", "alice")

	good, goodEngine := newOutsider(t, "node-good", n.srv.URL)
	ghost, _ := newOutsider(t, "node-ghost", n.srv.URL)
	bad := map[string]string{
		"node-userinfo": "http://user:pw@127.0.0.2:9",
		"node-query":    "http://127.0.0.3:9/?next=http://evil.example",
		"node-outside":  "http://10.1.2.3:9",
		"node-name":     "http://evil.example:9",
		"node-script":   "javascript:alert(1)",
	}
	for id, u := range bad {
		putNodeRecord(t, a, id, u)
	}
	putNodeRecord(t, a, "node-good", "http://127.0.0.9:9")
	waitFor(ctx, t, "node-good in the directory", func() bool { _, ok := n.node.resolve("node-good"); return ok })
	for id := range bad {
		if u, ok := n.node.resolve(id); ok {
			t.Errorf("%s resolved to %q", id, u)
		}
	}
	st, err := n.node.Status(ctx)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, ni := range st.Nodes {
		if _, isBad := bad[ni.ID]; isBad {
			t.Errorf("Status lists %s (%s)", ni.ID, ni.URL)
		}
	}

	// The control channel: node-ghost has no record, node-good has one.
	var ce *pipe.ControlError
	if err := ghost.SendRoomEvent(ctx, "node-a", "demo", json.RawMessage(`{}`)); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("room event from a node outside the directory = %v, want a signed 403", err)
	}
	if err := good.SendRoomEvent(ctx, "node-a", "demo", json.RawMessage(`{"type":"nothing"}`)); err != nil {
		t.Errorf("room event from a directory member = %v", err)
	}

	// Serving: node-good is not known to have demo open, so node-a refuses
	// before it even looks for the producer; once node-good pushed an open
	// state of demo, the producer itself is looked up (and is unknown).
	join(t, goodEngine, "demo", "bob")
	prod := sfu.ProducerInfo{ID: "no-such-producer", Kind: sfu.KindVideo, Origin: "node-a",
		Codec: sfu.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	pipeIn := func() string {
		pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
		defer pcancel()
		err := good.PipeIn(pctx, "demo", prod)
		var rej *pipe.RejectedError
		if !errors.As(err, &rej) {
			t.Fatalf("PipeIn = %v, want a rejection", err)
		}
		return rej.Reason
	}
	if got := pipeIn(); got != pipe.RejectNotInRoom {
		t.Errorf("pipe from a node without the room: rejected %q, want %q", got, pipe.RejectNotInRoom)
	}
	sync := roomSyncMessage{Life: time.Now(), Rooms: []roomState{{Room: "demo", Seq: 1, Open: true}}}
	var answer roomSyncMessage
	if err := good.SyncRooms(ctx, "node-a", sync, &answer); err != nil {
		t.Fatalf("SyncRooms: %v", err)
	}
	if got := pipeIn(); got != pipe.RejectUnknownProducer {
		t.Errorf("pipe from a node with the room open: rejected %q, want %q", got, pipe.RejectUnknownProducer)
	}
}
