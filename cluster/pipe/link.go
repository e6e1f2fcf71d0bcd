package pipe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// errLinkGone is returned by link.want when the link closed (or is being
// closed as idle) after it was looked up; PipeIn then looks up (creates) a
// fresh link.
var errLinkGone = errors.New("cluster: link closed")

// keyframeQueue is the number of pending PLI requests per link; more are
// dropped (the engine already throttles per producer).
const keyframeQueue = 64

// courtesyTimeout bounds telling a peer that a link was closed: it is best
// effort, and Close must not hang on dead peers.
const courtesyTimeout = 2 * time.Second

// Link roles in LinkStatus.
const (
	RoleController = "controller" // this node's id is the smaller one: it sends every offer
	RoleAnswerer   = "answerer"   // the peer is the controller: this node answers
)

// pipeKey identifies a piped producer on a node.
type pipeKey struct {
	room     string
	producer string
}

// pipeState is the lifecycle of a pulled pipe.
type pipeState int

// Pipe states, in order.
const (
	pipePending  pipeState = iota // wanted, not yet part of an exchange with the peer
	pipeOffered                   // controller: in an offer in flight; answerer: in a want request in flight
	pipeAccepted                  // the peer accepted to send it, waiting for the track
	pipeActive                    // track arrived, local producer added
	pipeClosed                    // removed
)

// String returns the state name used in Status.
func (s pipeState) String() string {
	switch s {
	case pipePending:
		return "pending"
	case pipeOffered:
		return "offered"
	case pipeAccepted:
		return "accepted"
	case pipeActive:
		return "active"
	default:
		return "closed"
	}
}

// inPipe is one producer this node pulls from the peer over a link. Its
// mutable fields are guarded by the link's mu.
//
// A single-layer producer (audio, video without simulcast) comes as one
// link track. A simulcast producer is layered: the local producer has all
// its layers, and the link carries one track per layer its local
// subscribers need (want, from the producer's dynacast demand), so the
// origin sends nothing else.
type inPipe struct {
	key     pipeKey
	id      string // pipe instance id, unique on its link
	info    sfu.ProducerInfo
	version uint64        // the link's want version that first listed it
	settled chan struct{} // closed once err is final (accepted: nil)
	layered bool          // one link track per wanted layer (PipeRef.Layers)
	ready   chan struct{} // closed once the local producer was created (or could not be)

	err      error
	state    pipeState
	want     []int         // layered: the layers requested from the peer, ascending
	slots    map[int]bool  // layered: wanted layers a receive slot was offered for (controller)
	creating bool          // a forward goroutine creates the local producer
	tracks   []*inTrack    // link tracks announced by the peer (bound or not)
	producer *sfu.Producer // set once the local producer exists
}

// inTrack is one link track of a pulled pipe: its only track, or one layer
// of a layered pipe. Guarded by the link's mu, except the counters.
type inTrack struct {
	layer    int    // the local producer's layer it feeds
	ssrc     uint32 // announced by the peer
	track    *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver

	packets, bytes atomic.Uint64 // RTP packets and payload bytes received
}

// pipeResources are what a removed pipe (or track) still holds; collected
// under the link mu, released outside it.
type pipeResources struct {
	producer *sfu.Producer
	tracks   []*inTrack
}

// resourcesLocked returns pp's resources. Caller holds the link mu.
func (pp *inPipe) resourcesLocked() pipeResources {
	return pipeResources{producer: pp.producer, tracks: pp.tracks}
}

// release closes the local producer and unblocks the pipe's RTP and RTCP
// readers right away. The readers would also end when the receiver stops
// (renegotiation, PC close), but the deadline makes their exit independent
// of pion's receiver lifecycle.
func (r pipeResources) release() {
	past := time.Unix(1, 0)
	for _, t := range r.tracks {
		if t.track != nil {
			_ = t.track.SetReadDeadline(past) // only fails for an unknown stream: nothing to unblock
		}
		if t.receiver != nil {
			_ = t.receiver.SetReadDeadline(past)
		}
	}
	if r.producer != nil {
		r.producer.Close()
	}
}

// releaseAll releases every entry of rs.
func releaseAll(rs []pipeResources) {
	for _, r := range rs {
		r.release()
	}
}

// topLayer is the layer a single link track feeds: the producer's top one.
func (pp *inPipe) topLayer() int {
	if pp.layered {
		return len(pp.info.Layers) - 1
	}
	return 0
}

