package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// Placement says where a participant joining a room should connect.
type Placement struct {
	// NodeID is the chosen node.
	NodeID string `json:"nodeId"`
	// URL is the chosen node's advertise URL; "" when Local is true in
	// single-node mode.
	URL string `json:"url"`
	// Local is true when the chosen node is this one.
	Local bool `json:"local"`
	// Reason tells why the node was chosen: "serves-room" (it already
	// serves the room), "least-loaded" (two random choices among the
	// nodes with room), "local" (single-node mode or no better choice),
	// "placed" (an earlier placement sent the participant here and this
	// node still has room), "failover" (least loaded, for a participant
	// that lost its node).
	Reason string `json:"reason"`
	// Full is true when this node is over its load limit (participant
	// limit reached, or CPU above CPUHigh): the participant is sent
	// elsewhere because of it.
	Full bool `json:"full,omitempty"`
}

// PlaceOptions refine a placement.
type PlaceOptions struct {
	// Avoid are node ids the participant must not be sent to, typically
	// the node it just lost (whose record may outlive it for a session
	// TTL).
	Avoid []string
	// Placed is true when an earlier placement sent the participant to
	// this node: it stays here unless this node is over its load limit,
	// so two nodes never bounce a participant between them.
	Placed bool
}

// Placer decides where participants go. Both memberships implement it.
type Placer interface {
	// Place chooses the node a new participant of room should join. It
	// returns ErrNodeFull when no live node of the cluster has room for
	// one more participant (or, in single-node mode, this node is full).
	Place(ctx context.Context, room string) (Placement, error)
	// PlaceWith is Place with options.
	PlaceWith(ctx context.Context, room string, opts PlaceOptions) (Placement, error)
}

// Load limits and the placement tally (see docs/placement.md).
const (
	// CPUHigh is the CPU share above which a node counts as over its load
	// limit: it takes newcomers only when every other node is too.
	CPUHigh = 0.85
	// cpuWeight: a node's load is multiplied by 1 + cpuWeight*CPU.
	cpuWeight = 2
	// trackWeight is what one published track adds to a node's load, in
	// participants.
	trackWeight = 0.25
	// tallyTTL is how long a participant this node sent to another node
	// counts towards that node's load (records lag behind joins).
	tallyTTL = 3 * time.Second
	// roomReadTimeout bounds the Consul read of the nodes serving a room.
	roomReadTimeout = 2 * time.Second
)

// Place of the single node: this node, unless it holds MaxParticipants
// participants already (ErrNodeFull).
func (l *Local) Place(ctx context.Context, room string) (Placement, error) {
	return l.PlaceWith(ctx, room, PlaceOptions{})
}

// PlaceWith is Place; a single node has nowhere else to send anyone, so
// opts change nothing.
func (l *Local) PlaceWith(ctx context.Context, _ string, _ PlaceOptions) (Placement, error) {
	if err := ctx.Err(); err != nil {
		return Placement{}, err
	}
	if l.maxParticipants > 0 && l.participants() >= l.maxParticipants {
		return Placement{}, ErrNodeFull
	}
	return Placement{NodeID: l.engine.NodeID(), Local: true, Reason: "local"}, nil
}

func (l *Local) participants() int {
	n, _ := l.engine.Load()
	return n
}

// SetMaxParticipants sets the single node's participant limit (0: none).
// Call before serving.
func (l *Local) SetMaxParticipants(n int) { l.maxParticipants = n }

// candidate is one node as the placement decision sees it.
type candidate struct {
	ID           string
	URL          string
	Participants int     // recorded (or, for this node, live) plus recently sent
	Tracks       int     // published tracks
	CPU          float64 // 0..1
	Limit        int     // participant limit, 0: none
	Draining     bool
	Alive        bool // record present and control channel not found unreachable
}

// full reports whether the node reached its participant limit.
func (c candidate) full() bool { return c.Limit > 0 && c.Participants >= c.Limit }

// hot reports whether the node's CPU is above CPUHigh.
func (c candidate) hot() bool { return c.CPU >= CPUHigh }

// overLimit reports whether the node is over its load limit.
func (c candidate) overLimit() bool { return c.full() || c.hot() }

// score is the node's load: its participants plus trackWeight per
// published track, plus one (so that CPU tells idle nodes apart), times
// 1 + cpuWeight*CPU. Lower is better. Limits do not enter it: they are
// hard caps (full), and a node whose limit is unknown (an older record)
// is not mistaken for a bigger one.
func (c candidate) score() float64 {
	return (float64(c.Participants) + trackWeight*float64(c.Tracks) + 1) * (1 + cpuWeight*c.CPU)
}

