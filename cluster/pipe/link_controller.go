package pipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// controller is the role of the link's side whose node id is the smaller
// one: it makes every offer, one round at a time, and decides when an idle
// link closes. Its fields are guarded by the link's mu.
type controller struct {
	l *link

	seq         uint64        // offers sent
	peerSide    string        // the answerer's side id, "" until learned
	peerWanted  []PipeRef     // the answerer's latest wanted set
	peerVersion uint64        // its version
	applied     uint64        // peer want version answered by the last completed round
	result      wantResponse  // outcome of the peer's wants in that round
	roundDone   chan struct{} // closed (and replaced) after every round
	closing     chan struct{} // non-nil while an idle close is agreed with the peer
}

func newController(l *link) *controller {
	return &controller{l: l, roundDone: make(chan struct{})}
}

func (c *controller) name() string { return RoleController }

func (c *controller) run() { c.runController() }

// sendsOnOwnLines: the controller sends on sendonly m-lines of its own.
func (c *controller) sendsOnOwnLines() bool { return true }

func (c *controller) closingLocked() chan struct{} { return c.closing }

// unusedLocked: a controller side is never "unused" (it closes through
// closeIfIdle).
func (c *controller) unusedLocked() bool { return false }

// shutdownLocked wakes PipeIn calls waiting for an idle close and want
// requests waiting for a round: they re-check and see the link closed.
func (c *controller) shutdownLocked() {
	if c.closing != nil {
		close(c.closing)
		c.closing = nil
	}
	close(c.roundDone)
	c.roundDone = make(chan struct{})
}

// acceptsCloseFrom: a close request must come from the answerer side this
// controller knows (any side before it learned one).
func (c *controller) acceptsCloseFrom(side string) bool {
	return c.peerSide == "" || c.peerSide == side
}

// runController owns signaling on the controller side of a link: it runs a
// negotiation round whenever kicked (coalescing every change made
// meanwhile, local or announced by the peer) and closes the link once it
// carried nothing in either direction for LinkIdleTimeout.
func (c *controller) runController() {
	l := c.l
	defer l.p.wg.Done()
	idle := time.NewTimer(l.p.cfg.LinkIdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
			c.round()
			if c.idle() {
				idle.Reset(l.p.cfg.LinkIdleTimeout)
			} else {
				idle.Stop()
			}
		case <-idle.C:
			if c.closeIfIdle() {
				return
			}
			idle.Reset(l.p.cfg.LinkIdleTimeout)
		}
	}
}

// idle reports whether the link carries nothing and nothing is wanted in
// either direction.
func (c *controller) idle() bool {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed && len(l.pulls) == 0 && len(c.peerWanted) == 0
}

// round runs one offer/answer exchange with the answerer covering the
// current pulls and the answerer's latest wanted set, then settles both.
// Called only from runController. Any failure closes the link.
func (c *controller) round() {
	l := c.l
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	wanted, pulls, fresh := l.wantedLocked()
	peerWanted, version, side := c.peerWanted, c.peerVersion, c.peerSide
	l.mu.Unlock()

	// Senders first: AddTrack must not take the recvonly transceivers
	// added below for the pulls.
	tracks, rejected := l.reconcileServes(peerWanted)
	if len(fresh) == 0 && len(l.pc.GetTransceivers()) == 0 {
		// Nothing was ever negotiated and nothing is to be (e.g. every
		// wanted producer was refused): answer the peer without an empty
		// offer.
		l.mu.Lock()
		c.finishRoundLocked(version, tracks, rejected)
		l.mu.Unlock()
		return
	}
	err := c.addRecvSlots(fresh)
	var resp negotiateResponse
	if err == nil {
		l.mu.Lock()
		c.seq++
		req := negotiateRequest{
			LinkID: l.id, Side: side, Seq: c.seq, Wanted: wanted,
			WantVersion: version, Tracks: tracks, Rejected: rejected,
		}
		l.mu.Unlock()
		resp, err = c.exchange(req, pulls)
	}
	if err != nil {
		if l.isClosed() {
			return // closed under us (DropNode, Close, replaced, ...)
		}
		l.logFailure("link negotiation failed", "err", err)
		l.shutdown(fmt.Errorf("%w: %v", ErrLinkFailed, err), closeOpts{notify: true, tellPeer: true})
		return
	}
	l.mu.Lock()
	res := l.settleLocked(pulls, resp.Accepted, resp.Rejected)
	if c.peerSide == side || side == "" {
		c.finishRoundLocked(version, tracks, rejected)
	}
	l.mu.Unlock()
	releaseAll(res)
	l.log.Debug("link negotiated", "pulls", len(wanted), "serves", len(tracks), "refused", len(rejected))
}

// addRecvSlots adds one recvonly transceiver per newly pulled producer: the
// m-line on which the answerer sends it.
func (c *controller) addRecvSlots(kinds []sfu.Kind) error {
	l := c.l
	for _, k := range kinds {
		if _, err := l.pc.AddTransceiverFromKind(codecType(k), webrtc.RTPTransceiverInit{
			Direction: webrtc.RTPTransceiverDirectionRecvonly,
		}); err != nil {
			return fmt.Errorf("adding %s transceiver: %w", k, err)
		}
	}
	return nil
}