// refLocked is pp on the wire. Caller holds the link mu.
func (pp *inPipe) refLocked() PipeRef {
	r := PipeRef{Room: pp.key.room, ProducerID: pp.key.producer, PipeID: pp.id}
	if pp.layered {
		r.Layers = append([]int{}, pp.want...) // never nil: [] wants none
	}
	return r
}

// announceLocked records the link tracks the peer announced for pp (its
// accepted entry), before the description carrying them is applied, so
// that onTrack binds exactly those: a track per announced SSRC (a layer
// announced with a new SSRC replaces its old track); a layered pipe's
// tracks the peer no longer announces and pp no longer wants are dropped.
// It returns what dropped tracks hold. Caller holds the link mu.
func (pp *inPipe) announceLocked(a AcceptedPipe) pipeResources {
	announced := a.Layers
	if announced == nil && a.SSRC != 0 {
		announced = []PipeLayer{{Layer: pp.topLayer(), SSRC: a.SSRC}}
	}
	var drop []*inTrack
	keep := pp.tracks[:0:0]
	for _, t := range pp.tracks {
		i := slices.IndexFunc(announced, func(x PipeLayer) bool { return x.Layer == t.layer })
		switch {
		case i >= 0 && announced[i].SSRC != t.ssrc && announced[i].SSRC != 0:
			drop = append(drop, t) // replaced by a new sender
		case i < 0 && pp.layered && !slices.Contains(pp.want, t.layer):
			drop = append(drop, t) // the peer stopped sending it
		default:
			keep = append(keep, t)
		}
	}
	for _, x := range announced {
		if x.SSRC == 0 || x.Layer < 0 || x.Layer >= max(len(pp.info.Layers), 1) ||
			slices.ContainsFunc(keep, func(t *inTrack) bool { return t.layer == x.Layer }) {
			continue
		}
		keep = append(keep, &inTrack{layer: x.Layer, ssrc: x.SSRC})
	}
	pp.tracks = keep
	if pp.producer != nil {
		for _, t := range drop {
			if !slices.ContainsFunc(keep, func(k *inTrack) bool { return k.layer == t.layer }) {
				_ = pp.producer.SetLayerKeyframeRequester(t.layer, nil) // layer in range
			}
		}
	}
	return pipeResources{tracks: drop}
}

// settleLocked records the PipeIn outcome once. Caller holds the link mu.
func (pp *inPipe) settleLocked(err error) {
	select {
	case <-pp.settled:
	default:
		pp.err = err
		close(pp.settled)
	}
}

// link is this node's side of THE link with node peer: one WebRTC
// PeerConnection carrying producers in both directions, shared by every
// room. pulls are the producers this node wants from the peer (tracks it
// receives), serves the local producers the peer wants (tracks it sends).
//
// The side whose node id is smaller is the controller: it makes every
// offer (link_controller.go), one round at a time from its run goroutine.
// The other side answers those offers from the control handler and sends
// its wanted set to the controller (link_answerer.go). See control.go for
// the wire protocol.
//
// Goroutines (owned via Pipes.wg, all end when the link closes): run
// (controller: negotiation rounds and the idle timer; answerer: want
// requests), writeRTCP (PLI), per active pull forward (RTP) and readRTCP
// (BYE), per served producer watch (BYE when it closes).
type link struct {
	p         *Pipes
	peer      string
	role      linkRole // *controller (this node's id is the smaller one: it offers) or *answerer
	side      string   // random id of this side; the controller's is also the link id
	log       *slog.Logger
	pc        *webrtc.PeerConnection
	ctx       context.Context // cancelled on close: aborts control requests
	cancel    context.CancelFunc
	kick      chan struct{} // cap 1: controller: negotiate again; answerer: send the wanted set again
	keyframes chan uint32   // media SSRCs to send PLI for
	done      chan struct{} // closed on close

	mu         sync.Mutex
	id         string // link id: the controller's side id ("" on the answerer until the first offer)
	closed     bool
	exchanged  bool // an offer/answer exchange completed: the peer has state for id
	pulls      map[pipeKey]*inPipe
	serves     map[pipeKey]*servedPipe
	lastPipeID uint64 // pipe instance counter
	version    uint64 // bumped on every change of pulls (the answerer sends it with its wants)

}

