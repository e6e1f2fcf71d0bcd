package sfu

import (
	"fmt"
	"log/slog"
	"sort"
	"sync"
)

// Room is a named set of participants and producers. It exists while it has
// at least one LOCAL participant and is removed (closing its remote
// producers too) when the last local participant leaves. Rooms are created
// by Engine.Join; all methods are safe for concurrent use and never call
// out while holding the room lock. Changes are handed to the local
// participants by appending actions to their queues while the room lock is
// held, so every participant sees them in the room's order; the work
// (consumers, events, offers) runs on each participant's own goroutine.
// Lock order: Engine.mu before Room.mu; Room.mu is never held while taking
// Participant.mu or Producer.mu, only the queues' leaf locks.
type Room struct {
	e    *Engine
	name string
	log  *slog.Logger

	// openReported is closed by the Join that reported Observer.RoomOpened,
	// so that RoomClosed is never reported before it.
	openReported chan struct{}
	// closedReported is closed once the room is closed, RoomClosed (if due)
	// was reported and the engine forgot the room; a Join for the same name
	// waits for it, so that the Observer never sees two open rooms of one
	// name.
	closedReported chan struct{}

	mu        sync.Mutex // guards the fields below
	closed    bool
	opened    bool   // a first local participant was added
	seq       uint64 // join/publish order, for stable listings
	locals    map[string]*Participant
	remotes   map[string]*remoteParticipant
	producers map[string]*Producer
	chat      chatLog
	locked    bool     // ModLock: only admins join
	modSeen   []string // ids of applied moderations (ring), against duplicates
}

// remoteParticipant is a participant of another node, known through the
// presence its node announces (SetRemoteParticipants) and through its
// piped producers; it is in the room while either holds it.
type remoteParticipant struct {
	info      ParticipantInfo
	seq       uint64
	producers int
	announced bool // listed by SetRemoteParticipants of its origin
}

func newRoom(e *Engine, name string) *Room {
	return &Room{
		e:              e,
		name:           name,
		log:            e.log.With("room", name),
		openReported:   make(chan struct{}),
		closedReported: make(chan struct{}),
		locals:         make(map[string]*Participant),
		remotes:        make(map[string]*remoteParticipant),
		producers:      make(map[string]*Producer),
	}
}

// Name returns the room name.
func (r *Room) Name() string { return r.name }

func (r *Room) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

type seqInfo struct {
	seq  uint64
	info ParticipantInfo
}

func sortedInfos(s []seqInfo) []ParticipantInfo {
	sort.Slice(s, func(i, j int) bool { return s[i].seq < s[j].seq })
	out := make([]ParticipantInfo, len(s))
	for i := range s {
		out[i] = s[i].info
	}
	return out
}

// participantsLocked lists local and remote participants except skip and
// hidden ones, in join order. Caller holds r.mu.
func (r *Room) participantsLocked(skip *Participant, withRemote bool) []ParticipantInfo {
	s := make([]seqInfo, 0, len(r.locals)+len(r.remotes))
	for _, p := range r.locals {
		if p != skip && !p.hidden {
			s = append(s, seqInfo{p.seq, p.cur})
		}
	}
	if withRemote {
		for _, rp := range r.remotes {
			s = append(s, seqInfo{rp.seq, rp.info})
		}
	}
	return sortedInfos(s)
}

// producersLocked lists producers not owned by skip, in publish order.
// Caller holds r.mu.
func (r *Room) producersLocked(skip *Participant) []*Producer {
	out := make([]*Producer, 0, len(r.producers))
	for _, p := range r.producers {
		if skip == nil || p.owner != skip {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// targetsLocked returns the local participants except skip.
// Caller holds r.mu.
func (r *Room) targetsLocked(skip *Participant) []*Participant {
	out := make([]*Participant, 0, len(r.locals))
	for _, p := range r.locals {
		if p != skip {
			out = append(out, p)
		}
	}
	return out
}

// enqueueLocked appends acts, in order, to the queue of every local
// participant except skip, and returns those whose queue overflowed (the
// caller closes them with closeOverflowed once it released r.mu). Never
// blocks. Caller holds r.mu.
func (r *Room) enqueueLocked(skip *Participant, acts ...action) (overflowed []*Participant) {
	for _, p := range r.locals {
		if p == skip {
			continue
		}
		for _, a := range acts {
			if p.enqueue(a) {
				overflowed = append(overflowed, p)
				break
			}
		}
	}
	return overflowed
}

// closeOverflowed closes the participants whose queue overflowed
// (asynchronously). Called without r.mu held.
func closeOverflowed(ps []*Participant) {
	for _, p := range ps {
		p.overflowed()
	}
}

// Participants returns a snapshot of local and remote participants (remote
// ones derived from piped producers), in join order.
func (r *Room) Participants() []ParticipantInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participantsLocked(nil, true)
}

// LocalParticipants returns a snapshot of the participants connected to
// this node, in join order.
func (r *Room) LocalParticipants() []ParticipantInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.participantsLocked(nil, false)
}

// localParticipants returns the local participant objects.
func (r *Room) localParticipants() []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.targetsLocked(nil)
}

