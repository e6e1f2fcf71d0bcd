package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// cand returns a live candidate with n participants and no limit.
func cand(id string, participants int) candidate {
	return candidate{ID: id, URL: "http://" + id, Participants: participants, Alive: true}
}

func withLimit(c candidate, limit int) candidate { c.Limit = limit; return c }
func withCPU(c candidate, cpu float64) candidate { c.CPU = cpu; return c }
func dead(c candidate) candidate                 { c.Alive = false; return c }
func draining(c candidate) candidate             { c.Draining = true; return c }
func withTracks(c candidate, n int) candidate    { c.Tracks = n; return c }
func seeds(n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i)
	}
	return s
}

func TestPlaceDecide(t *testing.T) {
	tests := []struct {
		name       string
		in         placeInput
		want       []string // acceptable choices (whatever the random source)
		wantReason string
		wantErr    error
	}{
		{
			name:       "single node",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 5)}},
			want:       []string{"a"},
			wantReason: "least-loaded",
		},
		{
			name:       "room served elsewhere goes there, though more loaded",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 0), cand("b", 9), cand("c", 1)}, Serving: []string{"b"}},
			want:       []string{"b"},
			wantReason: "serves-room",
		},
		{
			name:       "served here and elsewhere: stay",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 9), cand("b", 1)}, Serving: []string{"b", "a"}},
			want:       []string{"a"},
			wantReason: "serves-room",
		},
		{
			name:       "served by two others: the less loaded",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 0), cand("b", 7), cand("c", 4)}, Serving: []string{"b", "c"}},
			want:       []string{"c"},
			wantReason: "serves-room",
		},
		{
			name:       "serving node full: least loaded of the rest",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 3), withLimit(cand("b", 10), 10), cand("c", 3)}, Serving: []string{"b"}},
			want:       []string{"a", "c"},
			wantReason: "least-loaded",
		},
		{
			name:       "serving node hot: elsewhere",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 3), withCPU(cand("b", 1), 0.95)}, Serving: []string{"b"}},
			want:       []string{"a"},
			wantReason: "least-loaded",
		},
		{
			name:       "every node hot: the room's node still",
			in:         placeInput{Self: "a", Candidates: []candidate{withCPU(cand("a", 3), 0.9), withCPU(cand("b", 1), 0.95)}, Serving: []string{"b"}},
			want:       []string{"b"},
			wantReason: "serves-room",
		},
		{
			name:       "new room: two choices never pick the strictly most loaded",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 12), cand("b", 3), cand("c", 6)}},
			want:       []string{"b", "c"},
			wantReason: "least-loaded",
		},
		{
			name:       "new room, two nodes: the less loaded",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 4), cand("b", 3)}},
			want:       []string{"b"},
			wantReason: "least-loaded",
		},
		{
			name:       "tie between self and other: self",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 3), cand("b", 3)}},
			want:       []string{"a"},
			wantReason: "least-loaded",
		},
		{
			name:       "tracks count: fewer tracks wins at equal participants",
			in:         placeInput{Self: "a", Candidates: []candidate{withTracks(cand("a", 4), 8), cand("b", 4)}},
			want:       []string{"b"},
			wantReason: "least-loaded",
		},
		{
			name:       "cpu counts",
			in:         placeInput{Self: "a", Candidates: []candidate{withCPU(cand("a", 2), 0.6), withCPU(cand("b", 4), 0.1)}},
			want:       []string{"b"},
			wantReason: "least-loaded",
		},
		{
			name:       "dead and draining nodes are skipped, even serving the room",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 9), dead(cand("b", 0)), draining(cand("c", 0))}, Serving: []string{"b", "c"}},
			want:       []string{"a"},
			wantReason: "least-loaded",
		},
		{
			name:       "avoided node is skipped: failover",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 9), cand("b", 0), cand("c", 9)}, Serving: []string{"b"}, Opts: PlaceOptions{Avoid: []string{"b"}}},
			want:       []string{"a", "c"},
			wantReason: "failover",
		},
		{
			name:       "self full: sent elsewhere",
			in:         placeInput{Self: "a", Candidates: []candidate{withLimit(cand("a", 5), 5), cand("b", 50)}, Serving: []string{"a"}},
			want:       []string{"b"},
			wantReason: "least-loaded",
		},
		{
			name:       "placed here: stay though another node serves the room",
			in:         placeInput{Self: "a", Candidates: []candidate{cand("a", 5), cand("b", 1)}, Serving: []string{"b"}, Opts: PlaceOptions{Placed: true}},
			want:       []string{"a"},
			wantReason: "placed",
		},
		{
			name:       "placed here but full: elsewhere",
			in:         placeInput{Self: "a", Candidates: []candidate{withLimit(cand("a", 5), 5), cand("b", 1)}, Opts: PlaceOptions{Placed: true}},
			want:       []string{"b"},
			wantReason: "least-loaded",
		},
		{
			name:    "every node full",
			in:      placeInput{Self: "a", Candidates: []candidate{withLimit(cand("a", 5), 5), withLimit(cand("b", 7), 7), dead(cand("c", 0))}},
			wantErr: ErrNodeFull,
		},
		{
			name:    "only avoided nodes left",
			in:      placeInput{Self: "a", Candidates: []candidate{draining(cand("a", 0)), cand("b", 0)}, Opts: PlaceOptions{Avoid: []string{"b"}}},
			wantErr: ErrNodeFull,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every random source must give an acceptable answer.
			for _, seed := range seeds(50) {
				got, reason, err := decide(tt.in, rand.New(rand.NewPCG(seed, 1)))
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("seed %d: err = %v, want %v", seed, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("seed %d: unexpected error %v", seed, err)
				}
				ok := false
				for _, w := range tt.want {
					ok = ok || got.ID == w
				}
				if !ok || reason != tt.wantReason {
					t.Fatalf("seed %d: chose %s (%s), want one of %v (%s)", seed, got.ID, reason, tt.want, tt.wantReason)
				}
			}
		})
	}
}

