package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// errLinkGone is returned by inLink.want when the link closed after it was
// looked up; PipeIn then looks up (creates) a fresh link.
var errLinkGone = errors.New("cluster: link closed")

// keyframeQueue is the number of pending PLI requests per link; more are
// dropped (the engine already throttles per producer).
const keyframeQueue = 64

// courtesyTimeout bounds telling an origin that a link was closed: it is
// best effort, and Close must not hang on dead peers.
const courtesyTimeout = 2 * time.Second

// pipeKey identifies a piped producer on a node.
type pipeKey struct {
	room     string
	producer string
}

// pipeState is the lifecycle of an incoming pipe.
type pipeState int

// Pipe states, in order.
const (
	pipePending  pipeState = iota // wanted, waiting for the next negotiation
	pipeOffered                   // part of a negotiation in flight
	pipeAccepted                  // origin accepted, waiting for the track
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

// inPipe is one producer pulled over an incoming link. Its mutable fields
// are guarded by the link's mu.
type inPipe struct {
	key     pipeKey
	id      string // pipe instance id, unique on its link
	info    sfu.ProducerInfo
	settled chan struct{} // closed once err is final (accepted: nil)

	err      error
	state    pipeState
	ssrc     uint32              // SSRC the origin announced for it (0: unknown)
	producer *sfu.Producer       // set once the local producer exists
	track    *webrtc.TrackRemote // set when the track arrived
	receiver *webrtc.RTPReceiver // set when the track arrived
}

// pipeResources are what a removed pipe still holds; collected under the
// link mu, released outside it.
type pipeResources struct {
	producer *sfu.Producer
	track    *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
}

// resourcesLocked returns pp's resources. Caller holds the link mu.
func (pp *inPipe) resourcesLocked() pipeResources {
	return pipeResources{producer: pp.producer, track: pp.track, receiver: pp.receiver}
}

// release closes the local producer and unblocks the pipe's RTP and RTCP
// readers right away. The readers would also end when the receiver stops
// (renegotiation, PC close), but the deadline makes their exit independent
// of pion's receiver lifecycle.
func (r pipeResources) release() {
	past := time.Unix(1, 0)
	if r.track != nil {
		_ = r.track.SetReadDeadline(past) // only fails for an unknown stream: nothing to unblock
	}
	if r.receiver != nil {
		_ = r.receiver.SetReadDeadline(past)
	}
	if r.producer != nil {
		r.producer.Close()
	}
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

// inLink is the puller side of a link: this node receives producers of
// node peer over pc, and is the offerer of every negotiation.
//
// Goroutines (owned via Pipes.wg, all end when the link closes): run
// (negotiations and the idle timer; the only goroutine touching
// signaling, which serializes negotiations), writeRTCP (PLI), and per
// active pipe forward (RTP) and readRTCP (BYE).
type inLink struct {
	p         *Pipes
	peer      string // origin node id
	id        string // link id (random, chosen here)
	log       *slog.Logger
	pc        *webrtc.PeerConnection
	ctx       context.Context // cancelled on close: aborts control requests
	cancel    context.CancelFunc
	kick      chan struct{} // cap 1: "negotiate again"
	keyframes chan uint32   // media SSRCs to send PLI for
	done      chan struct{} // closed on close

	mu         sync.Mutex
	closed     bool
	pipes      map[pipeKey]*inPipe
	lastPipeID uint64 // pipe instance counter
	negotiated bool   // at least one offer was sent
	answered   bool   // at least one answer was applied (the origin has state)
}

// newInLink returns an unstarted incoming link over pc.
func newInLink(p *Pipes, origin string, pc *webrtc.PeerConnection) *inLink {
	l := &inLink{
		p:         p,
		peer:      origin,
		id:        newLinkID(),
		pc:        pc,
		kick:      make(chan struct{}, 1),
		keyframes: make(chan uint32, keyframeQueue),
		done:      make(chan struct{}),
		pipes:     make(map[pipeKey]*inPipe),
	}
	l.log = p.log.With("peer", origin, "direction", "in", "link", l.id)
	l.ctx, l.cancel = context.WithCancel(p.ctx)
	return l
}

// start installs the PC handlers and starts the link goroutines. Called
// once, under Pipes.mu with Pipes open (so Close will close this link).
func (l *inLink) start() {
	l.pc.OnTrack(l.onTrack)
	l.pc.OnConnectionStateChange(l.onState)
	l.p.wg.Add(2)
	go l.run()
	go l.writeRTCP()
}

// want registers (room, info) as wanted and schedules a negotiation; an
// existing pipe for the same key is returned as is (idempotent).
func (l *inLink) want(room string, info sfu.ProducerInfo) (*inPipe, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errLinkGone
	}
	k := pipeKey{room: room, producer: info.ID}
	if pp := l.pipes[k]; pp != nil {
		return pp, nil
	}
	l.lastPipeID++
	pp := &inPipe{key: k, id: strconv.FormatUint(l.lastPipeID, 10), info: info, settled: make(chan struct{})}
	l.pipes[k] = pp
	l.kickLocked()
	return pp, nil
}

// kickLocked schedules a negotiation (coalesced). Caller holds l.mu or
// owns l otherwise; never blocks.
func (l *inLink) kickLocked() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// abandon withdraws pp if it is not settled yet (its PipeIn gave up) and
// reports whether it did.
func (l *inLink) abandon(pp *inPipe) bool {
	l.mu.Lock()
	select {
	case <-pp.settled:
		l.mu.Unlock()
		return false
	default:
	}
	if l.pipes[pp.key] == pp {
		delete(l.pipes, pp.key)
		l.kickLocked()
	}
	pp.state = pipeClosed
	pp.settleLocked(ErrPipeRemoved)
	l.mu.Unlock()
	return true
}

// remove drops every pipe whose key matches, closes their local producers
// and schedules a negotiation so the origin stops sending. It returns how
// many pipes were removed.
func (l *inLink) remove(match func(pipeKey) bool, cause error) int {
	var res []pipeResources
	n := 0
	l.mu.Lock()
	for k, pp := range l.pipes {
		if !match(k) {
			continue
		}
		n++
		delete(l.pipes, k)
		pp.state = pipeClosed
		pp.settleLocked(cause)
		res = append(res, pp.resourcesLocked())
	}
	if n > 0 {
		l.kickLocked()
	}
	l.mu.Unlock()
	for _, r := range res {
		r.release()
	}
	return n
}

// endPipe removes pp if it is still current (its track ended, the origin
// said BYE, or its local producer closed) and closes its producer.
func (l *inLink) endPipe(pp *inPipe, why string) {
	l.mu.Lock()
	removed := l.pipes[pp.key] == pp
	if removed {
		delete(l.pipes, pp.key)
		l.kickLocked()
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

// run owns signaling: it negotiates whenever kicked and closes the link
// once it has carried nothing for LinkIdleTimeout.
func (l *inLink) run() {
	defer l.p.wg.Done()
	idle := time.NewTimer(l.p.cfg.LinkIdleTimeout)
	idle.Stop()
	defer idle.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
			l.negotiate()
			if l.empty() {
				idle.Reset(l.p.cfg.LinkIdleTimeout)
			} else {
				idle.Stop()
			}
		case <-idle.C:
			if l.shutdown(fmt.Errorf("%w: link idle", ErrPipeRemoved), closeOpts{tellPeer: true, onlyIfIdle: true}) {
				return
			}
		}
	}
}

// empty reports whether no pipe is wanted on the link.
func (l *inLink) empty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pipes) == 0
}