// Producers returns a snapshot of local and remote producers, in publish
// order.
func (r *Room) Producers() []ProducerInfo {
	r.mu.Lock()
	ps := r.producersLocked(nil)
	r.mu.Unlock()
	return producerInfos(ps)
}

func producerInfos(ps []*Producer) []ProducerInfo {
	out := make([]ProducerInfo, len(ps))
	for i, p := range ps {
		out[i] = p.info
	}
	return out
}

// Producer returns the producer with that ID, or nil.
func (r *Room) Producer(id string) *Producer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.producers[id]
}

// AddProducer adds a producer that comes from elsewhere (a remote node).
// info.Remote must be true and info.Origin, ID, ParticipantID and
// Codec.MimeType set (else ErrInvalidArgument); Kind is derived from the
// codec when empty. The ID must be unique in the room (ErrDuplicateProducer).
// If info.ParticipantID is not yet in the room a remote participant is
// created (local participants get participant-joined); when its last remote
// producer closes it is removed (participant-left). Local participants get
// producer-added and a consumer, on their own goroutines (AddProducer does
// not wait for them). Returns ErrRoomClosed if the room is gone.
// kr (may be nil) receives throttled keyframe requests. The caller feeds RTP
// with WriteRTP and calls Close when the source goes away. Remote producers
// are not reported to the Observer.
func (r *Room) AddProducer(info ProducerInfo, kr KeyframeRequester) (*Producer, error) {
	if info.Kind == "" {
		info.Kind = KindOf(info.Codec.MimeType)
	}
	switch {
	case !info.Remote, info.Origin == "", info.ID == "", info.ParticipantID == "",
		info.Codec.MimeType == "", KindOf(info.Codec.MimeType) == "", info.Kind != KindOf(info.Codec.MimeType):
		return nil, fmt.Errorf("sfu: add producer %q: %w: need Remote, Origin, ID, ParticipantID and a matching audio/video codec",
			info.ID, ErrInvalidArgument)
	}
	prod, err := newProducer(r, info, kr, nil)
	if err != nil {
		return nil, fmt.Errorf("sfu: add producer %q: %w", info.ID, err)
	}
	if err := prod.register(); err != nil {
		prod.Close()
		return nil, fmt.Errorf("sfu: add producer %q: %w", info.ID, err)
	}
	return prod, nil
}

// addParticipant registers a new local participant. It returns whether it
// is the room's first, and a consistent snapshot of the others and their
// producers. The others get participant-joined (unless p is hidden).
// replaced lists the participants of the same identity, for the caller to
// close with ErrReplaced.
func (r *Room) addParticipant(p *Participant) (first bool, peers []ParticipantInfo, producers []*Producer, replaced []*Participant, err error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false, nil, nil, nil, ErrRoomClosed
	}
	if r.locked && !p.admin {
		r.mu.Unlock()
		return false, nil, nil, nil, ErrRoomLocked
	}
	if p.identity != "" {
		for _, o := range r.locals {
			if o.identity == p.identity {
				replaced = append(replaced, o)
			}
		}
	}
	if len(r.locals)-len(replaced) >= r.e.cfg.MaxParticipantsPerRoom {
		r.mu.Unlock()
		return false, nil, nil, nil, ErrRoomFull
	}
	first = !r.opened
	r.opened = true
	r.seq++
	p.seq = r.seq
	var over []*Participant
	if !p.hidden {
		over = r.enqueueLocked(nil, action{kind: actJoined, info: p.cur})
	}
	r.locals[p.id] = p
	peers = r.participantsLocked(p, true)
	producers = r.producersLocked(p)
	p.initChat = r.chatLocked()
	r.mu.Unlock()
	closeOverflowed(over)
	return first, peers, producers, replaced, nil
}

