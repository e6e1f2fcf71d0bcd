package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// Presence and chat across nodes (docs/cluster.md, Presence and chat).
//
// Presence rides on the room state exchange: a node's room state lists its
// local participants with their media state, and a receiving node hands
// each origin's list to its engine room (sfu.Room.SetRemoteParticipants).
// A node that dies or leaves the room takes its participants with it,
// like its producers.
//
// Chat messages travel as room events (POST /cluster/v1/rooms/{room}/events,
// {"chat": [...]}) through one FIFO queue per peer node, so each node's
// messages reach every other node in the order they were sent; receivers
// drop the ones they have seen. History is handed over in the room sync: a
// node asks each peer of a room once ("wantChat") and the answer carries the
// peer's last messages.

// maxChatQueue bounds a peer's chat queue; the oldest messages are dropped
// beyond it (the peer is down for long; it gets the history when back).
const maxChatQueue = 1024

// maxChatBatch is the most messages of one room in one room event.
const maxChatBatch = 64

// participantRecord is a local participant in a room state.
type participantRecord struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	AudioMuted bool   `json:"audioMuted,omitempty"`
	VideoMuted bool   `json:"videoMuted,omitempty"`
	Speaking   bool   `json:"speaking,omitempty"`
	Identity   string `json:"identity,omitempty"` // from the access token
	Since      int64  `json:"since,omitempty"`    // joined, unix ms
}

func participantRecordOf(p sfu.ParticipantInfo) participantRecord {
	return participantRecord{ID: p.ID, Name: p.Name, AudioMuted: p.AudioMuted, VideoMuted: p.VideoMuted, Speaking: p.Speaking,
		Identity: p.Identity, Since: p.Since}
}

func (r participantRecord) info() sfu.ParticipantInfo {
	return sfu.ParticipantInfo{ID: r.ID, Name: r.Name, AudioMuted: r.AudioMuted, VideoMuted: r.VideoMuted, Speaking: r.Speaking,
		Identity: r.Identity, Since: r.Since}
}

// chatRecord is a chat message between nodes.
type chatRecord struct {
	ID            string `json:"id"`
	ParticipantID string `json:"participantId"`
	Name          string `json:"name"`
	Origin        string `json:"origin"`
	Text          string `json:"text"`
	At            int64  `json:"at"` // unix ms
}

func chatRecordOf(m sfu.ChatMessage) chatRecord {
	return chatRecord{ID: m.ID, ParticipantID: m.ParticipantID, Name: m.Name, Origin: m.Origin, Text: m.Text, At: m.At.UnixMilli()}
}

func (r chatRecord) message() sfu.ChatMessage {
	return sfu.ChatMessage{ID: r.ID, ParticipantID: r.ParticipantID, Name: r.Name, Origin: r.Origin, Text: r.Text,
		At: time.UnixMilli(r.At)}
}

func chatRecords(ms []sfu.ChatMessage) []chatRecord {
	out := make([]chatRecord, 0, len(ms))
	for _, m := range ms {
		out = append(out, chatRecordOf(m))
	}
	return out
}

// roomEvent is the body of a room event: chat messages, or one
// moderation (docs/cluster.md, Moderation).
type roomEvent struct {
	Chat       []chatRecord       `json:"chat,omitempty"`
	Moderation []moderationRecord `json:"moderation,omitempty"`
}

// moderationRecord is an admin's action between nodes.
type moderationRecord struct {
	ID     string `json:"id"`
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Kind   string `json:"kind,omitempty"`
	By     string `json:"by"`
	Origin string `json:"origin"`
}

func moderationRecordOf(m sfu.Moderation) moderationRecord {
	return moderationRecord{ID: m.ID, Action: m.Action, Target: m.Target, Kind: m.Kind, By: m.By, Origin: m.Origin}
}

func (r moderationRecord) moderation() sfu.Moderation {
	return sfu.Moderation{ID: r.ID, Action: r.Action, Target: r.Target, Kind: r.Kind, By: r.By, Origin: r.Origin}
}

