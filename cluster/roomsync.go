package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// Room state exchange between nodes (control plane, see docs/cluster.md).
//
// Consul KV stays the truth of which node serves which room with which
// producers, but no node watches room records: a node reads a room's records
// once when it opens the room (after its own room record is written, so of
// two nodes opening a room at once at least one sees the other), and then
// learns changes from the other nodes serving the room, which push them over
// the signed control channel:
//
//	POST /cluster/v1/sync/rooms
//	  {"life": "<sender's startedAt>", "rooms": [roomState, ...]}
//	-> 200 {"life": "<responder's startedAt>", "rooms": [roomState, ...]}
//
// A roomState is the sender's complete contribution to one room: whether it
// serves the room, its local producers (the same JSON as the KV producer
// records), a sequence number (a node-wide counter taken at every change, so
// newer states of a room always have larger numbers within one life of the
// node) and the time of the change. The receiver keeps, per room and node,
// the newest state; a state of another life of the node replaces one of an
// older life. The answer carries the responder's own states of the same
// rooms, so every exchange syncs both ways: a node that reads a room and
// finds other nodes in it pushes to them and learns their states from the
// answers, and the responders add it to the room's peers before answering.
//
// Each node has one outbox per peer node (a goroutine, started on demand):
// changed rooms are marked dirty there and sent in batches of up to
// maxSyncRooms, coalesced (only the latest state of a room is sent). Failed
// sends are retried with backoff and trigger a liveness probe of the peer.
// Every SyncInterval an outbox marks every room it shares with its peer
// (anti-entropy), and every ReconcileInterval each room is read from Consul
// again (finding nodes whose push never arrived).

// maxSyncRooms is the most room states in one sync request.
const maxSyncRooms = 128

// roomState is one node's contribution to one room on the wire.
type roomState struct {
	Room      string            `json:"room"`
	Seq       uint64            `json:"seq"`
	Open      bool              `json:"open"`
	At        int64             `json:"at,omitempty"` // unix ms of the change
	Producers []json.RawMessage `json:"producers,omitempty"`
	// Participants are the sender's local participants in the room, with
	// their media state (meeting.go).
	Participants []participantRecord `json:"participants,omitempty"`
	// WantChat asks the responder for its chat history of the room; the
	// answer's Chat carries it (possibly empty).
	WantChat bool          `json:"wantChat,omitempty"`
	Chat     *[]chatRecord `json:"chat,omitempty"`
}

// roomSyncMessage is the body of a sync request and of its answer.
type roomSyncMessage struct {
	Life  time.Time   `json:"life"`
	Rooms []roomState `json:"rooms"`
}

// localRoom is this node's own contribution to a room.
type localRoom struct {
	seq          uint64
	open         bool
	at           time.Time
	producers    map[string][]byte            // encoded producer records by id
	participants map[string]participantRecord // local participants by id
}

// localRooms holds this node's contributions. Safe for concurrent use.
type localRooms struct {
	mu    sync.Mutex
	seq   uint64
	rooms map[string]*localRoom
}

func newLocalRooms() *localRooms { return &localRooms{rooms: make(map[string]*localRoom)} }

// change applies f to room's entry under the lock and stamps it.
func (l *localRooms) change(room string, f func(r *localRoom)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		r = &localRoom{producers: make(map[string][]byte), participants: make(map[string]participantRecord)}
		l.rooms[room] = r
	}
	f(r)
	l.seq++
	r.seq = l.seq
	r.at = time.Now()
	if !r.open && len(r.producers) == 0 && len(r.participants) == 0 {
		// Closed: forget it; state reports closed rooms with the current
		// counter, which is newer than any state sent for them.
		delete(l.rooms, room)
	}
}