// removeParticipant unregisters a local participant (after its producers
// were closed). The others get participant-left. When it was the last local
// participant, the room closes: remaining (remote) producers are closed,
// the engine forgets the room and the Observer gets RoomClosed.
func (r *Room) removeParticipant(p *Participant) {
	r.mu.Lock()
	if r.locals[p.id] != p {
		r.mu.Unlock()
		return
	}
	delete(r.locals, p.id)
	var over []*Participant
	if !p.hidden {
		over = r.enqueueLocked(nil, action{kind: actLeft, info: p.cur})
	}
	info := p.cur
	last := len(r.locals) == 0 && !r.closed
	var rest []*Producer
	if last {
		r.closed = true
		rest = r.producersLocked(nil)
	}
	r.mu.Unlock()
	closeOverflowed(over)
	if o := r.e.getObserver(); o != nil && !p.hidden {
		o.ParticipantChanged(r, info, false)
	}
	if !last {
		return
	}
	for _, prod := range rest {
		prod.Close()
	}
	<-r.openReported
	if o := r.e.getObserver(); o != nil {
		o.RoomClosed(r.name)
	}
	r.e.removeRoom(r)
	close(r.closedReported)
	r.log.Debug("room closed")
}

// closeLocals closes every local participant with reason (Engine.Close).
// All of them stop first, so that none gets events or subscriber offers
// caused by the others leaving: closing a room of N participants costs
// O(N) events and no offers (instead of O(N^2) offers).
func (r *Room) closeLocals(reason error) {
	ps := r.localParticipants()
	for _, p := range ps {
		p.stop()
	}
	for _, p := range ps {
		p.closeWith(reason)
	}
}

// closeIfEmpty closes the room if it has no local participant (a Join that
// created it failed, or Engine.Close). RoomClosed is not reported: either
// RoomOpened never was, or the last participant's removal reported it.
func (r *Room) closeIfEmpty() {
	r.mu.Lock()
	if r.closed || len(r.locals) > 0 {
		r.mu.Unlock()
		return
	}
	r.closed = true
	rest := r.producersLocked(nil)
	r.mu.Unlock()
	for _, prod := range rest {
		prod.Close()
	}
	r.e.removeRoom(r)
	close(r.closedReported)
}

// addProducer registers prod (local or remote) and hands it to every other
// local participant (producer-added + consumer). Local producers are
// reported to the Observer.
func (r *Room) addProducer(prod *Producer) error {
	info := prod.info
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		return ErrRoomClosed
	case r.producers[info.ID] != nil:
		r.mu.Unlock()
		return ErrDuplicateProducer
	case prod.owner != nil && r.locals[prod.owner.id] != prod.owner:
		r.mu.Unlock()
		return ErrParticipantClosed
	case prod.owner == nil && r.locals[info.ParticipantID] != nil:
		r.mu.Unlock()
		return fmt.Errorf("%w: participant %q is local", ErrInvalidArgument, info.ParticipantID)
	}
	acts := make([]action, 0, 2)
	if prod.owner == nil {
		rp := r.remotes[info.ParticipantID]
		if rp == nil {
			r.seq++
			rp = &remoteParticipant{
				info: ParticipantInfo{ID: info.ParticipantID, Name: info.ParticipantName, Origin: info.Origin, Remote: true},
				seq:  r.seq,
			}
			r.remotes[info.ParticipantID] = rp
			acts = append(acts, action{kind: actJoined, info: rp.info})
		}
		rp.producers++
	}
	r.seq++
	prod.seq = r.seq
	r.producers[info.ID] = prod
	acts = append(acts, action{kind: actProducerAdded, prod: prod})
	over := r.enqueueLocked(prod.owner, acts...)
	r.mu.Unlock()
	closeOverflowed(over)
	if prod.owner != nil {
		if o := r.e.getObserver(); o != nil {
			o.ProducerAdded(r, info)
		}
	}
	return nil
}

// removeProducer unregisters prod (called once by Producer.Close) and tells
// the other local participants (producer-removed, consumer removal,
// renegotiation; participant-left when a remote participant lost its last
// producer). Local producers are reported to the Observer.
func (r *Room) removeProducer(prod *Producer) {
	info := prod.info
	r.mu.Lock()
	if r.producers[info.ID] != prod {
		r.mu.Unlock()
		return
	}
	delete(r.producers, info.ID)
	acts := make([]action, 1, 2)
	acts[0] = action{kind: actProducerRemoved, prod: prod}
	if prod.owner == nil {
		if rp := r.remotes[info.ParticipantID]; rp != nil {
			rp.producers--
			if rp.producers <= 0 && !rp.announced {
				delete(r.remotes, info.ParticipantID)
				acts = append(acts, action{kind: actLeft, info: rp.info})
			}
		}
	}
	over := r.enqueueLocked(prod.owner, acts...)
	r.mu.Unlock()
	closeOverflowed(over)
	if prod.owner != nil {
		if o := r.e.getObserver(); o != nil {
			o.ProducerRemoved(r.name, info)
		}
	}
}
