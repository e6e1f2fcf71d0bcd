package sfu

import (
	"golang.org/x/time/rate"

	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// gatherTimeout bounds the wait for ICE gathering before an SDP is handed
// out (host candidates on the UDP mux are gathered immediately).
const gatherTimeout = 10 * time.Second

// subscriber PC negotiation states.
type subState int

const (
	subIdle     subState = iota // stable, no offer outstanding
	subOffering                 // creating an offer
	subAwaiting                 // offer sent, waiting for SetSubscriberAnswer
	subApplying                 // applying an answer
)

// Participant is one client (browser or pion) connected to this node, with
// two peer connections: the publisher PC (client offers via Publish, server
// answers) and the subscriber PC (server offers via EventSubscriberOffer,
// client answers via SetSubscriberAnswer). Each participant has its own
// goroutine that applies the room's changes in order from a queue (see
// loop.go): it adds and drops consumers, calls the EventHandler and makes
// the subscriber offers. Subscriber renegotiation is debounced (changes
// within negotiationDelay share one offer) and serialised: while an offer
// is outstanding changes are only recorded, and a new offer is made after
// the answer. Created by Engine.Join; ends with Close, an engine-initiated
// close (EventClosed) or Engine.Close. All methods are safe for concurrent
// use; Publish and SetSubscriberAnswer are meant to be called from the
// signaling read loop (one at a time).
type Participant struct {
	e      *Engine
	room   *Room
	id     string
	info   ParticipantInfo
	log    *slog.Logger
	events EventHandler
	// From JoinParams: identity (unique per room on this node), hidden
	// (not listed to others), noSubscribe (no consumers).
	identity    string
	hidden      bool
	noSubscribe bool
	restartsICE bool  // JoinParams.RestartsICE
	admin       bool  // may join a locked room
	closeReason error // why the engine closed it (Err); guarded by mu
	// sub is the subscriber PC, created with the first consumer (a
	// participant with nothing to receive, e.g. alone in its room, costs
	// no PeerConnection); subMu serialises its creation with closing.
	subMu sync.Mutex
	sub   atomic.Pointer[webrtc.PeerConnection]

	seq uint64 // join order; guarded by room.mu
	// cur is info with the current media state; guarded by room.mu.
	cur ParticipantInfo
	// initChat is the room's chat history when the participant joined
	// (InitialChat); set by Room.addParticipant before start.
	initChat []ChatMessage
	// chatLimit limits the participant's chat messages (SendChat).
	chatLimit *rate.Limiter
	pubLimit  *publishLimit // Config.MaxPublishBitrate; nil: no cap
	// sources names the source of each m-line of the publisher PC
	// (SetSources); guarded by mu.
	sources map[string]string

	closingCh chan struct{}  // closed when closing starts
	done      chan struct{}  // closed when closing completed
	wg        sync.WaitGroup // producer reader goroutines (pion onTrack)
	// queue holds the actions for the participant's goroutine (run),
	// counted in loop; closeWith stops it (closingCh) and waits for it.
	queue *actionQueue
	loop  sync.WaitGroup
	// ops counts in-flight pion operations on the PCs (Publish, subscriber
	// offer/answer, candidates); Close waits for them before closing the
	// PCs, so that no PC is closed in the middle of starting ICE gathering.
	ops sync.WaitGroup

	mu            sync.Mutex // guards the fields below
	closing       bool       // no more events, offers, consumers or producers
	closeStarted  bool       // closeWith ran (closing may be set earlier by stop)
	pubPC         *webrtc.PeerConnection
	publishing    bool
	producers     map[string]*Producer // own local producers by ID
	pubTracks     map[*webrtc.RTPReceiver]*pubTrack
	consumers     map[string]*Consumer // by producer ID
	subState      subState
	subPending    bool // the consumer set changed while not idle
	subHadTracks  bool // at least one consumer was ever added
	initPeers     []ParticipantInfo
	initProducers []ProducerInfo
	videoSettings map[string]VideoSettings // by producer ID (SetVideoSettings)
	allocScratch  []videoConsumer

	alloc allocator                    // owned by the participant's goroutine
	bwe   atomic.Pointer[bweEstimator] // the subscriber PC's bandwidth estimator
}

// newParticipant creates a participant; it is not yet in the room (abort
// undoes it). Its subscriber PC is created with its first consumer
// (subscriberPC).
func newParticipant(r *Room, params JoinParams) (*Participant, error) {
	id := newID()
	since := time.Now().UnixMilli()
	p := &Participant{
		e:    r.e,
		room: r,
		id:   id,
		info: ParticipantInfo{ID: id, Name: params.Name, Origin: r.e.cfg.NodeID, Identity: params.Identity, Since: since},
		cur: ParticipantInfo{ID: id, Name: params.Name, Origin: r.e.cfg.NodeID, Identity: params.Identity, Since: since,
			AudioMuted: params.State.AudioMuted, VideoMuted: params.State.VideoMuted},
		identity:    params.Identity,
		hidden:      params.Hidden,
		noSubscribe: params.NoSubscribe,
		restartsICE: params.RestartsICE,
		admin:       params.Admin,
		chatLimit:   rate.NewLimiter(rate.Limit(r.e.cfg.ChatRate), r.e.cfg.ChatBurst),
		log:         r.log.With("participant", id),
		events:      params.Events,
		closingCh:   make(chan struct{}),
		done:        make(chan struct{}),
		queue:       newActionQueue(),
		producers:   make(map[string]*Producer),
		pubTracks:   make(map[*webrtc.RTPReceiver]*pubTrack),
		consumers:   make(map[string]*Consumer),
		pubLimit:    newPublishLimit(r.e.cfg.MaxPublishBitrate),

		videoSettings: make(map[string]VideoSettings),
	}
	return p, nil
}

// subscriberPC returns the subscriber PC, creating it on first use.
// Errors: ErrParticipantClosed, or the PC's creation failed.
func (p *Participant) subscriberPC() (*webrtc.PeerConnection, error) {
	if pc := p.sub.Load(); pc != nil {
		return pc, nil
	}
	p.subMu.Lock()
	defer p.subMu.Unlock()
	if pc := p.sub.Load(); pc != nil {
		return pc, nil
	}
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing { // closeWith reads sub under subMu after setting closing
		return nil, ErrParticipantClosed
	}
	pc, est, err := p.e.tr.newEstimatedPeerConnection()
	if err != nil {
		return nil, fmt.Errorf("sfu: subscriber peer connection: %w", err)
	}
	// Before the first TWCC feedback this is the estimator's initial
	// value; a subscriber that never sends feedback stays there.
	p.bwe.Store(est)
	pc.OnConnectionStateChange(p.stateHandler(TargetSubscriber, pc))
	p.sub.Store(pc)
	return pc, nil
}

// closeSubscriberPC closes the subscriber PC if it was created; called once
// closing is set, so none is created afterwards.
func (p *Participant) closeSubscriberPC() {
	p.subMu.Lock()
	pc := p.sub.Load()
	p.subMu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

// abort releases a participant that never entered its room.
func (p *Participant) abort() {
	p.mu.Lock()
	p.closeStarted = true
	p.stopLocked()
	p.mu.Unlock()
	p.closeSubscriberPC()
	close(p.done)
}

// stopLocked sets closing: from now on the participant emits no event
// (except a final EventClosed), makes no offer and takes no new consumer or
// producer, and its goroutine stops. Caller holds p.mu.
func (p *Participant) stopLocked() {
	if !p.closing {
		p.closing = true
		close(p.closingCh)
	}
}

// stop is stopLocked for callers that do not hold p.mu: used before a room
// closes all its participants, so that none of them gets events or offers
// caused by the others leaving.
func (p *Participant) stop() {
	p.mu.Lock()
	p.stopLocked()
	p.mu.Unlock()
}

// start records the join snapshot and starts the participant's goroutine,
// which subscribes to the snapshot's producers and sends the first
// subscriber offer if there is something to receive, then applies the
// changes queued since the snapshot.
func (p *Participant) start(peers []ParticipantInfo, producers []*Producer) {
	p.mu.Lock()
	p.initPeers = peers
	p.initProducers = producerInfos(producers)
	if !p.closing { // closeWith waits for loop only after setting closing
		p.loop.Add(1)
		go p.run(producers)
	}
	p.mu.Unlock()
	p.log.Info("participant joined", "name", p.info.Name)
}

// ID returns the participant ID (random, URL-safe).
func (p *Participant) ID() string { return p.id }

// Info returns the participant's description (immutable).
func (p *Participant) Info() ParticipantInfo { return p.info }

// Room returns the participant's room.
func (p *Participant) Room() *Room { return p.room }

// Done is closed when the participant is completely closed.
func (p *Participant) Done() <-chan struct{} { return p.done }

// Err returns, once Done is closed, why the engine closed the participant
// (the error of EventClosed, e.g. ErrReplaced); nil when it left (Close)
// or is still open.
func (p *Participant) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeReason
}

// InitialState returns the other participants and their producers as they
// were at the moment this participant joined; every later change is
// delivered as an event. Use it for the "joined" message. Addition to the
// spec.
func (p *Participant) InitialState() (peers []ParticipantInfo, producers []ProducerInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ParticipantInfo(nil), p.initPeers...), append([]ProducerInfo(nil), p.initProducers...)
}