// negotiate runs one offer/answer exchange with the origin for the current
// wanted set. Called only from run. Any failure closes the link.
func (l *inLink) negotiate() {
	l.mu.Lock()
	if l.closed || (len(l.pipes) == 0 && !l.negotiated) {
		l.mu.Unlock()
		return
	}
	l.negotiated = true
	offered := make(map[pipeKey]*inPipe, len(l.pipes))
	wanted := make([]PipeRef, 0, len(l.pipes))
	var fresh []sfu.Kind
	for k, pp := range l.pipes {
		offered[k] = pp
		wanted = append(wanted, PipeRef{Room: k.room, ProducerID: k.producer, PipeID: pp.id})
		if pp.state == pipePending {
			pp.state = pipeOffered
			fresh = append(fresh, pp.info.Kind)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(wanted, func(a, b PipeRef) int {
		if a.Room != b.Room {
			return strings.Compare(a.Room, b.Room)
		}
		return strings.Compare(a.ProducerID, b.ProducerID)
	})

	resp, err := l.exchange(fresh, wanted, offered)
	if err != nil {
		if l.isClosed() {
			return // closed under us (Unpipe of the last pipe racing DropNode, Close, ...)
		}
		l.log.Warn("link negotiation failed", "err", err)
		l.shutdown(fmt.Errorf("%w: %v", ErrLinkFailed, err), closeOpts{notify: true})
		return
	}

	accepted := make(map[pipeKey]bool, len(resp.Accepted))
	for _, a := range resp.Accepted {
		if pp := offered[pipeKey{room: a.Room, producer: a.ProducerID}]; pp != nil && (a.PipeID == "" || a.PipeID == pp.id) {
			accepted[pp.key] = true
		}
	}
	reasons := make(map[pipeKey]string, len(resp.Rejected))
	for _, r := range resp.Rejected {
		reasons[pipeKey{room: r.Room, producer: r.ProducerID}] = r.Reason
	}
	var res []pipeResources
	l.mu.Lock()
	for k, pp := range offered {
		if l.pipes[k] != pp {
			continue // removed meanwhile; the next negotiation tells the origin
		}
		if accepted[k] {
			if pp.state == pipeOffered {
				pp.state = pipeAccepted
			}
			pp.settleLocked(nil)
			continue
		}
		reason := reasons[k]
		if reason == "" {
			reason = RejectNotAccepted
		}
		delete(l.pipes, k)
		pp.state = pipeClosed
		pp.settleLocked(&RejectedError{Room: k.room, ProducerID: k.producer, Origin: l.peer, Reason: reason})
		res = append(res, pp.resourcesLocked())
		l.log.Info("pipe rejected by origin", "room", k.room, "producer", k.producer, "reason", reason)
	}
	l.mu.Unlock()
	for _, r := range res {
		r.release()
	}
}

// exchange adds one recvonly transceiver per fresh kind, creates the offer,
// waits for ICE gathering, sends it with the wanted set and applies the
// answer. Before applying it, it records the announced SSRCs on the
// offered pipes, so that onTrack (which can only fire after the answer is
// applied) binds exactly the announced tracks. Bounded by RequestTimeout
// and the link context.
func (l *inLink) exchange(fresh []sfu.Kind, wanted []PipeRef, offered map[pipeKey]*inPipe) (negotiateResponse, error) {
	for _, k := range fresh {
		if _, err := l.pc.AddTransceiverFromKind(codecType(k), webrtc.RTPTransceiverInit{
			Direction: webrtc.RTPTransceiverDirectionRecvonly,
		}); err != nil {
			return negotiateResponse{}, fmt.Errorf("adding %s transceiver: %w", k, err)
		}
	}
	ctx, cancel := context.WithTimeout(l.ctx, l.p.cfg.RequestTimeout)
	defer cancel()
	offer, err := l.pc.CreateOffer(nil)
	if err != nil {
		return negotiateResponse{}, fmt.Errorf("creating offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(offer); err != nil {
		return negotiateResponse{}, fmt.Errorf("setting offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return negotiateResponse{}, fmt.Errorf("gathering candidates: %w", ctx.Err())
	}
	local := l.pc.LocalDescription()
	if local == nil {
		return negotiateResponse{}, errors.New("no local description")
	}
	resp, err := l.p.client.negotiate(ctx, l.peer, negotiateRequest{LinkID: l.id, Offer: *local, Wanted: wanted})
	if err != nil {
		return negotiateResponse{}, err
	}
	if resp.Answer.Type != webrtc.SDPTypeAnswer {
		return negotiateResponse{}, fmt.Errorf("%w: answer has type %s", ErrControlBadResponse, resp.Answer.Type)
	}
	l.mu.Lock()
	for _, a := range resp.Accepted {
		pp := offered[pipeKey{room: a.Room, producer: a.ProducerID}]
		if pp != nil && l.pipes[pp.key] == pp && (a.PipeID == "" || a.PipeID == pp.id) && pp.state == pipeOffered {
			pp.ssrc = a.SSRC
		}
	}
	l.mu.Unlock()
	if err := l.pc.SetRemoteDescription(resp.Answer); err != nil {
		return negotiateResponse{}, fmt.Errorf("setting answer: %w", err)
	}
	l.mu.Lock()
	l.answered = true
	l.mu.Unlock()
	return resp, nil
}

// onTrack binds an arriving track (track id = producer id) to its wanted
// pipe and starts forwarding. Runs on a pion goroutine.
func (l *inLink) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	id := track.ID()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	ssrc := uint32(track.SSRC())
	var pp *inPipe
	for k, cand := range l.pipes {
		if k.producer == id && (cand.state == pipeOffered || cand.state == pipeAccepted) &&
			(cand.ssrc == 0 || cand.ssrc == ssrc) {
			pp = cand
			break
		}
	}
	if pp == nil {
		l.mu.Unlock()
		// Not (or no longer) wanted: the next negotiation removes it at the
		// origin. Not reading it only costs pion's bounded buffer.
		l.log.Debug("unexpected track on link", "track", id, "ssrc", track.SSRC())
		return
	}
	pp.state = pipeActive
	pp.track, pp.receiver = track, receiver
	pp.settleLocked(nil)
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.forward(pp, track, receiver)
}

// forward adds the local producer for pp and copies RTP from the link
// track into it until the track ends (renegotiated away, link closed) or
// the producer is closed (Unpipe, local room closed).
func (l *inLink) forward(pp *inPipe, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	defer l.p.wg.Done()
	room := l.p.engine.Room(pp.key.room)
	if room == nil {
		l.endPipe(pp, RejectLocalRoomClosed)
		return
	}
	info := pp.info
	info.Remote = true
	info.Kind = kindOf(track.Kind(), info.Kind)
	info.Codec = sfu.CodecFrom(track.Codec())
	ssrc := uint32(track.SSRC())
	prod, err := room.AddProducer(info, sfu.KeyframeRequesterFunc(func() { l.requestKeyframe(ssrc) }))
	if err != nil {
		l.log.Warn("adding piped producer failed", "room", pp.key.room, "producer", pp.key.producer, "err", err)
		l.endPipe(pp, "adding local producer failed")
		return
	}
	l.mu.Lock()
	if l.closed || l.pipes[pp.key] != pp {
		l.mu.Unlock()
		prod.Close()
		return
	}
	pp.producer = prod
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.readRTCP(pp, receiver, ssrc)
	l.log.Info("pipe active", "room", pp.key.room, "producer", pp.key.producer, "kind", info.Kind, "ssrc", ssrc)

	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			l.endPipe(pp, "track ended")
			return
		}
		if err := prod.WriteRTP(pkt); errors.Is(err, sfu.ErrProducerClosed) {
			l.endPipe(pp, "local producer closed")
			return
		}
	}
}

// readRTCP drains the RTCP the origin sends for pp's track and ends the
// pipe on an RTCP BYE for its SSRC (origin producer closed).
func (l *inLink) readRTCP(pp *inPipe, receiver *webrtc.RTPReceiver, ssrc uint32) {
	defer l.p.wg.Done()
	for {
		pkts, _, err := receiver.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if bye, ok := pkt.(*rtcp.Goodbye); ok && slices.Contains(bye.Sources, ssrc) {
				l.endPipe(pp, "origin sent BYE")
				return
			}
		}
	}
}