// newLink returns an unstarted link with peer over pc. The controller's
// link id is its side id; the answerer learns the id from the first offer.
func newLink(p *Pipes, peer string, pc *webrtc.PeerConnection) *link {
	l := &link{
		p:         p,
		peer:      peer,
		side:      newLinkID(),
		pc:        pc,
		kick:      make(chan struct{}, 1),
		keyframes: make(chan uint32, keyframeQueue),
		done:      make(chan struct{}),
		pulls:     make(map[pipeKey]*inPipe),
		serves:    make(map[pipeKey]*servedPipe),
	}
	if p.cfg.NodeID < peer {
		l.role = newController(l)
		l.id = l.side
	} else {
		l.role = newAnswerer(l)
	}
	l.log = p.log.With("peer", peer, "role", l.role.name(), "side", l.side)
	l.ctx, l.cancel = context.WithCancel(p.ctx)
	return l
}

// linkRole is one side's part of the link protocol: *controller or
// *answerer (link_controller.go, link_answerer.go). Methods ending in Locked
// are called with the link's mu held.
type linkRole interface {
	// name is RoleController or RoleAnswerer.
	name() string
	// run is the role's goroutine (counted in Pipes.wg): negotiation
	// rounds and the idle timer, or want requests.
	run()
	// sendsOnOwnLines reports whether served producers go on sendonly
	// m-lines of this side's own (controller) rather than on the recvonly
	// m-lines the peer offered (answerer).
	sendsOnOwnLines() bool
	// closingLocked is non-nil while an idle close is agreed with the peer.
	closingLocked() chan struct{}
	// unusedLocked reports a side the peer never adopted and that owes it
	// nothing (it may close quietly).
	unusedLocked() bool
	// shutdownLocked wakes whatever waits on the role when the link closes.
	shutdownLocked()
	// acceptsCloseFrom reports whether a close request naming the peer's
	// side may close this link.
	acceptsCloseFrom(side string) bool
}

// start installs the PC handlers and starts the link goroutines. Called
// once, under Pipes.mu with Pipes open (so Close will close this link).
func (l *link) start() {
	l.pc.OnTrack(l.onTrack)
	l.pc.OnConnectionStateChange(l.onState)
	l.p.wg.Add(2)
	go l.role.run()
	go l.writeRTCP()
}

// want registers (room, info) as pulled and schedules an exchange with the
// peer; an existing pipe for the same key is returned as is (idempotent).
// While the controller agrees an idle close with the peer it returns
// errLinkGone and the channel that is closed once that is decided.
func (l *link) want(room string, info sfu.ProducerInfo) (*inPipe, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, errLinkGone
	}
	if ch := l.role.closingLocked(); ch != nil {
		return nil, ch, errLinkGone
	}
	k := pipeKey{room: room, producer: info.ID}
	if pp := l.pulls[k]; pp != nil {
		return pp, nil, nil
	}
	l.lastPipeID++
	l.changedLocked()
	pp := &inPipe{key: k, id: strconv.FormatUint(l.lastPipeID, 10), info: info, version: l.version,
		settled: make(chan struct{}), ready: make(chan struct{})}
	if info.Kind == sfu.KindVideo && len(info.Layers) > 1 {
		// Until the local subscribers' demand is known, the lowest layer:
		// the cheapest, and the quickest to a first frame (its keyframes
		// are the smallest); the subscribers' allocators then ask for
		// better layers through the demand (see demand).
		pp.layered = true
		pp.want = []int{0}
		pp.slots = make(map[int]bool)
	}
	l.pulls[k] = pp
	return pp, nil, nil
}

// changedLocked records a change of the pulled set and schedules an
// exchange. Caller holds l.mu.
func (l *link) changedLocked() {
	l.version++
	l.kickLocked()
}

// kickLocked schedules a negotiation round (controller) or a want request
// (answerer), coalesced. Never blocks.
func (l *link) kickLocked() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// abandon withdraws pp if it is not settled yet (its PipeIn gave up) and
// reports whether it did.
func (l *link) abandon(pp *inPipe) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-pp.settled:
		return false
	default:
	}
	if l.pulls[pp.key] == pp {
		delete(l.pulls, pp.key)
		l.changedLocked()
	}
	pp.state = pipeClosed
	pp.settleLocked(ErrPipeRemoved)
	return true
}

// remove drops every pull whose key matches, closes their local producers
// and schedules an exchange so the peer stops sending. It returns how many
// pipes were removed.
func (l *link) remove(match func(pipeKey) bool, cause error) int {
	var res []pipeResources
	l.mu.Lock()
	for k, pp := range l.pulls {
		if !match(k) {
			continue
		}
		delete(l.pulls, k)
		pp.state = pipeClosed
		pp.settleLocked(cause)
		res = append(res, pp.resourcesLocked())
	}
	if len(res) > 0 {
		l.changedLocked()
	}
	l.mu.Unlock()
	releaseAll(res)
	return len(res)
}