// emit delivers ev unless the participant is closing. Called on the
// participant's goroutine only (so HandleEvent calls of one participant
// never overlap), never with p.mu held.
func (p *Participant) emit(ev Event) {
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if !closing {
		p.events.HandleEvent(ev)
	}
}

// checkSDP validates the type and syntax of a session description.
func checkSDP(sd webrtc.SessionDescription, want webrtc.SDPType) error {
	if sd.Type != want {
		return fmt.Errorf("%w: type %q, want %q", ErrInvalidSDP, sd.Type.String(), want.String())
	}
	parsed, err := sd.Unmarshal()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	if want == webrtc.SDPTypeOffer && len(parsed.MediaDescriptions) > MaxSources {
		return fmt.Errorf("%w: %d media sections, at most %d", ErrInvalidSDP, len(parsed.MediaDescriptions), MaxSources)
	}
	return nil
}

// waitGathering waits for ICE gathering (or closing, or a timeout).
func (p *Participant) waitGathering(ch <-chan struct{}) {
	t := time.NewTimer(gatherTimeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-p.closingCh:
	case <-t.C:
		p.log.Warn("ice gathering timed out")
	}
}

// Publish applies the client's offer on the publisher PC and returns the
// answer (with all server candidates). The first call creates the publisher
// PC; later calls renegotiate. Each incoming track becomes a Producer in the
// room once its first packet arrives. Errors: ErrInvalidSDP (wrapped) for a
// malformed or rejected offer, ErrWrongState for a concurrent Publish,
// ErrParticipantClosed.
func (p *Participant) Publish(offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	if err := checkSDP(offer, webrtc.SDPTypeOffer); err != nil {
		return none, fmt.Errorf("sfu: publish: %w", err)
	}
	p.mu.Lock()
	switch {
	case p.closing:
		p.mu.Unlock()
		return none, ErrParticipantClosed
	case p.publishing:
		p.mu.Unlock()
		return none, fmt.Errorf("sfu: publish: %w: publish already in progress", ErrWrongState)
	}
	p.publishing = true
	p.ops.Add(1)
	pc := p.pubPC
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.publishing = false
		p.mu.Unlock()
		p.ops.Done()
	}()

	created := false
	if pc == nil {
		var err error
		newPC := p.e.tr.newPeerConnection
		if p.restartsICE {
			newPC = p.e.tr.newRestartablePeerConnection
		}
		if pc, err = newPC(); err != nil {
			return none, fmt.Errorf("sfu: publish: %w", err)
		}
		pc.OnConnectionStateChange(p.stateHandler(TargetPublisher, pc))
		pc.OnTrack(p.onTrack)
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			_ = pc.Close()
			return none, ErrParticipantClosed
		}
		p.pubPC = pc
		p.mu.Unlock()
		created = true
	}
	// fail undoes a failed negotiation: a fresh PC is discarded, otherwise
	// the remote offer is rolled back so that the client can retry.
	fail := func(err error) (webrtc.SessionDescription, error) {
		if created {
			p.mu.Lock()
			if p.pubPC == pc {
				p.pubPC = nil
			}
			p.mu.Unlock()
			_ = pc.Close()
		} else if pc.SignalingState() == webrtc.SignalingStateHaveRemoteOffer {
			_ = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
		}
		return none, p.closedOr(err)
	}
	if err := pc.SetRemoteDescription(offer); err != nil {
		return fail(fmt.Errorf("sfu: publish: %w: %w", ErrInvalidSDP, err))
	}
	if !p.e.cfg.NoAudioRED {
		preferRED(pc)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("sfu: publish: %w: create answer: %w", ErrInvalidSDP, err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(fmt.Errorf("sfu: publish: %w: set local description: %w", ErrInvalidSDP, err))
	}
	p.waitGathering(gathered)
	ld := pc.LocalDescription()
	if ld == nil {
		return fail(fmt.Errorf("sfu: publish: %w: no local description", ErrWrongState))
	}
	out := *ld
	out.SDP = announceBitrate(out.SDP, p.e.cfg.MaxPublishBitrate)
	return out, nil
}