// exchange creates the offer (ICE gathering complete), sends it with req
// and applies the answer. Before applying it, it records the SSRCs the
// answerer announced for the offered pulls, so that onTrack binds exactly
// those tracks. Bounded by RequestTimeout and the link context.
func (c *controller) exchange(req negotiateRequest, pulls []*inPipe) (negotiateResponse, error) {
	l := c.l
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
	req.Offer = *local
	l.fillMids(req.Tracks)
	resp, err := l.p.client.negotiate(ctx, l.peer, req)
	if err != nil {
		return negotiateResponse{}, err
	}
	if resp.Answer.Type != webrtc.SDPTypeAnswer {
		return negotiateResponse{}, fmt.Errorf("%w: answer has type %s", ErrControlBadResponse, resp.Answer.Type)
	}
	if !validID(resp.Side) {
		return negotiateResponse{}, fmt.Errorf("%w: answer names no side", ErrControlBadResponse)
	}
	offered := make(map[*inPipe]bool, len(pulls))
	for _, pp := range pulls {
		offered[pp] = true
	}
	l.mu.Lock()
	if c.peerSide != resp.Side {
		// The peer answered from a new side (it replaced a stale side on
		// our first offer): what we recorded of the old side is void.
		c.resetPeerSideLocked(resp.Side)
	}
	replaced := l.recordSSRCsLocked(resp.Accepted, func(pp *inPipe) bool { return offered[pp] })
	l.mu.Unlock()
	releaseAll(replaced)
	if err := l.pc.SetRemoteDescription(resp.Answer); err != nil {
		return negotiateResponse{}, fmt.Errorf("setting answer: %w", err)
	}
	l.mu.Lock()
	l.exchanged = true
	l.mu.Unlock()
	return resp, nil
}

// resetPeerSideLocked makes side the answerer's side: the wanted set of a
// previous side is dropped (the next round stops serving it), requests
// waiting for it fail. Caller holds l.mu.
func (c *controller) resetPeerSideLocked(side string) {
	l := c.l
	if c.peerSide != "" {
		l.log.Info("peer side of the link changed", "old", c.peerSide, "new", side)
		c.peerWanted, c.peerVersion, c.applied = nil, 0, 0
		c.result = wantResponse{}
		close(c.roundDone) // waiters re-check and see the side change
		c.roundDone = make(chan struct{})
		l.kickLocked()
	}
	c.peerSide = side
}

// finishRoundLocked publishes the outcome of a round for the answerer's
// wanted set of version and wakes the want requests waiting for it. Caller
// holds l.mu.
func (c *controller) finishRoundLocked(version uint64, tracks []AcceptedPipe, rejected []RejectedPipe) {
	l := c.l
	c.applied = max(c.applied, version)
	c.result = wantResponse{LinkID: l.id, Version: version, Accepted: tracks, Rejected: rejected}
	close(c.roundDone)
	c.roundDone = make(chan struct{})
}

// acceptWants records the answerer's wanted set (a want request), has the
// next round negotiate it, and returns that round's outcome for it. It
// waits at most until ctx ends; the caller bounds ctx.
func (c *controller) acceptWants(ctx context.Context, req wantRequest) (wantResponse, error) {
	l := c.l
	l.mu.Lock()
	if req.Side == c.peerSide && req.Version > c.peerVersion {
		c.peerWanted, c.peerVersion = req.Wanted, req.Version
		l.kickLocked()
	}
	for {
		switch {
		case l.closed:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
		case c.peerSide != req.Side:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: side %s of the link was replaced", ErrControlConflict, req.Side)
		case req.Version < c.peerVersion:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: want version %d superseded by %d", ErrControlConflict, req.Version, c.peerVersion)
		case c.applied >= req.Version:
			resp := c.result
			l.mu.Unlock()
			return resp, nil
		}
		ch := c.roundDone
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return wantResponse{}, fmt.Errorf("%w: waiting for the negotiation: %v", ErrControlUnavailable, ctx.Err())
		}
		l.mu.Lock()
	}
}

// closeIfIdle closes the link if it still carries nothing, after the
// answerer agreed (it refuses while it wants something: its want request
// is then on its way). While the answer is awaited, local PipeIn calls
// wait (want returns the closing channel). Reports whether the link closed.
func (c *controller) closeIfIdle() bool {
	l := c.l
	l.mu.Lock()
	if l.closed || len(l.pulls) > 0 || len(c.peerWanted) > 0 || len(l.kick) > 0 {
		closed := l.closed
		l.mu.Unlock()
		return closed
	}
	ch := make(chan struct{})
	c.closing = ch
	ask := l.exchanged
	req := closeLinkRequest{LinkID: l.id, Side: l.side, Idle: true}
	l.mu.Unlock()

	agreed := true
	if ask {
		ctx, cancel := context.WithTimeout(l.ctx, min(l.p.cfg.RequestTimeout, courtesyTimeout))
		resp, err := l.p.client.closeLink(ctx, l.peer, req)
		cancel()
		switch {
		case err != nil:
			// Unreachable, or it no longer knows the link: close anyway.
			l.log.Debug("asking the peer to close the idle link failed", "err", err)
		case !resp.Closed:
			agreed = false
		}
	}
	if agreed {
		return l.shutdown(fmt.Errorf("%w: link idle", ErrPipeRemoved), closeOpts{})
	}
	l.mu.Lock()
	if c.closing == ch {
		c.closing = nil
		close(ch)
	}
	l.mu.Unlock()
	l.log.Debug("idle link kept: the peer wants producers")
	return false
}