// requestKeyframe queues a PLI for the link track with media SSRC ssrc.
// Called by the engine (piped producer's KeyframeRequester); never blocks.
func (l *inLink) requestKeyframe(ssrc uint32) {
	select {
	case l.keyframes <- ssrc:
	default:
	}
}

// writeRTCP sends queued PLIs on the link.
func (l *inLink) writeRTCP() {
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
func (l *inLink) onState(s webrtc.PeerConnectionState) {
	l.log.Debug("link state", "state", s)
	if s == webrtc.PeerConnectionStateDisconnected && !l.isClosed() {
		l.log.Info("link disconnected: nothing heard from the peer", "state", s)
		l.p.linkDisconnected(l.peer)
		return
	}
	if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
		if !l.isClosed() {
			l.log.Warn("link peer connection failed", "state", s)
			l.shutdown(fmt.Errorf("%w: peer connection %s", ErrLinkFailed, s), closeOpts{notify: true})
		}
	}
}

// isClosed reports whether the link was closed.
func (l *inLink) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// closeOpts are the options of inLink.shutdown.
type closeOpts struct {
	notify     bool // call the OnLinkFailed callback
	tellPeer   bool // tell the origin (if it ever answered), bounded by courtesyTimeout
	onlyIfIdle bool // do nothing if a pipe is wanted (checked atomically with closing)
}