// state returns the wire state of room.
func (l *localRooms) state(room string) roomState {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rooms[room]
	if r == nil {
		return roomState{Room: room, Seq: l.seq, Open: false}
	}
	st := roomState{Room: room, Seq: r.seq, Open: r.open, At: r.at.UnixMilli()}
	ids := make([]string, 0, len(r.producers))
	for id := range r.producers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		st.Producers = append(st.Producers, json.RawMessage(r.producers[id]))
	}
	for _, p := range r.participants {
		st.Participants = append(st.Participants, p)
	}
	sort.Slice(st.Participants, func(i, j int) bool { return st.Participants[i].ID < st.Participants[j].ID })
	return st
}

// syncOutbox is the queue of rooms whose state must be sent to one peer.
type syncOutbox struct {
	node   string
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1

	mu    sync.Mutex
	dirty map[string]struct{}
}

func (o *syncOutbox) mark(rooms ...string) {
	o.mu.Lock()
	for _, r := range rooms {
		o.dirty[r] = struct{}{}
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take removes and returns up to max dirty rooms, and whether more remain.
func (o *syncOutbox) take(max int) ([]string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, min(max, len(o.dirty)))
	for r := range o.dirty {
		if len(out) == max {
			break
		}
		out = append(out, r)
		delete(o.dirty, r)
	}
	return out, len(o.dirty) > 0
}

// markSync queues room's state for node (no-op for this node, for nodes
// not in the directory, and while the node is not running). Never blocks.
func (n *Node) markSync(node string, rooms ...string) {
	if node == n.cfg.NodeID || len(rooms) == 0 {
		return
	}
	n.mu.Lock()
	if !n.servesPeerLocked(node) {
		n.mu.Unlock()
		return
	}
	o := n.outboxes[node]
	if o == nil {
		ctx, cancel := context.WithCancel(n.ctx)
		o = &syncOutbox{node: node, cancel: cancel, wake: make(chan struct{}, 1), dirty: make(map[string]struct{})}
		n.outboxes[node] = o
		n.wg.Add(1)
		go n.runOutbox(ctx, o)
	}
	n.mu.Unlock()
	o.mark(rooms...)
}

// servesPeerLocked reports whether this node is running and node is in
// its directory: the condition for starting a peer's queues. Caller holds
// n.mu.
func (n *Node) servesPeerLocked(node string) bool {
	_, ok := n.nodes[node]
	return ok && n.state == stateRunning
}

// stopOutboxLocked stops node's outbox. Caller holds n.mu.
func (n *Node) stopOutboxLocked(node string) {
	if o := n.outboxes[node]; o != nil {
		o.cancel()
		delete(n.outboxes, node)
	}
}

// roomsSharedWith returns the open rooms whose peers include node.
func (n *Node) roomsSharedWith(node string) []string {
	n.mu.Lock()
	ws := n.roomWatchesLocked()
	n.mu.Unlock()
	var out []string
	for _, w := range ws {
		if w.hasPeer(node) {
			out = append(out, w.name)
		}
	}
	return out
}

// runOutbox sends o's dirty rooms to its peer until ctx is done. Owned by
// Node (wg).
func (n *Node) runOutbox(ctx context.Context, o *syncOutbox) {
	defer n.wg.Done()
	b := backoff{min: 200 * time.Millisecond, max: n.cfg.MaxBackoff}
	jitter := func() time.Duration {
		return n.cfg.SyncInterval/2 + rand.N(n.cfg.SyncInterval)
	}
	anti := time.NewTimer(jitter())
	defer anti.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-anti.C:
			anti.Reset(jitter())
			o.mark(n.roomsSharedWith(o.node)...)
			continue // the mark woke us
		}
		for ctx.Err() == nil {
			rooms, more := o.take(maxSyncRooms)
			if len(rooms) == 0 {
				break
			}
			err := n.sendSync(ctx, o.node, rooms)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				o.mark(rooms...)
				level := slog.LevelDebug
				if !failing {
					level = slog.LevelWarn
					n.probe(o.node, "room sync failed")
				}
				failing = true
				n.log.Log(ctx, level, "room sync failed; retrying", "peer", o.node, "rooms", len(rooms), "err", err)
				if !sleepCtx(ctx, b.next()) {
					return
				}
				continue
			}
			if failing {
				n.log.Info("room sync works again", "peer", o.node)
			}
			failing = false
			b.reset()
			if !more {
				break
			}
		}
	}
}