// endPipe removes pp if it is still current (its track ended, the peer
// said BYE, or its local producer closed) and closes its producer.
func (l *link) endPipe(pp *inPipe, why string) {
	l.mu.Lock()
	removed := l.pulls[pp.key] == pp
	if removed {
		delete(l.pulls, pp.key)
		l.changedLocked()
	}
	pp.state = pipeClosed
	pp.settleLocked(fmt.Errorf("%w: %s", ErrPipeRemoved, why))
	res := pp.resourcesLocked()
	l.mu.Unlock()
	res.release()
	if removed {
		l.log.Debug("pipe ended", "room", pp.key.room, "producer", pp.key.producer, "why", why)
	}
}

// settleLocked applies the peer's verdict on the pulls of one exchange:
// candidates are the pulls the exchange covered; accepted ones move to
// pipeAccepted (their PipeIn returns nil), the others are removed with the
// peer's reason. Returns what removed pipes hold. Caller holds l.mu.
func (l *link) settleLocked(candidates []*inPipe, accepted []AcceptedPipe, rejected []RejectedPipe) []pipeResources {
	ok := make(map[pipeKey]string, len(accepted)) // -> pipe id
	for _, a := range accepted {
		ok[pipeKey{room: a.Room, producer: a.ProducerID}] = a.PipeID
	}
	reasons := make(map[pipeKey]string, len(rejected))
	for _, r := range rejected {
		reasons[pipeKey{room: r.Room, producer: r.ProducerID}] = r.Reason
	}
	var res []pipeResources
	for _, pp := range candidates {
		if l.pulls[pp.key] != pp {
			continue // removed meanwhile; the next exchange tells the peer
		}
		if id, yes := ok[pp.key]; yes && (id == "" || id == pp.id) {
			if pp.state < pipeAccepted {
				pp.state = pipeAccepted
			}
			pp.settleLocked(nil)
			continue
		}
		reason := reasons[pp.key]
		if reason == "" {
			reason = RejectNotAccepted
		}
		delete(l.pulls, pp.key)
		l.changedLocked()
		pp.state = pipeClosed
		pp.settleLocked(&RejectedError{Room: pp.key.room, ProducerID: pp.key.producer, Origin: l.peer, Reason: reason})
		res = append(res, pp.resourcesLocked())
		l.log.Info("pipe rejected by peer", "room", pp.key.room, "producer", pp.key.producer, "reason", reason)
	}
	return res
}

// recordSSRCsLocked records the tracks the peer announced for pulls the
// exchange covered (announceLocked), so that onTrack (which can only fire
// after the description carrying them is applied) binds exactly those
// tracks. It returns what replaced tracks hold. Caller holds l.mu.
func (l *link) recordSSRCsLocked(tracks []AcceptedPipe, covered func(*inPipe) bool) []pipeResources {
	var res []pipeResources
	for _, a := range tracks {
		pp := l.pulls[pipeKey{room: a.Room, producer: a.ProducerID}]
		if pp != nil && (a.PipeID == "" || a.PipeID == pp.id) && pp.state != pipeClosed && covered(pp) {
			res = append(res, pp.announceLocked(a))
		}
	}
	return res
}

// wantedLocked returns the pulls as a sorted wire list, marking pending
// ones offered; fresh lists the kinds of the receive slots the newly
// offered tracks need (one per new pipe, or per newly wanted layer).
// Caller holds l.mu.
func (l *link) wantedLocked() (wanted []PipeRef, pulls []*inPipe, fresh []sfu.Kind) {
	wanted = make([]PipeRef, 0, len(l.pulls))
	pulls = make([]*inPipe, 0, len(l.pulls))
	for _, pp := range l.pulls {
		pulls = append(pulls, pp)
		wanted = append(wanted, pp.refLocked())
		if pp.state == pipePending {
			pp.state = pipeOffered
			if !pp.layered {
				fresh = append(fresh, pp.info.Kind)
			}
		}
		for _, layer := range pp.want {
			if !pp.slots[layer] {
				pp.slots[layer] = true
				fresh = append(fresh, pp.info.Kind)
			}
		}
	}
	slices.SortFunc(wanted, func(a, b PipeRef) int {
		if a.Room != b.Room {
			return strings.Compare(a.Room, b.Room)
		}
		return strings.Compare(a.ProducerID, b.ProducerID)
	})
	return wanted, pulls, fresh
}

