package web

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// joinedNodes joins room as name and returns the "nodes" of "joined".
func (env *testEnv) joinedNodes(room, name string) []Peer {
	env.t.Helper()
	c := env.mustDial(room)
	c.send(map[string]any{"v": 1, "type": "join", "name": name})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		env.t.Fatalf("read joined: %v", err)
	}
	var m struct {
		Type  string `json:"type"`
		Nodes []Peer `json:"nodes"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Type != typeJoined {
		env.t.Fatalf("want joined, got %s (%v)", b, err)
	}
	if m.Nodes == nil {
		env.t.Fatalf("joined without nodes: %s", b)
	}
	return m.Nodes
}

func TestJoinedNodes(t *testing.T) {
	t.Run("single node", func(t *testing.T) {
		env := newEnv(t, envOptions{})
		got := env.joinedNodes("nodes", "Al")
		want := []Peer{{ID: "test-node", URL: env.http.URL}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("nodes = %+v, want %+v", got, want)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		peers := newPeerList(
			Peer{ID: "n1", URL: "http://127.0.0.1:8081"},
			Peer{ID: "test-node", URL: "http://10.0.0.2:8080"},
			Peer{ID: "", URL: "http://no-id.example"},
			Peer{ID: "no-url", URL: ""},
		)
		env := newEnv(t, envOptions{deps: Deps{Peers: peers.get}})
		got := env.joinedNodes("nodes", "Al")
		want := []Peer{{ID: "n1", URL: "http://127.0.0.1:8081"}, {ID: "test-node", URL: "http://10.0.0.2:8080"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("nodes = %+v, want %+v", got, want)
		}
	})
	t.Run("peers without this node", func(t *testing.T) {
		peers := newPeerList(Peer{ID: "n1", URL: "http://127.0.0.1:8081"})
		env := newEnv(t, envOptions{deps: Deps{Peers: peers.get}})
		got := env.joinedNodes("nodes", "Al")
		want := []Peer{{ID: "n1", URL: "http://127.0.0.1:8081"}, {ID: "test-node", URL: env.http.URL}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("nodes = %+v, want %+v (this node appended)", got, want)
		}
	})
}

// TestSignalingOriginPeers: pages served by any node of the cluster may
// open the WebSocket (failover), including nodes that were seen live but
// have gone since; everything else is refused with 403.
func TestSignalingOriginPeers(t *testing.T) {
	peers := newPeerList(
		Peer{ID: "test-node", URL: "http://127.0.0.1:8080"},
		Peer{ID: "n2", URL: "http://127.0.0.2:8082"},
		Peer{ID: "n3", URL: "https://N3.example"},
		Peer{ID: "n4", URL: "http://n4.example:8084"},
	)
	env := newEnv(t, envOptions{
		cfg:  Config{AllowedOrigins: []string{"friend.example", "https://*.corp.example"}},
		deps: Deps{Peers: peers.get},
	})
	host := strings.TrimPrefix(env.http.URL, "http://")

	dialOK := func(t *testing.T, origin string) bool {
		t.Helper()
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		c, resp, err := env.dial("origins", hdr)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("dial with Origin %q: %v (resp %v), want success or 403", origin, err, resp)
			}
			return false
		}
		c.send(map[string]any{"v": 1, "type": "join", "name": "Al"})
		c.expect(typeJoined)
		return true
	}

	tests := []struct {
		name   string
		origin string
		want   bool
	}{
		{"no origin", "", true},
		{"same host", "http://" + host, true},
		{"allowed pattern", "http://friend.example", true},
		{"allowed scheme pattern", "https://app.corp.example", true},
		{"scheme pattern, wrong scheme", "http://app.corp.example", false},
		{"peer node", "http://127.0.0.2:8082", true},
		{"peer node, case and default port", "https://n3.EXAMPLE:443", true},
		{"peer host, other port", "http://127.0.0.2:9999", false},
		{"peer host, other default port", "http://n3.example", false},
		{"foreign", "https://evil.example", false},
		{"lookalike of a peer", "http://n4.example.evil.example:8084", false},
		{"null origin", "null", false},
		{"garbage origin", "::::", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dialOK(t, tt.origin); got != tt.want {
				t.Errorf("Origin %q accepted = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}

	t.Run("node gone from the cluster stays allowed", func(t *testing.T) {
		// n4 dies: the page it served must still reach this node.
		peers.set(Peer{ID: "test-node", URL: "http://127.0.0.1:8080"})
		if !dialOK(t, "http://n4.example:8084") {
			t.Error("Origin of a departed node refused")
		}
		if dialOK(t, "http://n5.example:8085") {
			t.Error("Origin of a never seen node accepted")
		}
	})
	t.Run("node added later", func(t *testing.T) {
		if dialOK(t, "http://n6.example:8086") {
			t.Fatal("unknown node accepted")
		}
		peers.set(Peer{ID: "n6", URL: "http://n6.example:8086"})
		if !dialOK(t, "http://n6.example:8086") {
			t.Error("Origin of a node that joined the cluster refused")
		}
	})
}

// TestSignalingOriginMembers: a node that never listed another node among
// its Peers (it restarted after that node began draining) still accepts
// the WebSocket of a page served by it, because the cluster still knows
// the node (Deps.Members); nodes the cluster does not know stay refused.
func TestSignalingOriginMembers(t *testing.T) {
	peers := newPeerList(Peer{ID: "test-node", URL: "http://127.0.0.1:8080"})
	members := newPeerList(
		Peer{ID: "test-node", URL: "http://127.0.0.1:8080"},
		Peer{ID: "n3", URL: "http://127.0.0.3:8083"},
	)
	env := newEnv(t, envOptions{deps: Deps{Peers: peers.get, Members: members.get}})
	tests := []struct {
		name   string
		origin string
		want   bool
	}{
		{"draining member", "http://127.0.0.3:8083", true},
		{"member host, other port", "http://127.0.0.3:9999", false},
		{"stranger", "http://127.0.0.9:8089", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			hdr.Set("Origin", tt.origin)
			c, resp, err := env.dial("members", hdr)
			got := err == nil
			if err != nil && (resp == nil || resp.StatusCode != http.StatusForbidden) {
				t.Fatalf("dial with Origin %q: %v (resp %v), want success or 403", tt.origin, err, resp)
			}
			if got {
				c.send(map[string]any{"v": 1, "type": "join", "name": "Al"})
				c.expect(typeJoined)
			}
			if got != tt.want {
				t.Errorf("Origin %q accepted = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}
}

// TestRoomPageCSP: the room page may open WebSockets to its own host and
// every node of the cluster (for failover); the lobby only to its own host.
func TestRoomPageCSP(t *testing.T) {
	peers := newPeerList(
		Peer{ID: "n2", URL: "http://127.0.0.2:8082"},
		Peer{ID: "n3", URL: "https://n3.example"},
		Peer{ID: "bad", URL: "http://evil.example;script-src:*"},
		Peer{ID: "ftp", URL: "ftp://files.example"},
	)
	env := newEnv(t, envOptions{deps: Deps{Peers: peers.get}})
	host := strings.TrimPrefix(env.http.URL, "http://")

	_, hdr, _ := env.get("/rooms/csp?name=Al", nil)
	csp := hdr.Get("Content-Security-Policy")
	want := "connect-src 'self' ws://" + host + " wss://" + host + " ws://127.0.0.2:8082 wss://n3.example;"
	if !strings.Contains(csp, want) {
		t.Errorf("room page CSP = %q, want it to contain %q", csp, want)
	}
	for _, bad := range []string{"evil", "ftp", "files.example"} {
		if strings.Contains(csp, bad) {
			t.Errorf("room page CSP contains %q: %s", bad, csp)
		}
	}

	_, hdr, _ = env.get("/", nil)
	if csp := hdr.Get("Content-Security-Policy"); strings.Contains(csp, "8082") {
		t.Errorf("lobby CSP lists peers: %s", csp)
	}
}

func TestOriginKey(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"http://Example.com", "example.com:80", true},
		{"https://example.com", "example.com:443", true},
		{"wss://example.com", "example.com:443", true},
		{"http://example.com:8080/path?q", "example.com:8080", true},
		{"http://[::1]:8080", "[::1]:8080", true},
		{"ftp://example.com", "", false},
		{"example.com", "", false},
		{"", "", false},
		{"null", "", false},
	}
	for _, tt := range tests {
		got, ok := originKey(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("originKey(%q) = %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
