package web

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// peerList is a Deps.Peers the test can change at any time.
type peerList struct {
	mu    sync.Mutex
	peers []Peer
	calls int
}

func newPeerList(peers ...Peer) *peerList { return &peerList{peers: peers} }

func (l *peerList) set(peers ...Peer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peers = peers
}

func (l *peerList) get(ctx context.Context) []Peer {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if ctx == nil || ctx.Err() != nil {
		return nil
	}
	return append([]Peer(nil), l.peers...)
}

// TestDrain: after Drain every joined client gets "move" with the other
// nodes, stays connected until it leaves, new joins are refused with
// "draining" (socket closed with 1013), and /readyz reports draining.
func TestDrain(t *testing.T) {
	peers := newPeerList(
		Peer{ID: "n2", URL: "http://127.0.0.2:8082"},
		Peer{ID: "test-node", URL: "http://127.0.0.1:8081"},
		Peer{ID: "n3", URL: "https://n3.example"},
	)
	env := newEnv(t, envOptions{deps: Deps{Peers: peers.get}})
	alice, _ := env.join("drain", "Alice")
	bob, bj := env.joinVersion("drain", "Bob", protocolLatest)
	alice.expect(typeParticipantJoined)
	idle := env.mustDial("drain") // connected, not joined yet

	env.srv.Drain("node upgrade")
	env.srv.Drain("second call is a no-op")

	wantNodes := []Peer{{ID: "n2", URL: "http://127.0.0.2:8082"}, {ID: "n3", URL: "https://n3.example"}}
	for name, c := range map[string]*wsClient{"alice": alice, "bob": bob} {
		m := c.expectMove()
		if m.Reason != "draining" || m.Message != "node upgrade" || !reflect.DeepEqual(m.Nodes, wantNodes) {
			t.Errorf("%s: move = %+v, want reason draining, message %q, nodes %+v", name, m, "node upgrade", wantNodes)
		}
		// Exactly one move: the next reply is the pong.
		c.send(map[string]any{"v": c.v, "type": "ping"})
		if m, err := c.read(); err != nil || m.Type != typePong {
			t.Errorf("%s: after the move got %+v (%v), want pong", name, m, err)
		}
	}

	status, _, body := env.get("/readyz", nil)
	if status != http.StatusServiceUnavailable || body != "{\"status\":\"draining\"}\n" {
		t.Errorf("GET /readyz while draining = %d %q", status, body)
	}

	// Joins are refused, on a connection opened before or after Drain.
	newcomer := env.mustDial("drain")
	for name, c := range map[string]*wsClient{"idle": idle, "newcomer": newcomer} {
		c.send(map[string]any{"v": 1, "type": "join", "name": "Carol"})
		c.expectError(codeDraining)
		if code, reason := c.expectClose(); code != websocket.StatusTryAgainLater || reason != reasonDraining {
			t.Errorf("%s: close = %v %q, want %v %q", name, code, reason, websocket.StatusTryAgainLater, reasonDraining)
		}
	}
	if n := localParticipants(env.engine, "drain"); n != 2 {
		t.Errorf("%d participants in the room, want Alice and Bob only", n)
	}

	// The clients leave (as browsers do after a move): the room empties.
	bob.send(map[string]any{"v": bob.v, "type": "leave"})
	if code, _ := bob.expectClose(); code != websocket.StatusNormalClosure {
		t.Errorf("Bob's close after leave = %v", code)
	}
	if pl := alice.expect(typeParticipantLeft); pl.Participant.ID != bj.ParticipantID {
		t.Errorf("participant-left = %+v, want Bob", pl.Participant)
	}
	alice.send(map[string]any{"v": 1, "type": "leave"})
	alice.expectClose()
	waitFor(t, "the engine to have no rooms", func() bool { return len(env.engine.Rooms()) == 0 })
}

// TestDrainWithoutPeers: a single node has nowhere to send its clients;
// "move" still comes, with an empty (not null) node list.
func TestDrainWithoutPeers(t *testing.T) {
	env := newEnv(t, envOptions{})
	c, _ := env.join("alone", "Al")
	env.srv.Drain("")
	m := c.expectMove()
	if m.Reason != "draining" || m.Nodes == nil || len(m.Nodes) != 0 || m.raw["message"] != nil {
		t.Fatalf("move = %+v (raw %v), want reason draining, nodes [] and no message", m, m.raw)
	}
}

// TestDrainThenClose: Drain only queues: a client that does not read
// does not delay it, and Close still ends every session afterwards.
func TestDrainThenClose(t *testing.T) {
	env := newEnv(t, envOptions{})
	c, _ := env.join("stuck", "Al")
	gate := env.gates.conn(t, c.local)
	gate.hold() // the server cannot write to this client any more
	env.srv.Drain("bye")
	gate.release()
	c.expectMove()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, reason := c.expectClose(); code != websocket.StatusGoingAway || reason != reasonShutdown {
			t.Errorf("close = %v %q, want going away %q", code, reason, reasonShutdown)
		}
	}()
	if err := env.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	<-done
	if n := localParticipants(env.engine, "stuck"); n != 0 {
		t.Errorf("%d participants after Close", n)
	}
}

// moveMsg is a decoded "move".
type moveMsg struct {
	Reason  string
	Message string
	Nodes   []Peer
	raw     map[string]any
}

// expectMove reads until a "move" arrives, skipping room events.
func (c *wsClient) expectMove() moveMsg {
	c.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		_, b, err := c.conn.Read(ctx)
		cancel()
		if err != nil {
			c.t.Fatalf("waiting for move: %v", err)
		}
		var m struct {
			V       int    `json:"v"`
			Type    string `json:"type"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
			Nodes   []Peer `json:"nodes"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("undecodable message %s: %v", b, err)
		}
		switch m.Type {
		case typeMove:
			if m.V != c.v {
				c.t.Fatalf("move without v=%d: %s", c.v, b)
			}
			var raw map[string]any
			_ = json.Unmarshal(b, &raw)
			return moveMsg{Reason: m.Reason, Message: m.Message, Nodes: m.Nodes, raw: raw}
		case typeParticipantJoined, typeParticipantLeft, typeProducerAdded, typeProducerRemoved,
			typeSubscriberOffer, typeCandidate, typePong:
			continue
		}
		c.t.Fatalf("waiting for move, got %s", b)
	}
}