// Moderated queues a local admin's action for every peer of the room,
// in the same per-peer queue as chat (so its order with chat is kept).
func (n *Node) Moderated(r *sfu.Room, m sfu.Moderation) {
	if n.isClosed() {
		return
	}
	w := n.openWatch(r.Name())
	if w == nil {
		return
	}
	rec := moderationRecordOf(m)
	for _, peer := range w.peerList() {
		n.queueEvent(peer, chatItem{room: r.Name(), mod: &rec})
	}
}

// ParticipantChanged records a local participant's presence and media
// state in the room's local state and pushes it to the room's peers.
func (n *Node) ParticipantChanged(r *sfu.Room, p sfu.ParticipantInfo, present bool) {
	if p.Remote || n.isClosed() {
		return
	}
	rec := participantRecordOf(p)
	n.local.change(r.Name(), func(l *localRoom) {
		if present {
			l.participants[p.ID] = rec
		} else {
			delete(l.participants, p.ID)
		}
	})
	n.roomChanged(r.Name())
}

// ChatSent queues a local participant's chat message for every peer of
// the room.
func (n *Node) ChatSent(r *sfu.Room, m sfu.ChatMessage) {
	if n.isClosed() {
		return
	}
	w := n.openWatch(r.Name())
	if w == nil {
		return
	}
	rec := chatRecordOf(m)
	for _, peer := range w.peerList() {
		n.queueEvent(peer, chatItem{room: r.Name(), rec: rec})
	}
}

// chatItem is one queued room event: a chat message, or a moderation
// (mod set).
type chatItem struct {
	room string
	rec  chatRecord
	mod  *moderationRecord
}

// chatOutbox is the FIFO chat queue of one peer node; its goroutine sends
// the messages in order, retrying the head until it is accepted.
type chatOutbox struct {
	node   string
	cancel context.CancelFunc
	wake   chan struct{} // capacity 1

	mu    sync.Mutex // guards items
	items []chatItem
}

// queueEvent appends it to node's chat queue, starting its goroutine on
// demand; no-op for nodes not in the directory and while not running.
func (n *Node) queueEvent(node string, it chatItem) {
	if node == n.cfg.NodeID {
		return
	}
	n.mu.Lock()
	if !n.servesPeerLocked(node) {
		n.mu.Unlock()
		return
	}
	o := n.chatOut[node]
	if o == nil {
		ctx, cancel := context.WithCancel(n.ctx)
		o = &chatOutbox{node: node, cancel: cancel, wake: make(chan struct{}, 1)}
		n.chatOut[node] = o
		n.wg.Add(1)
		go n.runChatOutbox(ctx, o)
	}
	n.mu.Unlock()
	o.mu.Lock()
	o.items = append(o.items, it)
	dropped := 0
	if len(o.items) > maxChatQueue {
		dropped = len(o.items) - maxChatQueue
		o.items = append(o.items[:0], o.items[dropped:]...)
	}
	o.mu.Unlock()
	if dropped > 0 {
		n.log.Warn("chat queue full; dropping the oldest messages", "peer", node, "dropped", dropped)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// stopChatOutboxLocked stops node's chat queue. Caller holds n.mu.
func (n *Node) stopChatOutboxLocked(node string) {
	if o := n.chatOut[node]; o != nil {
		o.cancel()
		delete(n.chatOut, node)
	}
}

// head returns the first queued event without removing it: a moderation
// alone, or the chat messages up to the next moderation, all of one room;
// k is how many items it holds (0: the queue is empty).
func (o *chatOutbox) head() (room string, ev roomEvent, k int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return "", ev, 0
	}
	room = o.items[0].room
	if m := o.items[0].mod; m != nil {
		ev.Moderation = []moderationRecord{*m}
		return room, ev, 1
	}
	for _, it := range o.items {
		if it.room != room || it.mod != nil || len(ev.Chat) == maxChatBatch {
			break
		}
		ev.Chat = append(ev.Chat, it.rec)
	}
	return room, ev, len(ev.Chat)
}

// pop removes the first k messages.
func (o *chatOutbox) pop(k int) {
	o.mu.Lock()
	o.items = append(o.items[:0], o.items[min(k, len(o.items)):]...)
	o.mu.Unlock()
}

// runChatOutbox sends o's messages in order until ctx is done. Owned by
// Node (wg).
func (n *Node) runChatOutbox(ctx context.Context, o *chatOutbox) {
	defer n.wg.Done()
	b := backoff{min: 200 * time.Millisecond, max: n.cfg.MaxBackoff}
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		}
		for ctx.Err() == nil {
			room, ev, k := o.head()
			if k == 0 {
				break
			}
			body, err := json.Marshal(ev)
			if err == nil {
				err = n.pipes.SendRoomEvent(ctx, o.node, room, body)
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				level := slog.LevelDebug
				if !failing {
					level = slog.LevelWarn
				}
				failing = true
				n.log.Log(ctx, level, "sending chat failed; retrying", "peer", o.node, "room", room, "err", err)
				if !sleepCtx(ctx, b.next()) {
					return
				}
				continue
			}
			failing = false
			b.reset()
			o.pop(k)
		}
	}
}