// placeInput is everything the placement decision depends on.
type placeInput struct {
	Self       string      // this node's id
	Candidates []candidate // every known node, this one included
	Serving    []string    // nodes serving the room (Consul, this node, recent placements)
	Opts       PlaceOptions
}

// decide is the placement decision, free of I/O: rnd is its only source of
// randomness. It returns the chosen node and the reason (see
// Placement.Reason), or ErrNodeFull when no node can take a participant.
//
//  1. Nodes that are dead, draining, avoided or at their participant limit
//     are out; if none is left the cluster is full.
//  2. Nodes whose CPU is above CPUHigh are out too, unless that leaves none.
//  3. Placed: this node, if it is still in.
//  4. A node serving the room (fewer pipes): this one if it does, else the
//     least loaded of them.
//  5. Otherwise two random choices: the less loaded of two distinct random
//     nodes (ties go to this node, else to the first drawn).
func decide(in placeInput, rnd *rand.Rand) (candidate, string, error) {
	var eligible []candidate
	for _, c := range in.Candidates {
		if !c.Alive || c.Draining || c.full() || slices.Contains(in.Opts.Avoid, c.ID) {
			continue
		}
		eligible = append(eligible, c)
	}
	if len(eligible) == 0 {
		return candidate{}, "", ErrNodeFull
	}
	// Stable order, so the result depends on rnd only.
	sort.Slice(eligible, func(i, j int) bool { return eligible[i].ID < eligible[j].ID })
	pool := make([]candidate, 0, len(eligible))
	for _, c := range eligible {
		if !c.hot() {
			pool = append(pool, c)
		}
	}
	if len(pool) == 0 {
		pool = eligible
	}
	for _, c := range pool {
		if in.Opts.Placed && c.ID == in.Self {
			return c, "placed", nil
		}
	}
	var serving []candidate
	for _, c := range pool {
		if slices.Contains(in.Serving, c.ID) {
			if c.ID == in.Self {
				return c, "serves-room", nil
			}
			serving = append(serving, c)
		}
	}
	if len(serving) > 0 {
		best := serving[0]
		for _, c := range serving[1:] {
			if c.score() < best.score() {
				best = c
			}
		}
		return best, "serves-room", nil
	}
	reason := "least-loaded"
	if len(in.Opts.Avoid) > 0 {
		reason = "failover"
	}
	if len(pool) == 1 {
		return pool[0], reason, nil
	}
	i := rnd.IntN(len(pool))
	j := rnd.IntN(len(pool) - 1)
	if j >= i {
		j++
	}
	a, b := pool[i], pool[j]
	switch {
	case b.score() < a.score(), b.score() == a.score() && b.ID == in.Self:
		return b, reason, nil
	}
	return a, reason, nil
}

// placeTally remembers the participants this node recently sent to other
// nodes, whose records do not count them yet, and which node it sent each
// room to, which Consul may not show yet. Safe for concurrent use.
type placeTally struct {
	mu    sync.Mutex
	rnd   *rand.Rand
	sent  map[string]*sentTo              // by node id
	rooms map[string]map[string]time.Time // room -> node -> when last sent there
}

// sentTo is the tally of one node.
type sentTo struct {
	base  int         // the node's recorded load when the oldest pending one was sent
	times []time.Time // when each pending participant was sent, oldest first
}

func newPlaceTally() *placeTally {
	return &placeTally{
		rnd:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		sent:  make(map[string]*sentTo),
		rooms: make(map[string]map[string]time.Time),
	}
}

// pruneLocked forgets entries older than tallyTTL. Caller holds t.mu.
func (t *placeTally) pruneLocked(now time.Time) {
	for id, s := range t.sent {
		k := 0
		for k < len(s.times) && now.Sub(s.times[k]) > tallyTTL {
			k++
		}
		s.times = s.times[k:]
		if len(s.times) == 0 {
			delete(t.sent, id)
		}
	}
	for room, nodes := range t.rooms {
		for id, at := range nodes {
			if now.Sub(at) > tallyTTL {
				delete(nodes, id)
			}
		}
		if len(nodes) == 0 {
			delete(t.rooms, room)
		}
	}
}

// estimate is the load of node given its recorded load: the record, or the
// record as it was when the pending participants were sent plus them,
// whichever is more (a rewritten record that counts them supersedes the
// tally). Caller holds t.mu.
func (t *placeTally) estimateLocked(node string, recorded int) int {
	s := t.sent[node]
	if s == nil {
		return recorded
	}
	return max(recorded, s.base+len(s.times))
}