// TestPlaceDecideSpreadsNewRooms: with the tally standing in for lagging
// records, 30 participants in 10 rooms of 3 (joining room after room
// through one node) end with no node above half of them and every room on
// one node; and a node is chosen for some rooms whatever the seed.
func TestPlaceDecideSpreadsNewRooms(t *testing.T) {
	for _, seed := range seeds(200) {
		rnd := rand.New(rand.NewPCG(seed, 7))
		load := map[string]int{"a": 0, "b": 0, "c": 0}
		for room := 0; room < 10; room++ {
			var served []string
			for k := 0; k < 3; k++ {
				var cands []candidate
				for _, id := range []string{"a", "b", "c"} {
					cands = append(cands, cand(id, load[id]))
				}
				got, _, err := decide(placeInput{Self: "a", Candidates: cands, Serving: served}, rnd)
				if err != nil {
					t.Fatal(err)
				}
				load[got.ID]++
				if len(served) > 0 && served[0] != got.ID {
					t.Fatalf("seed %d: room %d split over %s and %s", seed, room, served[0], got.ID)
				}
				served = []string{got.ID}
			}
		}
		for id, l := range load {
			if l > 15 {
				t.Fatalf("seed %d: node %s holds %d of 30: %v", seed, id, l, load)
			}
		}
	}
}

