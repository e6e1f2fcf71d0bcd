package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Viewer is a receive-only session whose client makes the offer (WHEP):
// unlike a Participant's subscriber connection, which the engine offers,
// the viewer's peer connection answers the client's recvonly offer with
// one audio and one video sender, and the viewer moves those two senders
// between producers: those of the participant it follows
// (ViewerParams.Follow) or of the room's active speaker. A move replaces
// the sender's track (the producer's fan-out track, as for every
// consumer) and continues the sender's numbering, so the client sees one
// stream per kind. The viewer joins its room as a hidden participant that
// subscribes to nothing (it learns of producers and speakers from the
// events) and owns one goroutine, which applies those events; the
// engine's Close waits for it. Created by Engine.View; ends with Close,
// when its peer connection fails or closes, or when the engine closes its
// participant (EventClosed). Methods are safe for concurrent use.
type Viewer struct {
	e      *Engine
	log    *slog.Logger
	pc     *webrtc.PeerConnection
	part   *Participant
	follow string // participant name or ID; "" the active speaker
	slots  []*viewerSlot

	events    chan Event    // from the participant's handler (HandleEvent)
	stop      chan struct{} // closed by Close or a failed connection
	stopOnce  sync.Once
	done      chan struct{} // closed when the goroutine finished
	dropped   atomic.Uint64 // events dropped because the queue was full
	connected atomic.Bool

	// Owned by the goroutine.
	peers     map[string]ParticipantInfo // other participants by ID
	producers map[string]ProducerInfo    // the room's producers by ID
	showing   string                     // ID of the participant shown; "" none

	negMu sync.Mutex // serialises Renegotiate

	mu  sync.Mutex // guards err
	err error
}

// viewerSlot is one of the viewer's senders and the consumer feeding it.
type viewerSlot struct {
	kind   Kind
	sender *webrtc.RTPSender
	ssrc   uint32
	cur    atomic.Pointer[Consumer]
	wg     sync.WaitGroup // the RTCP reader
}

// ViewerParams are the arguments of Engine.View.
type ViewerParams struct {
	// Name is the display name of the viewer's hidden participant (logs).
	Name string
	// Follow is the name or ID of the participant whose media the viewer
	// receives; "" follows the active speaker (the participant that spoke
	// last; until someone speaks, the first publisher).
	Follow string
}

// viewerQueue is how many engine events a viewer buffers; the events are
// few (producers and speaking changes), more are dropped and logged.
const viewerQueue = 256

// View answers a WHEP client's offer (recvonly audio and/or video) with a
// new Viewer in room (created if needed) and its answer, with all
// candidates. Errors: ErrInvalidSDP (wrapped) for a malformed or unusable
// offer, those of Engine.Join (ErrRoomFull, ErrRoomLocked, ...),
// ErrEngineClosed.
func (e *Engine) View(room string, offer webrtc.SessionDescription, params ViewerParams) (*Viewer, webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if err := checkSDP(offer, webrtc.SDPTypeOffer); err != nil {
		return nil, none, fmt.Errorf("sfu: view: %w", err)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, none, ErrEngineClosed
	}
	pc, err := e.tr.newRestartablePeerConnection() // WHEP clients restart ICE over HTTP
	if err != nil {
		return nil, none, err
	}
	v := &Viewer{
		e: e, pc: pc, follow: params.Follow,
		log:       e.log.With("room", room, "viewer", params.Name),
		events:    make(chan Event, viewerQueue),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		peers:     make(map[string]ParticipantInfo),
		producers: make(map[string]ProducerInfo),
	}
	answer, err := v.negotiate(offer)
	if err != nil {
		_ = pc.Close()
		return nil, none, err
	}
	part, err := e.Join(room, JoinParams{Name: params.Name, Events: v, Hidden: true, NoSubscribe: true})
	if err != nil {
		_ = pc.Close()
		return nil, none, err
	}
	v.part = part
	v.log = v.log.With("participant", part.ID())
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			v.connected.Store(true)
			v.HandleEvent(Event{Type: EventConnectionState, State: s.String()})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			v.end(fmt.Errorf("%w: viewer peer connection %s", ErrConnectionFailed, s))
		}
	})
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		part.Close()
		_ = pc.Close()
		return nil, none, ErrEngineClosed
	}
	e.wg.Add(1)
	e.mu.Unlock()
	for _, s := range v.slots {
		s.wg.Add(1)
		go v.readRTCP(s)
	}
	go func() {
		defer e.wg.Done()
		v.run()
	}()
	return v, answer, nil
}

// negotiate creates the two senders, applies the offer and returns the
// answer once gathering completed.
func (v *Viewer) negotiate(offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		tr, err := v.pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return none, fmt.Errorf("sfu: view: add %s sender: %w", k, err)
		}
		s := &viewerSlot{kind: Kind(k.String()), sender: tr.Sender()}
		if enc := tr.Sender().GetParameters().Encodings; len(enc) > 0 {
			s.ssrc = uint32(enc[0].SSRC)
		}
		v.slots = append(v.slots, s)
	}
	return v.answer(offer)
}