// shutdown closes the link once and reports whether this call closed it:
// pending PipeIn calls fail with cause, piped producers close, the PC
// closes. Telling the origin is best effort: it would otherwise only
// notice through ICE consent failure.
func (l *inLink) shutdown(cause error, o closeOpts) bool {
	l.mu.Lock()
	if l.closed || (o.onlyIfIdle && (len(l.pipes) > 0 || len(l.kick) > 0)) {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	tellPeer := o.tellPeer && l.answered
	var res []pipeResources
	for _, pp := range l.pipes {
		pp.state = pipeClosed
		pp.settleLocked(cause)
		res = append(res, pp.resourcesLocked())
	}
	l.pipes = make(map[pipeKey]*inPipe)
	l.mu.Unlock()

	l.cancel()
	close(l.done)
	l.p.removeInLink(l)
	for _, r := range res {
		r.release()
	}
	if err := l.pc.Close(); err != nil {
		l.log.Debug("closing link peer connection", "err", err)
	}
	l.log.Info("link closed", "cause", cause)
	if tellPeer {
		ctx, cancel := context.WithTimeout(context.Background(), min(l.p.cfg.RequestTimeout, courtesyTimeout))
		if err := l.p.client.closeLink(ctx, l.peer, l.id); err != nil {
			l.log.Debug("telling origin about closed link failed", "err", err)
		}
		cancel()
	}
	if o.notify {
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