// SetSources names the sources of the publisher PC's m-lines (mid ->
// SourceCamera, SourceMicrophone, SourceScreen, SourceScreenAudio) for the
// producers created from them from now on; entries add to earlier ones.
// Call it before the Publish whose offer adds the m-lines. Errors:
// ErrInvalidArgument for an unknown source or more than 16 m-lines named.
func (p *Participant) SetSources(sources map[string]string) error {
	for mid, src := range sources {
		if !ValidSource(src) || mid == "" {
			return fmt.Errorf("sfu: sources: %w: %q for m-line %q", ErrInvalidArgument, src, mid)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sources == nil {
		p.sources = make(map[string]string, len(sources))
	}
	for mid, src := range sources {
		p.sources[mid] = src
	}
	if len(p.sources) > MaxSources {
		clear(p.sources)
		return fmt.Errorf("sfu: sources: %w: more than %d m-lines", ErrInvalidArgument, MaxSources)
	}
	return nil
}

// MaxSources bounds what one participant publishes: the m-lines of a
// publish offer (Publish refuses more with ErrInvalidSDP), the m-lines it
// names (SetSources) and its open producers (a track beyond it is
// ignored).
const MaxSources = 16

// closedOr returns ErrParticipantClosed if the participant is closing
// (the error was caused by closing), else err.
func (p *Participant) closedOr(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return ErrParticipantClosed
	}
	return err
}

// SetSubscriberAnswer applies the client's answer to the last
// EventSubscriberOffer. If the consumer set changed meanwhile a new offer
// follows (as an event, possibly before this returns). Errors: ErrInvalidSDP
// (wrapped; the offer stays outstanding), ErrWrongState when no offer is
// outstanding, ErrParticipantClosed.
func (p *Participant) SetSubscriberAnswer(answer webrtc.SessionDescription) error {
	if err := checkSDP(answer, webrtc.SDPTypeAnswer); err != nil {
		return fmt.Errorf("sfu: subscriber answer: %w", err)
	}
	p.mu.Lock()
	switch {
	case p.closing:
		p.mu.Unlock()
		return ErrParticipantClosed
	case p.subState != subAwaiting:
		p.mu.Unlock()
		return fmt.Errorf("sfu: subscriber answer: %w: no offer outstanding", ErrWrongState)
	}
	p.subState = subApplying
	p.ops.Add(1)
	p.mu.Unlock()
	defer p.ops.Done()

	pc := p.sub.Load() // an offer exists, so the PC does
	err := pc.SetRemoteDescription(answer)
	if err != nil {
		// Normally the offer stays outstanding and the client may answer
		// again; if pion already left have-local-offer, offer anew.
		reoffer := pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer
		p.mu.Lock()
		p.subState = subAwaiting
		if reoffer {
			p.subState = subIdle
		}
		closing := p.closing
		p.mu.Unlock()
		if closing {
			return ErrParticipantClosed
		}
		if reoffer {
			p.post(action{kind: actOffer})
		}
		return fmt.Errorf("sfu: subscriber answer: %w: %w", ErrInvalidSDP, err)
	}
	p.mu.Lock()
	p.subState = subIdle
	again := p.subPending
	p.mu.Unlock()
	if again {
		p.post(action{kind: actOffer})
	}
	return nil
}

// negotiate sends a subscriber offer now, or records that one is needed
// once the outstanding one is answered. No offer is made before the first
// consumer, nor once closing. Runs on the participant's goroutine only.
func (p *Participant) negotiate() {
	p.mu.Lock()
	if p.closing || !p.subHadTracks {
		p.mu.Unlock()
		return
	}
	if p.subState != subIdle {
		p.subPending = true
		p.mu.Unlock()
		return
	}
	p.subState = subOffering
	p.subPending = false
	p.ops.Add(1)
	p.mu.Unlock()

	offer, err := p.createSubscriberOffer()
	p.ops.Done()
	p.mu.Lock()
	if err != nil {
		p.subState = subIdle
		closing := p.closing
		p.mu.Unlock()
		if !closing {
			p.log.Error("subscriber offer failed, closing participant", "err", err)
			p.closeAsync(err)
		}
		return
	}
	p.subState = subAwaiting
	p.mu.Unlock()
	p.emit(Event{Type: EventSubscriberOffer, Target: TargetSubscriber, SDP: &offer})
}

func (p *Participant) createSubscriberOffer() (webrtc.SessionDescription, error) {
	var none webrtc.SessionDescription
	pc, err := p.subscriberPC()
	if err != nil {
		return none, err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return none, fmt.Errorf("sfu: subscriber offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return none, fmt.Errorf("sfu: subscriber offer: set local description: %w", err)
	}
	p.waitGathering(gathered)
	ld := pc.LocalDescription()
	if ld == nil {
		return none, fmt.Errorf("sfu: subscriber offer: %w: no local description", ErrWrongState)
	}
	return *ld, nil
}

// AddICECandidate adds a trickled client candidate to the publisher or
// subscriber PC. An empty candidate (end of candidates) is ignored.
// Errors: ErrInvalidArgument (unknown target or bad candidate), ErrWrongState
// (that PC has no remote description yet), ErrParticipantClosed.
func (p *Participant) AddICECandidate(t Target, c webrtc.ICECandidateInit) error {
	if c.Candidate == "" {
		return nil
	}
	p.mu.Lock()
	closing, pc := p.closing, p.pubPC
	if !closing {
		p.ops.Add(1)
		defer p.ops.Done()
	}
	p.mu.Unlock()
	switch {
	case closing:
		return ErrParticipantClosed
	case t == TargetSubscriber:
		pc = p.sub.Load()
	case t != TargetPublisher:
		return fmt.Errorf("sfu: add candidate: %w: target %q", ErrInvalidArgument, t)
	}
	if pc == nil || pc.RemoteDescription() == nil {
		return fmt.Errorf("sfu: add candidate (%s): %w: no remote description", t, ErrWrongState)
	}
	if err := pc.AddICECandidate(c); err != nil {
		return p.closedOr(fmt.Errorf("sfu: add candidate (%s): %w: %w", t, ErrInvalidArgument, err))
	}
	return nil
}

// stateHandler reports connection state changes of pc and closes the
// participant when it failed or was closed by the peer (a publisher PC
// discarded by a failed first Publish is ignored).
func (p *Participant) stateHandler(t Target, pc *webrtc.PeerConnection) func(webrtc.PeerConnectionState) {
	return func(s webrtc.PeerConnectionState) {
		if t == TargetPublisher {
			p.mu.Lock()
			current := p.pubPC == pc
			p.mu.Unlock()
			if !current {
				return
			}
		}
		p.post(action{kind: actEvent, ev: Event{Type: EventConnectionState, Target: t, State: s.String()}})
		if t == TargetSubscriber && s == webrtc.PeerConnectionStateConnected {
			p.post(action{kind: actSubscriberConnected})
		}
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.closeAsync(fmt.Errorf("%w: %s peer connection %s", ErrConnectionFailed, t, s))
		}
	}
}

// addConsumer subscribes the subscriber PC to prod; false if not added
// (also for a participant that joined with NoSubscribe).
func (p *Participant) addConsumer(prod *Producer) bool {
	if p.noSubscribe {
		return false
	}
	id := prod.info.ID
	p.mu.Lock()
	if p.closing || p.consumers[id] != nil {
		p.mu.Unlock()
		return false
	}
	p.mu.Unlock()
	pc, err := p.subscriberPC()
	if err != nil {
		if !errors.Is(err, ErrParticipantClosed) {
			p.log.Warn("subscribe failed", "producer", id, "err", err)
		}
		return false
	}
	c, err := prod.NewConsumer(pc)
	if err != nil {
		if !errors.Is(err, ErrProducerClosed) {
			p.log.Warn("subscribe failed", "producer", id, "err", err)
		}
		return false
	}
	if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		// Released by actSubscriberConnected, which runs on this
		// goroutine after pion reports the state: no consumer is missed.
		c.hold()
	}
	p.mu.Lock()
	if p.closing || p.consumers[id] != nil {
		p.mu.Unlock()
		c.Close()
		return false
	}
	p.consumers[id] = c
	p.subHadTracks = true
	p.mu.Unlock()
	if prod.isClosed() { // closed before we stored c: room's removal may have missed it
		p.dropConsumer(id, c)
		return false
	}
	return true
}

