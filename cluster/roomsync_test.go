package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// testWatch returns a room watch of a bare node (no Consul, no engine): what
// ingest and remote need.
func testWatch(self string) *roomWatch {
	n := &Node{cfg: Config{NodeID: self, MaxBackoff: time.Second, Logger: quietLogger()}, ctx: context.Background()}
	n.log = n.cfg.Logger
	return newRoomWatch(n, "demo", nil, nil)
}

func producerJSON(t *testing.T, id string) json.RawMessage {
	t.Helper()
	b, err := encodeProducer("ignored", sfu.ProducerInfo{ID: id, Kind: "video"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRoomStateIngest: which pushed states a room keeps, per node.
func TestRoomStateIngest(t *testing.T) {
	life1 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	life2 := life1.Add(time.Minute)
	type push struct {
		node string
		life time.Time
		st   roomState
	}
	open := func(seq uint64, ids ...string) roomState {
		st := roomState{Room: "demo", Seq: seq, Open: true}
		for _, id := range ids {
			st.Producers = append(st.Producers, producerJSON(t, id))
		}
		return st
	}
	closed := func(seq uint64) roomState { return roomState{Room: "demo", Seq: seq} }
	tests := []struct {
		name      string
		pushes    []push
		wantPeers []string
		wantProds []string // producer ids, with their origin node: "node/id"
	}{
		{"first state", []push{{"b", life1, open(3, "p1")}}, []string{"b"}, []string{"b/p1"}},
		{"newer replaces", []push{{"b", life1, open(3, "p1")}, {"b", life1, open(5, "p2")}}, []string{"b"}, []string{"b/p2"}},
		{"older ignored", []push{{"b", life1, open(5, "p2")}, {"b", life1, open(3, "p1")}}, []string{"b"}, []string{"b/p2"}},
		{"same seq ignored", []push{{"b", life1, open(5, "p2")}, {"b", life1, open(5, "p9")}}, []string{"b"}, []string{"b/p2"}},
		{"closed removes the node", []push{{"b", life1, open(3, "p1")}, {"b", life1, closed(4)}}, nil, nil},
		{"older closed ignored", []push{{"b", life1, open(4, "p1")}, {"b", life1, closed(3)}}, []string{"b"}, []string{"b/p1"}},
		{"new life with a smaller seq replaces", []push{{"b", life1, open(9, "p1")}, {"b", life2, open(1, "p2")}}, []string{"b"}, []string{"b/p2"}},
		{"older life ignored", []push{{"b", life2, open(1, "p2")}, {"b", life1, open(9, "p1")}}, []string{"b"}, []string{"b/p2"}},
		{"own state ignored", []push{{"a", life1, open(1, "p1")}}, nil, nil},
		{"two nodes", []push{{"b", life1, open(1, "p1")}, {"c", life1, open(1, "p2", "p3")}}, []string{"b", "c"}, []string{"b/p1", "c/p2", "c/p3"}},
		{"bad producer dropped whole", []push{{"b", life1, roomState{Room: "demo", Seq: 1, Open: true, Producers: []json.RawMessage{json.RawMessage(`{"kind":"video"}`)}}}}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := testWatch("a")
			for _, p := range tc.pushes {
				w.ingest(p.node, p.life, p.st, time.Now())
			}
			peers := w.peerList()
			sort.Strings(peers)
			if !slices.Equal(peers, tc.wantPeers) {
				t.Errorf("peers %v, want %v", peers, tc.wantPeers)
			}
			// The directory holds each node's newest life pushed.
			origins := map[string]originInfo{}
			for _, p := range tc.pushes {
				if o := origins[p.node]; p.life.After(o.life) {
					origins[p.node] = originInfo{life: p.life}
				}
			}
			var prods []string
			for id, p := range w.remote(origins) {
				prods = append(prods, p.Origin+"/"+id)
			}
			sort.Strings(prods)
			if !slices.Equal(prods, tc.wantProds) {
				t.Errorf("producers %v, want %v", prods, tc.wantProds)
			}
		})
	}
}

// TestRoomStateRemoteFilters: producers of nodes missing from the directory,
// and pushed by another life than the directory's, are not piped.
func TestRoomStateRemoteFilters(t *testing.T) {
	life1 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	w := testWatch("a")
	w.ingest("b", life1, roomState{Room: "demo", Seq: 1, Open: true, Producers: []json.RawMessage{producerJSON(t, "p1")}}, time.Now())
	for _, tc := range []struct {
		name    string
		origins map[string]originInfo
		want    int
	}{
		{"alive, same life", map[string]originInfo{"b": {life: life1}}, 1},
		{"not in the directory", map[string]originInfo{}, 0},
		{"restarted since", map[string]originInfo{"b": {life: life1.Add(time.Second)}}, 0},
	} {
		if got := len(w.remote(tc.origins)); got != tc.want {
			t.Errorf("%s: %d producers, want %d", tc.name, got, tc.want)
		}
	}
	// A restart seen by the directory forgets the old life's state but
	// keeps a state the new life already pushed; the node stays a peer
	// (so that it is sent this room's state when its record is back).
	life2 := life1.Add(time.Second)
	alive2 := map[string]originInfo{"b": {life: life2}}
	w.forget("b", life2)
	if len(w.remote(map[string]originInfo{"b": {life: life1}})) != 0 || !w.hasPeer("b") {
		t.Fatal("the old life's state survived its restart, or the peer was dropped")
	}
	w.ingest("b", life2, roomState{Room: "demo", Seq: 1, Open: true, Producers: []json.RawMessage{producerJSON(t, "p2")}}, time.Now())
	w.forget("b", life2)
	if len(w.remote(alive2)) != 1 {
		t.Fatal("the new life's pushed state was forgotten")
	}
	w.forget("b", time.Time{}) // departed
	if len(w.remote(alive2)) != 0 || !w.hasPeer("b") {
		t.Fatal("a departed node's state survived, or the peer was dropped")
	}
}

// TestLocalRoomsState: the node's own states carry growing sequence
// numbers, and a closed (forgotten) room reports closed with a number newer
// than any it had.
func TestLocalRoomsState(t *testing.T) {
	l := newLocalRooms()
	l.change("demo", func(r *localRoom) { r.open = true })
	s1 := l.state("demo")
	l.change("demo", func(r *localRoom) { r.producers["p1"] = []byte(`{"id":"p1"}`) })
	s2 := l.state("demo")
	l.change("demo", func(r *localRoom) { r.open = false; clear(r.producers) })
	s3 := l.state("demo")
	if !s1.Open || len(s1.Producers) != 0 || !s2.Open || len(s2.Producers) != 1 || s3.Open || len(s3.Producers) != 0 {
		t.Fatalf("states %+v %+v %+v", s1, s2, s3)
	}
	if !(s1.Seq < s2.Seq && s2.Seq < s3.Seq) {
		t.Fatalf("sequence numbers %d, %d, %d do not grow", s1.Seq, s2.Seq, s3.Seq)
	}
	if never := l.state("other"); never.Open || never.Seq != s3.Seq {
		t.Fatalf("unknown room: %+v", never)
	}
	l.change("demo", func(r *localRoom) { r.open = true })
	if s4 := l.state("demo"); !s4.Open || s4.Seq <= s3.Seq {
		t.Fatalf("reopened room: %+v after %+v", s4, s3)
	}
}