// answer applies an offer of the client and returns the answer once
// gathering completed (or gatherTimeout passed, or the viewer ended).
func (v *Viewer) answer(offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if err := v.pc.SetRemoteDescription(offer); err != nil {
		return none, fmt.Errorf("sfu: view: %w: %w", ErrInvalidSDP, err)
	}
	answer, err := v.pc.CreateAnswer(nil)
	if err != nil {
		return none, fmt.Errorf("sfu: view: %w: create answer: %w", ErrInvalidSDP, err)
	}
	gathered := webrtc.GatheringCompletePromise(v.pc)
	if err := v.pc.SetLocalDescription(answer); err != nil {
		return none, fmt.Errorf("sfu: view: %w: set local description: %w", ErrInvalidSDP, err)
	}
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-v.stop:
	case <-t.C:
		v.log.Warn("ice gathering timed out")
	}
	ld := v.pc.LocalDescription()
	if ld == nil {
		return none, fmt.Errorf("sfu: view: %w: no local description", ErrWrongState)
	}
	return *ld, nil
}

// Renegotiate answers a new offer of the viewer's client on the existing
// connection: a WHEP ICE restart, whose offer has new ICE credentials and
// the media sections of the first. pion restarts ICE (new local
// credentials and candidates, in the answer); the senders and their
// numbering stay. pion cannot roll back an offer it refused after taking
// it (a bad candidate, say): the connection keeps its ICE session but
// cannot be renegotiated again, so callers check what they can first.
// Errors: ErrInvalidSDP (wrapped), ErrParticipantClosed once the viewer
// ended.
func (v *Viewer) Renegotiate(offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if err := checkSDP(offer, webrtc.SDPTypeOffer); err != nil {
		return none, fmt.Errorf("sfu: viewer renegotiate: %w", err)
	}
	v.negMu.Lock()
	defer v.negMu.Unlock()
	select {
	case <-v.stop:
		return none, ErrParticipantClosed
	default:
	}
	answer, err := v.answer(offer)
	if err != nil {
		select {
		case <-v.stop:
			return none, ErrParticipantClosed
		default:
		}
		return none, err
	}
	return answer, nil
}

// HandleEvent implements EventHandler for the viewer's participant: it
// queues the event for the viewer's goroutine and never blocks (a full
// queue drops the event, counted and logged by the goroutine).
func (v *Viewer) HandleEvent(ev Event) {
	if ev.Type == EventClosed {
		v.end(ev.Err)
		return
	}
	select {
	case v.events <- ev:
	default:
		v.dropped.Add(1)
	}
}

// ID returns the ID of the viewer's hidden participant.
func (v *Viewer) ID() string { return v.part.ID() }

// Done is closed once the viewer has ended and released everything.
func (v *Viewer) Done() <-chan struct{} { return v.done }

// Err returns, once Done is closed, why the viewer ended (nil after
// Close).
func (v *Viewer) Err() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// Showing returns the ID of the participant whose media the viewer
// forwards now ("" none).
func (v *Viewer) Showing() string {
	for _, s := range v.slots {
		if c := s.cur.Load(); c != nil {
			return c.producer.info.ParticipantID
		}
	}
	return ""
}

// Connected reports whether the viewer's peer connection has connected.
func (v *Viewer) Connected() bool { return v.connected.Load() }

// AddICECandidate adds a trickled client candidate (WHEP PATCH). An empty
// candidate (end of candidates) is ignored. Errors: ErrInvalidArgument for
// a bad candidate, ErrParticipantClosed once the viewer ended.
func (v *Viewer) AddICECandidate(c webrtc.ICECandidateInit) error {
	if c.Candidate == "" {
		return nil
	}
	select {
	case <-v.stop:
		return ErrParticipantClosed
	default:
	}
	if err := v.pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("sfu: viewer candidate: %w: %w", ErrInvalidArgument, err)
	}
	return nil
}

// Close ends the viewer and waits until it released its consumers, peer
// connection and participant. Idempotent. Not to be called from an
// EventHandler.
func (v *Viewer) Close() {
	v.end(nil)
	<-v.done
}

// end stops the goroutine, recording why (the first reason wins).
func (v *Viewer) end(reason error) {
	v.stopOnce.Do(func() {
		v.mu.Lock()
		v.err = reason
		v.mu.Unlock()
		close(v.stop)
	})
}

// run applies the room's changes until the viewer ends, then releases it.
func (v *Viewer) run() {
	defer close(v.done)
	defer v.release()
	peers, producers := v.part.InitialState()
	for _, p := range peers {
		v.peers[p.ID] = p
	}
	for _, p := range producers {
		v.producers[p.ID] = p
	}
	v.pick()
	var lastDrop uint64
	for {
		select {
		case <-v.stop:
			return
		case ev := <-v.events:
			v.apply(ev)
		}
		if n := v.dropped.Load(); n != lastDrop {
			v.log.Warn("viewer: events dropped (queue full)", "total", n)
			lastDrop = n
			v.pick()
		}
	}
}

