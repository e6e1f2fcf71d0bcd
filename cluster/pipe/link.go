package pipe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
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
type inPipe struct {
	key     pipeKey
	id      string // pipe instance id, unique on its link
	info    sfu.ProducerInfo
	version uint64        // the link's want version that first listed it
	settled chan struct{} // closed once err is final (accepted: nil)

	err      error
	state    pipeState
	ssrc     uint32              // SSRC the peer announced for it (0: unknown)
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

// releaseAll releases every entry of rs.
func releaseAll(rs []pipeResources) {
	for _, r := range rs {
		r.release()
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
	pp := &inPipe{key: k, id: strconv.FormatUint(l.lastPipeID, 10), info: info, version: l.version, settled: make(chan struct{})}
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

// recordSSRCsLocked stores the SSRCs the peer announced for pulls that are
// still waiting for their track, so that onTrack (which can only fire after
// the description carrying them is applied) binds exactly those tracks.
// Caller holds l.mu.
func (l *link) recordSSRCsLocked(tracks []AcceptedPipe, covered func(*inPipe) bool) {
	for _, a := range tracks {
		pp := l.pulls[pipeKey{room: a.Room, producer: a.ProducerID}]
		if pp != nil && (a.PipeID == "" || a.PipeID == pp.id) && pp.state <= pipeOffered && covered(pp) {
			pp.ssrc = a.SSRC
		}
	}
}

// wantedLocked returns the pulls as a sorted wire list, marking pending
// ones offered; fresh lists the kinds of the newly offered ones. Caller
// holds l.mu.
func (l *link) wantedLocked() (wanted []PipeRef, pulls []*inPipe, fresh []sfu.Kind) {
	wanted = make([]PipeRef, 0, len(l.pulls))
	pulls = make([]*inPipe, 0, len(l.pulls))
	for k, pp := range l.pulls {
		pulls = append(pulls, pp)
		wanted = append(wanted, PipeRef{Room: k.room, ProducerID: k.producer, PipeID: pp.id})
		if pp.state == pipePending {
			pp.state = pipeOffered
			fresh = append(fresh, pp.info.Kind)
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

// onTrack binds an arriving track (track id = producer id, SSRC as
// announced) to its pull and starts forwarding. Runs on a pion goroutine.
func (l *link) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	id := track.ID()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	// Bind by the SSRC the peer announced for exactly this pipe instance
	// (recorded before the description carrying the track was applied).
	// Never by track id alone: the track of an earlier instance of the
	// same producer (dropped and wanted again) can still start late.
	ssrc := uint32(track.SSRC())
	var pp *inPipe
	for k, cand := range l.pulls {
		if k.producer == id && (cand.state == pipeOffered || cand.state == pipeAccepted) &&
			cand.ssrc != 0 && cand.ssrc == ssrc {
			pp = cand
			break
		}
	}
	if pp == nil {
		l.mu.Unlock()
		// Not (or no longer) wanted: the next exchange removes it at the
		// peer. Not reading it only costs pion's bounded buffer.
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
func (l *link) forward(pp *inPipe, track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
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
	// The link carries one track (the origin's top layer): the piped
	// producer has exactly the one layer that flows.
	info.Layers = nil
	ssrc := uint32(track.SSRC())
	prod, err := room.AddProducer(info, sfu.KeyframeRequesterFunc(func() { l.requestKeyframe(ssrc) }))
	if err != nil {
		l.log.Warn("adding piped producer failed", "room", pp.key.room, "producer", pp.key.producer, "err", err)
		l.endPipe(pp, "adding local producer failed")
		return
	}
	l.mu.Lock()
	if l.closed || l.pulls[pp.key] != pp {
		l.mu.Unlock()
		prod.Close()
		return
	}
	pp.producer = prod
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.readRTCP(pp, receiver, ssrc)
	l.log.Info("pipe active", "room", pp.key.room, "producer", pp.key.producer, "kind", info.Kind, "ssrc", ssrc)

	// One buffer and packet for the pipe's lifetime (Producer.WriteRTP
	// does not retain the packet): no allocation per packet.
	buf := make([]byte, linkReadBuffer)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue // larger than any MTU: pion dropped it
		}
		if err != nil {
			l.endPipe(pp, "track ended")
			return
		}
		if !sfu.ParseForwarded(&pkt, buf[:n]) { // strips the link hop's extensions
			continue
		}
		if err := prod.WriteRTP(&pkt); errors.Is(err, sfu.ErrProducerClosed) {
			l.endPipe(pp, "local producer closed")
			return
		}
	}
}

// linkReadBuffer is the size of a pipe's read buffer: more than pion's
// receive MTU (1460 bytes by default).
const linkReadBuffer = 1500

// readRTCP drains the RTCP the peer sends for pp's track and ends the pipe
// on an RTCP BYE for its SSRC (the peer's producer closed).
func (l *link) readRTCP(pp *inPipe, receiver *webrtc.RTPReceiver, ssrc uint32) {
	defer l.p.wg.Done()
	for {
		pkts, _, err := receiver.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if bye, ok := pkt.(*rtcp.Goodbye); ok && slices.Contains(bye.Sources, ssrc) {
				l.endPipe(pp, "peer sent BYE")
				return
			}
		}
	}
}

// requestKeyframe queues a PLI for the link track with media SSRC ssrc.
// Called by the engine (piped producer's KeyframeRequester); never blocks.
func (l *link) requestKeyframe(ssrc uint32) {
	select {
	case l.keyframes <- ssrc:
	default:
	}
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
	served := l.serves
	l.serves = make(map[pipeKey]*servedPipe)
	l.role.shutdownLocked()
	l.mu.Unlock()

	l.cancel()
	close(l.done)
	l.p.removeLink(l)
	releaseAll(res)
	for _, s := range served {
		s.consumer.Close()
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