// writeRTCP sends queued PLIs on the link.
func (l *link) writeRTCP() {
	defer l.p.wg.Done()
	for {
		select {
		case <-l.done:
			return
		case ssrc := <-l.keyframes:
			if err := l.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
				l.log.Debug("writing PLI on link failed", "ssrc", ssrc, "err", err)
			}
		}
	}
}

// onState closes the link when its PeerConnection fails or closes without
// us closing it, and reports "disconnected" (the peer went silent) to the
// OnLinkDisconnected callback.
func (l *link) onState(s webrtc.PeerConnectionState) {
	l.log.Debug("link state", "state", s)
	if s == webrtc.PeerConnectionStateDisconnected && !l.isClosed() {
		l.log.Info("link disconnected: nothing heard from the peer", "state", s)
		l.p.linkDisconnected(l.peer)
		return
	}
	if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
		l.mu.Lock()
		closed, closing := l.closed, l.role.closingLocked() != nil
		l.mu.Unlock()
		switch {
		case closed:
		case closing:
			// The answerer agreed to close the idle link and closed its PC
			// before its answer reached us: not a failure.
			l.shutdown(fmt.Errorf("%w: link idle", ErrPipeRemoved), closeOpts{})
		default:
			l.logFailure("link peer connection failed", "state", s)
			l.shutdown(fmt.Errorf("%w: peer connection %s", ErrLinkFailed, s), closeOpts{notify: true})
		}
	}
}

// isClosed reports whether the link was closed.
func (l *link) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// closeOpts are the options of link.shutdown.
type closeOpts struct {
	notify       bool // call the OnLinkFailed callback if this side pulled anything
	tellPeer     bool // tell the peer (if it has state for the link), bounded by courtesyTimeout
	onlyIfIdle   bool // do nothing if a pull is wanted (checked atomically with closing)
	onlyIfUnused bool // answerer: do nothing once an offer adopted the link or a want is due
}

// shutdown closes the link once and reports whether this call closed it:
// pending PipeIn calls fail with cause, piped producers and link consumers
// close, the PC closes, requests waiting for a negotiation round fail.
// Telling the peer is best effort: it would otherwise only notice through
// ICE consent failure.
func (l *link) shutdown(cause error, o closeOpts) bool {
	l.mu.Lock()
	if l.closed || (o.onlyIfIdle && len(l.pulls) > 0) ||
		(o.onlyIfUnused && !l.role.unusedLocked()) {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	tell := o.tellPeer && l.exchanged && l.id != ""
	req := closeLinkRequest{LinkID: l.id, Side: l.side}
	hadPulls := len(l.pulls) > 0
	var res []pipeResources
	for _, pp := range l.pulls {
		pp.state = pipeClosed
		pp.settleLocked(cause)
		res = append(res, pp.resourcesLocked())
	}
	l.pulls = make(map[pipeKey]*inPipe)
	var served []*sfu.Consumer
	for _, s := range l.serves {
		served = append(served, s.consumersLocked()...)
	}
	l.serves = make(map[pipeKey]*servedPipe)
	l.role.shutdownLocked()
	l.mu.Unlock()

	l.cancel()
	close(l.done)
	l.p.removeLink(l)
	releaseAll(res)
	for _, c := range served {
		c.Close()
	}
	if err := l.pc.Close(); err != nil {
		l.log.Debug("closing link peer connection", "err", err)
	}
	l.log.Info("link closed", "link", req.LinkID, "cause", cause)
	if tell {
		ctx, cancel := context.WithTimeout(context.Background(), min(l.p.cfg.RequestTimeout, courtesyTimeout))
		if _, err := l.p.client.closeLink(ctx, l.peer, req); err != nil {
			l.log.Debug("telling the peer about the closed link failed", "err", err)
		}
		cancel()
	}
	if o.notify && hadPulls {
		l.p.linkFailed(l.peer)
	}
	return true
}

// codecType maps a Kind to pion's codec type.
func codecType(k sfu.Kind) webrtc.RTPCodecType {
	if k == sfu.KindAudio {
		return webrtc.RTPCodecTypeAudio
	}
	return webrtc.RTPCodecTypeVideo
}

// kindOf maps pion's codec type to a Kind, falling back to def.
func kindOf(t webrtc.RTPCodecType, def sfu.Kind) sfu.Kind {
	switch t {
	case webrtc.RTPCodecTypeAudio:
		return sfu.KindAudio
	case webrtc.RTPCodecTypeVideo:
		return sfu.KindVideo
	default:
		return def
	}
}
