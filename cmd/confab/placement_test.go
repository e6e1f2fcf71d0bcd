package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/confab/confab/internal/consultest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// This file tests placement (docs/placement.md) on three real confab
// processes sharing a real Consul agent ($CONFAB_CONSUL_BIN or
// <repo>/bin/consul; the test fails, never skips, without it). The
// participants are signaling clients without media: they join and follow
// a "move" sent instead of "joined", as room.js does.

// placeLimit is every node's --max-participants-per-node.
const placeLimit = 18

// peer is a node as "move" names it.
type peer struct {
	ID  string `json:"id"`
	URL string `json:"url"`
}

// serverMsg is a server message, decoded loosely.
type serverMsg struct {
	Type   string `json:"type"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	NodeID string `json:"nodeId"`
	Nodes  []peer `json:"nodes"`
}

// member is a joined participant.
type member struct {
	conn  *websocket.Conn
	node  string   // where it joined
	room  string   // its room
	moves []string // reasons of the placement moves it followed
}

// joinVia joins room through the node at base, following placement moves
// like room.js (at most 3, then it insists with "placed").
func joinVia(t *testing.T, base, room, name string, avoid []string) *member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	m := &member{room: room}
	placed := ""
	for hop := 0; ; hop++ {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/rooms/"+room+"/ws", nil)
		if err != nil {
			t.Fatalf("%s: dial %s: %v", name, base, err)
		}
		join := map[string]any{"v": 1, "type": "join", "name": name}
		if placed != "" {
			join["placed"] = placed
		}
		if len(avoid) > 0 {
			join["avoid"] = avoid
		}
		b, _ := json.Marshal(join)
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("%s: write join: %v", name, err)
		}
		var msg serverMsg
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				t.Fatalf("%s: waiting for joined on %s: %v", name, base, err)
			}
			if err := json.Unmarshal(b, &msg); err != nil {
				t.Fatalf("%s: bad message %s", name, b)
			}
			if msg.Type == "joined" || msg.Type == "move" || msg.Type == "error" {
				break
			}
		}
		switch {
		case msg.Type == "joined":
			m.conn, m.node = conn, msg.NodeID
			t.Cleanup(func() { _ = conn.CloseNow() })
			return m
		case msg.Type == "error":
			t.Fatalf("%s: join %s on %s refused: %+v", name, room, base, msg)
		case len(msg.Nodes) != 1 || hop >= 3:
			t.Fatalf("%s: unexpected move %+v after %d hops", name, msg, hop)
		}
		_ = conn.Close(websocket.StatusNormalClosure, "moved")
		m.moves = append(m.moves, msg.Reason)
		base, placed = msg.Nodes[0].URL, msg.Nodes[0].ID
	}
}

// clusterView is the part of /api/cluster the test reads.
type clusterView struct {
	Nodes []struct {
		ID    string `json:"id"`
		Alive bool   `json:"alive"`
		Load  int    `json:"load"`
	} `json:"nodes"`
}

// waitCluster waits until p lists want live nodes.
func waitCluster(t *testing.T, p *proc, want int) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		_, body := p.get("/api/cluster")
		var v clusterView
		alive := 0
		if json.Unmarshal([]byte(body), &v) == nil {
			for _, n := range v.Nodes {
				if n.Alive {
					alive++
				}
			}
		}
		if alive == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node lists %d live nodes, want %d: %s", alive, want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLoads waits until p's view of every node's load (records, which
// lag behind joins and leaves) is want.
func waitLoads(t *testing.T, p *proc, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		_, body := p.get("/api/cluster")
		var v clusterView
		ok := json.Unmarshal([]byte(body), &v) == nil
		for _, n := range v.Nodes {
			ok = ok && n.Load == want[n.ID]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node loads never became %v: %s", want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countByNode(ms []*member) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[m.node]++
	}
	return out
}

// TestPlacementThreeNodes: 30 participants joining 10 rooms all through node
// 1 end up with no node holding more than half of them and every room on
// one node; a node at its limit sends a newcomer elsewhere ("node-full");
// the participants of a killed node, reconnecting through either survivor,
// are spread over both.
func TestPlacementThreeNodes(t *testing.T) {
	consul := consultest.Start(t, "confab-place").Addr
	// A fresh secret in a file: never on the command line, never a
	// published example (both are refused).
	rnd := make([]byte, 24)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "cluster-secret")
	if err := os.WriteFile(secretFile, []byte(hex.EncodeToString(rnd)), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*proc{}
	var ids []string
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		ids = append(ids, id)
		procs[id] = startConfab(t, "--node-id", id, "--consul", consul, "--cluster-secret-file", secretFile,
			"--max-participants-per-node", strconv.Itoa(placeLimit), "--log-level", "warn")
	}
	for _, id := range ids {
		waitCluster(t, procs[id], 3)
	}

	// 1. 30 participants, 10 rooms of 3, one after the other, all through n1.
	var all []*member
	for r := 0; r < 10; r++ {
		room := fmt.Sprintf("room%d", r)
		for k := 0; k < 3; k++ {
			all = append(all, joinVia(t, procs["n1"].base, room, fmt.Sprintf("p%d-%d", r, k), nil))
		}
	}
	counts := countByNode(all)
	roomNodes := map[string]map[string]bool{}
	for _, m := range all {
		if roomNodes[m.room] == nil {
			roomNodes[m.room] = map[string]bool{}
		}
		roomNodes[m.room][m.node] = true
	}
	t.Logf("after 30 joins through n1: %v", counts)
	for id, n := range counts {
		if n > 15 {
			t.Errorf("node %s holds %d of 30 participants, more than half (%v)", id, n, counts)
		}
	}
	for room, nodes := range roomNodes {
		// Loads stay multiples of 3 below the limit, so every room fits
		// on the node that opened it.
		if len(nodes) != 1 {
			t.Errorf("room %s spans %d nodes (%v), want 1", room, len(nodes), nodes)
		}
	}

	// 2. Fill the busiest node up to its limit through itself; the next
	// newcomer is sent elsewhere with "node-full".
	busiest := ids[0]
	for _, id := range ids {
		if counts[id] > counts[busiest] {
			busiest = id
		}
	}
	var busyRoom string
	for _, m := range all {
		if m.node == busiest {
			busyRoom = m.room
			break
		}
	}
	var extra []*member
	for i := counts[busiest]; i < placeLimit; i++ {
		m := joinVia(t, procs[busiest].base, busyRoom, fmt.Sprintf("extra%d", i), nil)
		if m.node != busiest {
			t.Fatalf("participant %d of %s placed on %s, want %s below its limit", i, busyRoom, m.node, busiest)
		}
		extra = append(extra, m)
	}
	spill := joinVia(t, procs[busiest].base, busyRoom, "spill", nil)
	if spill.node == busiest || len(spill.moves) == 0 || spill.moves[0] != "node-full" {
		t.Errorf("newcomer to full node %s: joined on %s after moves %v, want another node after node-full", busiest, spill.node, spill.moves)
	}
	for _, m := range append(extra, spill) {
		_ = m.conn.Close(websocket.StatusNormalClosure, "done")
	}

	// 3. Kill the busiest node; its participants rejoin through the
	// survivors in turn, avoiding it. First let the records catch up, so
	// the survivors start from the true loads.
	for _, id := range ids {
		waitLoads(t, procs[id], counts)
	}
	if err := procs[busiest].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-procs[busiest].done
	var survivors []string
	for _, id := range ids {
		if id != busiest {
			survivors = append(survivors, id)
		}
	}
	var moved, rest []*member
	for _, m := range all {
		if m.node == busiest {
			moved = append(moved, m)
		} else {
			rest = append(rest, m)
		}
	}
	var rejoined []*member
	for i, m := range moved {
		via := procs[survivors[i%2]].base
		r := joinVia(t, via, m.room, fmt.Sprintf("back%d", i), []string{busiest})
		if r.node == busiest {
			t.Fatalf("participant of killed node %s sent back to it", busiest)
		}
		rejoined = append(rejoined, r)
	}
	after := countByNode(rejoined)
	t.Logf("participants of killed %s (%d) rejoined: %v; totals %v", busiest, len(moved), after, countByNode(append(rest, rejoined...)))
	for _, id := range survivors {
		// Rooms move whole, so the split is by rooms of 3; still neither
		// survivor may take (nearly) all of them.
		if after[id] == 0 || 4*after[id] > 3*len(moved) {
			t.Errorf("participants of the killed node not spread: %v", after)
		}
	}
	for id, n := range countByNode(append(rest, rejoined...)) {
		if n > placeLimit {
			t.Errorf("node %s holds %d participants, over its limit %d", id, n, placeLimit)
		}
	}
}