// apply records one event and re-decides what to show.
func (v *Viewer) apply(ev Event) {
	switch ev.Type {
	case EventParticipantJoined, EventParticipantUpdated:
		v.peers[ev.Participant.ID] = *ev.Participant
	case EventParticipantLeft:
		delete(v.peers, ev.Participant.ID)
	case EventProducerAdded:
		v.producers[ev.Producer.ID] = *ev.Producer
	case EventProducerRemoved:
		delete(v.producers, ev.Producer.ID)
	case EventConnectionState:
		for _, s := range v.slots {
			if c := s.cur.Load(); c != nil {
				c.release()
			}
		}
		return
	default:
		return
	}
	v.pick()
}

// pick chooses the participant to show and moves the senders to its
// producers.
func (v *Viewer) pick() {
	want := v.choose()
	for _, s := range v.slots {
		var target *Producer
		if want != "" {
			for id, info := range v.producers {
				if info.ParticipantID == want && info.Kind == s.kind && (target == nil || sourceRank(info.Source) < sourceRank(target.info.Source)) {
					if prod := v.part.room.Producer(id); prod != nil {
						target = prod
					}
				}
			}
		}
		v.moveSlot(s, target)
	}
	v.showing = want
}

// sourceRank orders the sources a viewer prefers: camera and microphone
// before screen share.
func sourceRank(src string) int {
	if src == SourceScreen || src == SourceScreenAudio {
		return 1
	}
	return 0
}

// choose returns the ID of the participant to show: the followed one
// (when present), else the one speaking now, else the one shown (while it
// still publishes), else the first publisher.
func (v *Viewer) choose() string {
	publishes := func(id string) bool {
		for _, p := range v.producers {
			if p.ParticipantID == id {
				return true
			}
		}
		return false
	}
	if v.follow != "" {
		for id, p := range v.peers {
			if id == v.follow || strings.EqualFold(p.Name, v.follow) {
				return id
			}
		}
		return ""
	}
	if p, ok := v.peers[v.showing]; ok && p.Speaking && publishes(v.showing) {
		return v.showing
	}
	for id, p := range v.peers {
		if p.Speaking && publishes(id) {
			return id
		}
	}
	if v.showing != "" && publishes(v.showing) {
		return v.showing
	}
	for _, p := range v.part.room.Producers() { // in publish order
		if _, ok := v.producers[p.ID]; ok {
			return p.ParticipantID
		}
	}
	return ""
}

// moveSlot makes s forward prod (nil: nothing), continuing its numbering.
func (v *Viewer) moveSlot(s *viewerSlot, prod *Producer) {
	old := s.cur.Load()
	if old != nil && old.producer == prod && !prod.isClosed() {
		return
	}
	var cont munger
	var haveCont bool
	if old != nil {
		s.cur.Store(nil)
		old.Close() // also when its producer closed it already
		cont, haveCont = old.cont, old.hasCont
	}
	if prod == nil {
		return
	}
	if !v.senderTakes(s, prod) {
		v.log.Info("viewer: codec not negotiated, not forwarded", "producer", prod.info.ID, "mime", prod.info.Codec.MimeType)
		return
	}
	c, err := prod.attachConsumer(v.pc, true, func(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
		if haveCont {
			prod.track.seed(s.ssrc, cont)
		}
		return s.sender, s.sender.ReplaceTrack(t)
	})
	if err != nil {
		if !errors.Is(err, ErrProducerClosed) {
			v.log.Warn("viewer: forward failed", "producer", prod.info.ID, "err", err)
		}
		return
	}
	c.SetLayer(prod.Layers() - 1) // no allocator: the best layer
	if !v.connected.Load() {
		c.hold() // released on EventConnectionState
	}
	s.cur.Store(c)
	v.log.Debug("viewer: forwarding", "producer", prod.info.ID, "kind", s.kind, "participant", prod.info.ParticipantID)
}

// senderTakes reports whether s's negotiated codecs include prod's (RED
// audio goes to an Opus-only sender as Opus).
func (v *Viewer) senderTakes(s *viewerSlot, prod *Producer) bool {
	params := s.sender.GetParameters().Codecs
	if _, ok := matchCodec(prod.track.codec, params); ok {
		return true
	}
	if isRED(prod.track.codec.MimeType) {
		_, ok := matchCodec(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, params)
		return ok
	}
	return false
}

// readRTCP reads the RTCP of s's sender for the whole session and hands
// it to the consumer feeding the sender at the time.
func (v *Viewer) readRTCP(s *viewerSlot) {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	var last *Consumer
	for {
		n, _, err := s.sender.Read(buf)
		if err != nil {
			return
		}
		if c := s.cur.Load(); c != nil {
			c.onRTCP(buf[:n], c != last)
			last = c
		}
	}
}

// release closes the consumers, the peer connection and the participant.
func (v *Viewer) release() {
	for _, s := range v.slots {
		if c := s.cur.Swap(nil); c != nil {
			c.Close()
		}
	}
	_ = v.pc.Close()
	for _, s := range v.slots {
		_ = s.sender.Stop()
		s.wg.Wait()
	}
	v.part.Close()
	v.log.Info("viewer closed", "reason", v.Err())
}