// TestPlaceTally: participants sent to a node count towards its load until
// its record counts them or tallyTTL passes, and the room is remembered as
// served by that node meanwhile.
func TestPlaceTally(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name     string
		sent     []time.Duration // when each was sent, after t0 (record load 4 then)
		at       time.Duration   // when estimated
		recorded int             // the record's load then
		want     int
		wantRoom bool
	}{
		{"nothing sent", nil, 0, 4, 4, false},
		{"two pending, record stale", []time.Duration{0, time.Second}, 2 * time.Second, 4, 6, true},
		{"record caught up with one", []time.Duration{0, time.Second}, 2 * time.Second, 5, 6, true},
		{"record counts them and more", []time.Duration{0, time.Second}, 2 * time.Second, 9, 9, true},
		{"oldest expired", []time.Duration{0, time.Second}, tallyTTL + 500*time.Millisecond, 4, 5, true},
		{"all expired", []time.Duration{0, time.Second}, tallyTTL + 2*time.Second, 4, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := newPlaceTally()
			tally.mu.Lock()
			defer tally.mu.Unlock()
			for _, d := range tt.sent {
				tally.noteLocked("r", "b", 4, t0.Add(d))
			}
			tally.pruneLocked(t0.Add(tt.at))
			if got := tally.estimateLocked("b", tt.recorded); got != tt.want {
				t.Errorf("estimate = %d, want %d", got, tt.want)
			}
			if _, ok := tally.rooms["r"]["b"]; ok != tt.wantRoom {
				t.Errorf("room remembered = %v, want %v", ok, tt.wantRoom)
			}
		})
	}
}

// TestNodePlace: Node.PlaceWith with real Consul and two nodes: a room open
// on the other node goes there (seen through Consul), a full node sends
// newcomers of its own room elsewhere with Full set (also when placed
// there), and an avoid that leaves no room is ignored rather than refusing.
func TestNodePlace(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a", func(c *Config) { c.MaxParticipants = 2 })
	nb := startTestNode(ctx, t, a, "node-b")
	waitFor(ctx, t, "a sees b", func() bool { _, ok := na.node.resolve("node-b"); return ok })

	place := func(room string, opts PlaceOptions) Placement {
		t.Helper()
		p, err := na.node.PlaceWith(ctx, room, opts)
		if err != nil {
			t.Fatalf("PlaceWith(%s, %+v): %v", room, opts, err)
		}
		return p
	}
	if p := place("fresh", PlaceOptions{Placed: true}); !p.Local || p.Reason != "placed" || p.Full {
		t.Fatalf("placed on a node with room: %+v, want local", p)
	}

	join(t, nb.engine, "on-b", "Bob")
	waitFor(ctx, t, "a places on-b on b", func() bool {
		p := place("on-b", PlaceOptions{})
		return p.NodeID == "node-b" && p.Reason == "serves-room" && p.URL == nb.srv.URL && !p.Local
	})

	join(t, na.engine, "on-a", "Ann")
	if p := place("on-a", PlaceOptions{}); !p.Local || p.Reason != "serves-room" {
		t.Fatalf("room served here, below the limit: %+v, want local serves-room", p)
	}
	join(t, na.engine, "on-a", "Abe") // a is now at its limit of 2
	for _, opts := range []PlaceOptions{{}, {Placed: true}} {
		if p := place("on-a", opts); p.Local || p.NodeID != "node-b" || !p.Full {
			t.Fatalf("full node, %+v: %+v, want node-b with Full", opts, p)
		}
	}
	if p := place("on-b", PlaceOptions{Avoid: []string{"node-b"}}); p.NodeID != "node-b" {
		t.Fatalf("only the avoided node has room: %+v, want node-b anyway", p)
	}
}

// TestLocalPlace: the single node answers local until its limit.
func TestLocalPlace(t *testing.T) {
	e, err := sfu.New(sfu.Config{NodeID: "solo", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	l := NewLocal(e)
	l.SetMaxParticipants(1)
	ctx := context.Background()
	if p, err := l.Place(ctx, "r"); err != nil || !p.Local || p.NodeID != "solo" {
		t.Fatalf("Place = %+v, %v; want local", p, err)
	}
	join(t, e, "r", "Ann")
	if _, err := l.PlaceWith(ctx, "r", PlaceOptions{Placed: true}); !errors.Is(err, ErrNodeFull) {
		t.Fatalf("Place on a full single node: %v, want ErrNodeFull", err)
	}
}