// dropConsumer closes and forgets c if it is still the consumer of id.
func (p *Participant) dropConsumer(id string, c *Consumer) bool {
	p.mu.Lock()
	if p.consumers[id] != c || c == nil {
		p.mu.Unlock()
		return false
	}
	delete(p.consumers, id)
	p.mu.Unlock()
	c.Close()
	return true
}

// Close leaves the room: closes the participant's producers (others get
// producer-removed), its consumers and peer connections, waits for its
// goroutines, then removes it from the room (others get participant-left;
// the room closes if it was the last local participant). No EventClosed is
// sent for a Close called by the user. Idempotent; a concurrent second call
// waits for the first. Must not be called from Observer callbacks.
func (p *Participant) Close() { p.closeWith(nil) }

// closeAsync closes the participant on an engine-owned goroutine (used from
// pion callbacks and the participant's own goroutine).
func (p *Participant) closeAsync(reason error) {
	p.mu.Lock()
	started := p.closeStarted
	p.mu.Unlock()
	if !started {
		p.e.goAsync(func() { p.closeWith(reason) })
	}
}

// closeWith closes the participant; a non-nil reason is reported to the
// participant as EventClosed after Done is closed.
func (p *Participant) closeWith(reason error) {
	p.mu.Lock()
	if p.closeStarted {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closeStarted = true
	p.stopLocked()
	p.mu.Unlock()

	p.loop.Wait() // the goroutine adds no consumer once closing is set
	p.ops.Wait()
	p.mu.Lock()
	pub := p.pubPC // a concurrent first Publish may have set it
	producers := make([]*Producer, 0, len(p.producers))
	for _, prod := range p.producers {
		producers = append(producers, prod)
	}
	consumers := make([]*Consumer, 0, len(p.consumers))
	for _, c := range p.consumers {
		consumers = append(consumers, c)
	}
	p.consumers = make(map[string]*Consumer)
	p.mu.Unlock()

	for _, prod := range producers {
		prod.Close()
	}
	for _, c := range consumers {
		c.Close()
	}
	if pub != nil {
		_ = pub.Close()
	}
	p.closeSubscriberPC()
	p.wg.Wait()
	p.room.removeParticipant(p)
	p.mu.Lock()
	p.closeReason = reason
	p.mu.Unlock()
	close(p.done)
	if reason != nil {
		p.log.Info("participant closed by engine", "reason", reason)
		p.events.HandleEvent(Event{Type: EventClosed, Err: reason})
	} else {
		p.log.Info("participant left")
	}
}