// noteLocked records that a participant of room was sent to node, whose
// recorded load is recorded. Caller holds t.mu.
func (t *placeTally) noteLocked(room, node string, recorded int, now time.Time) {
	s := t.sent[node]
	if s == nil {
		s = &sentTo{base: recorded}
		t.sent[node] = s
	}
	s.times = append(s.times, now)
	nodes := t.rooms[room]
	if nodes == nil {
		nodes = make(map[string]time.Time)
		t.rooms[room] = nodes
	}
	nodes[node] = now
}

// Place chooses the node a new participant of room should join (see
// docs/placement.md).
func (n *Node) Place(ctx context.Context, room string) (Placement, error) {
	return n.PlaceWith(ctx, room, PlaceOptions{})
}

// PlaceWith chooses the node a new participant of room should join: a node
// already serving the room unless it is over its load limit, else the less
// loaded of two random nodes with room; ErrNodeFull when no live node has
// room. It knows the room's nodes from the room sync when the room is open
// here and otherwise reads them from Consul once (on failure it decides
// without them); the directory comes from memory (see docs/placement.md).
func (n *Node) PlaceWith(ctx context.Context, room string, opts PlaceOptions) (Placement, error) {
	if err := ctx.Err(); err != nil {
		return Placement{}, err
	}
	serving := n.servingNodes(ctx, room)
	self := n.selfCandidate()
	if r := n.engine.Room(room); r != nil && len(r.LocalParticipants()) > 0 {
		serving = append(serving, n.cfg.NodeID)
	}

	n.mu.Lock()
	cands := make([]candidate, 0, len(n.nodes)+1)
	recorded := make(map[string]int, len(n.nodes))
	for id, rec := range n.nodes {
		if id == n.cfg.NodeID {
			self.CPU = rec.CPU
			self.Draining = self.Draining || rec.Draining
			continue
		}
		_, dead := n.unreachable[id]
		recorded[id] = rec.Load
		cands = append(cands, candidate{ID: id, URL: rec.URL, Participants: rec.Load, Tracks: rec.Tracks,
			CPU: rec.CPU, Limit: rec.MaxParticipants, Draining: rec.Draining, Alive: !dead})
	}
	n.mu.Unlock()

	t := n.placements
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruneLocked(now)
	for i := range cands {
		cands[i].Participants = t.estimateLocked(cands[i].ID, cands[i].Participants)
	}
	for id := range t.rooms[room] {
		serving = append(serving, id)
	}
	cands = append(cands, self)
	in := placeInput{Self: n.cfg.NodeID, Candidates: cands, Serving: serving, Opts: opts}
	chosen, reason, err := decide(in, t.rnd)
	if errors.Is(err, ErrNodeFull) && len(opts.Avoid) > 0 {
		// Only avoided nodes have room: a client's guess that a node is
		// gone must not turn into a refusal.
		in.Opts.Avoid = nil
		chosen, reason, err = decide(in, t.rnd)
	}
	if err != nil {
		return Placement{}, err
	}
	p := Placement{NodeID: chosen.ID, URL: chosen.URL, Local: chosen.ID == n.cfg.NodeID, Reason: reason,
		Full: self.overLimit()}
	if !p.Local {
		t.noteLocked(room, chosen.ID, recorded[chosen.ID], now)
	}
	return p, nil
}

// selfCandidate is this node with its live participant and track counts.
func (n *Node) selfCandidate() candidate {
	c := candidate{ID: n.cfg.NodeID, URL: n.advertiseURL, Limit: n.cfg.MaxParticipants, Alive: true,
		Draining: n.isDraining()}
	c.Participants, c.Tracks = n.engine.Load()
	return c
}

// servingNodes returns the nodes that have room open. When the room is
// open here, this node already knows them (room sync, rooms.go) and asks
// Consul nothing; otherwise it reads the room's records once (bounded like
// every room read). nil when the read fails (placement then goes on
// without it).
func (n *Node) servingNodes(ctx context.Context, room string) []string {
	if n.openWatch(room) != nil {
		return n.roomNodes(room)
	}
	ctx, cancel := context.WithTimeout(ctx, roomReadTimeout)
	defer cancel()
	pairs, err := n.reg.listBounded(ctx, roomPrefix(room)+roomNodesDir)
	if err != nil {
		n.log.Debug("placement: cannot read the room's nodes; placing without them", "room", room, "err", err)
		return nil
	}
	var out []string
	for _, p := range pairs {
		if k, ok := parseRoomKey(p.Key); ok && k.Producer == "" && k.Room == room {
			out = append(out, k.Node)
		}
	}
	return out
}