// handleRoomEvent is the control channel's room event handler: chat
// messages and moderations from a peer go into the engine room, if open
// here.
func (n *Node) handleRoomEvent(ev pipe.RoomEvent) {
	var body roomEvent
	if err := json.Unmarshal(ev.Body, &body); err != nil || len(body.Chat)+len(body.Moderation) == 0 {
		n.log.Debug("ignoring room event", "peer", ev.From, "room", ev.Room, "err", err)
		return
	}
	if len(body.Chat) > 0 {
		n.addChat(ev.From, ev.Room, body.Chat)
	}
	r := n.engine.Room(ev.Room)
	for _, m := range body.Moderation {
		if r == nil {
			break
		}
		if err := r.ApplyRemoteModeration(m.moderation()); err != nil {
			n.log.Warn("ignoring a moderation", "peer", ev.From, "room", ev.Room, "action", m.Action, "err", err)
		}
	}
}

// addChat hands chat records from node to the engine room, if open here.
func (n *Node) addChat(node, room string, recs []chatRecord) {
	r := n.engine.Room(room)
	if r == nil {
		return
	}
	msgs := make([]sfu.ChatMessage, 0, len(recs))
	for _, rec := range recs {
		msgs = append(msgs, rec.message())
	}
	if bad, err := r.AddRemoteChat(msgs); bad > 0 && err == nil {
		n.log.Warn("ignoring malformed chat messages", "peer", node, "room", room, "count", bad)
	}
}

// presence hands each alive origin's announced participants to the engine
// room and forgets origins that are gone. Watch goroutine only.
// Origins whose pushed state did not change since it was handed over
// are skipped.
func (w *roomWatch) presence(origins map[string]originInfo) {
	type pushed struct {
		state announcedState
		ps    []sfu.ParticipantInfo
	}
	w.mu.Lock()
	want := make(map[string]pushed)
	for node, c := range w.contrib {
		o, alive := origins[node]
		if !alive || !c.pushed || !c.life.Equal(o.life) {
			continue
		}
		want[node] = pushed{announcedState{life: c.life, seq: c.seq}, c.participants}
	}
	w.mu.Unlock()
	for node := range w.announced {
		if _, ok := want[node]; !ok {
			_ = w.room.SetRemoteParticipants(node, nil)
			delete(w.announced, node)
		}
	}
	for node, p := range want {
		if cur, ok := w.announced[node]; ok && cur.seq == p.state.seq && cur.life.Equal(p.state.life) {
			continue
		}
		_ = w.room.SetRemoteParticipants(node, p.ps)
		w.announced[node] = p.state
	}
}

// announcedState identifies the pushed state whose participants were
// handed to the engine room.
type announcedState struct {
	life time.Time
	seq  uint64
}

// decodeStateParticipants decodes the participants of st.
func decodeStateParticipants(st roomState) []sfu.ParticipantInfo {
	out := make([]sfu.ParticipantInfo, 0, len(st.Participants))
	for _, p := range st.Participants {
		if validWireID(p.ID) && len(p.Name) <= 256 {
			out = append(out, p.info())
		}
	}
	return out
}