// sendSync sends this node's states of rooms to node and applies the
// states in its answer.
func (n *Node) sendSync(ctx context.Context, node string, rooms []string) error {
	req := roomSyncMessage{Life: n.startedAt, Rooms: make([]roomState, 0, len(rooms))}
	for _, r := range rooms {
		st := n.local.state(r)
		if w := n.openWatch(r); w != nil && st.Open && !w.hasChatFrom(node) {
			st.WantChat = true
		}
		req.Rooms = append(req.Rooms, st)
	}
	var resp roomSyncMessage
	if err := n.pipes.SyncRooms(ctx, node, req, &resp); err != nil {
		return err
	}
	now := time.Now()
	for _, st := range resp.Rooms {
		if w := n.openWatch(st.Room); w != nil {
			w.ingest(node, resp.Life, st, now)
			if st.Chat != nil {
				n.addChat(node, st.Room, *st.Chat)
				w.setChatFrom(node)
			}
		}
	}
	return nil
}

// handleRoomSync is the pipe.Pipes' room sync handler: it applies the sender's
// states and answers with this node's states of the same rooms. A state is
// applied (and the sender added to the room's peers) before this node's
// own state is read, so a local change made after the answer was built is
// pushed to the sender by the outbox.
func (n *Node) handleRoomSync(from string, body []byte) (any, error) {
	var req roomSyncMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", pipe.ErrControlBadRequest, err)
	}
	if len(req.Rooms) > maxSyncRooms {
		return nil, fmt.Errorf("%w: %d rooms in one sync (at most %d)", pipe.ErrControlBadRequest, len(req.Rooms), maxSyncRooms)
	}
	for _, st := range req.Rooms {
		if !validWireID(st.Room) {
			return nil, fmt.Errorf("%w: bad room name", pipe.ErrControlBadRequest)
		}
	}
	now := time.Now()
	resp := roomSyncMessage{Life: n.startedAt, Rooms: make([]roomState, 0, len(req.Rooms))}
	for _, st := range req.Rooms {
		w := n.openWatch(st.Room)
		if w != nil {
			w.ingest(from, req.Life, st, now)
			if st.Open && !w.hasChatFrom(from) {
				n.markSync(from, st.Room) // ask it for its chat history
			}
		}
		out := n.local.state(st.Room)
		if st.WantChat {
			if r := n.engine.Room(st.Room); r != nil {
				h := chatRecords(r.ChatHistory())
				out.Chat = &h
			}
		}
		resp.Rooms = append(resp.Rooms, out)
	}
	return resp, nil
}

// openWatch returns the current watch of room if the room is open.
func (n *Node) openWatch(room string) *roomWatch {
	n.mu.Lock()
	defer n.mu.Unlock()
	w := n.rooms[room]
	if w == nil || w.ctx.Err() != nil {
		return nil
	}
	return w
}

// decodeStateProducers decodes the producers of st announced by node.
func decodeStateProducers(node string, st roomState) (map[string]sfu.ProducerInfo, error) {
	out := make(map[string]sfu.ProducerInfo, len(st.Producers))
	for _, raw := range st.Producers {
		var rec producerRecord
		if err := json.Unmarshal(raw, &rec); err != nil || !validWireID(rec.ID) {
			return nil, fmt.Errorf("cluster: producer in room state of node %s: bad id", node)
		}
		out[rec.ID] = rec.remoteInfo(node)
	}
	return out, nil
}

// maxWireID bounds room names and producer ids in room states.
const maxWireID = 256

// validWireID reports whether s is acceptable as a room name or producer id
// in a room state.
func validWireID(s string) bool { return s != "" && len(s) <= maxWireID }
