package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// runController owns signaling on the controller side of a link: it runs a
// negotiation round whenever kicked (coalescing every change made
// meanwhile, local or announced by the peer) and closes the link once it
// carried nothing in either direction for LinkIdleTimeout.
func (l *link) runController() {
	defer l.p.wg.Done()
	idle := time.NewTimer(l.p.cfg.LinkIdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
			l.round()
			if l.idle() {
				idle.Reset(l.p.cfg.LinkIdleTimeout)
			} else {
				idle.Stop()
			}
		case <-idle.C:
			if l.closeIfIdle() {
				return
			}
			idle.Reset(l.p.cfg.LinkIdleTimeout)
		}
	}
}

// idle reports whether the link carries nothing and nothing is wanted in
// either direction.
func (l *link) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed && len(l.pulls) == 0 && len(l.peerWanted) == 0
}

// round runs one offer/answer exchange with the answerer covering the
// current pulls and the answerer's latest wanted set, then settles both.
// Called only from runController. Any failure closes the link.
func (l *link) round() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	wanted, pulls, fresh := l.wantedLocked()
	peerWanted, version, side := l.peerWanted, l.peerVersion, l.peerSide
	l.mu.Unlock()

	// Senders first: AddTrack must not take the recvonly transceivers
	// added below for the pulls.
	tracks, rejected := l.reconcileServes(peerWanted)
	if len(fresh) == 0 && len(l.pc.GetTransceivers()) == 0 {
		// Nothing was ever negotiated and nothing is to be (e.g. every
		// wanted producer was refused): answer the peer without an empty
		// offer.
		l.mu.Lock()
		l.finishRoundLocked(version, tracks, rejected)
		l.mu.Unlock()
		return
	}
	err := l.addRecvSlots(fresh)
	var resp negotiateResponse
	if err == nil {
		l.mu.Lock()
		l.seq++
		req := negotiateRequest{
			LinkID: l.id, Side: side, Seq: l.seq, Wanted: wanted,
			WantVersion: version, Tracks: tracks, Rejected: rejected,
		}
		l.mu.Unlock()
		resp, err = l.exchange(req, pulls)
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
	if l.peerSide == side || side == "" {
		l.finishRoundLocked(version, tracks, rejected)
	}
	l.mu.Unlock()
	releaseAll(res)
	l.log.Debug("link negotiated", "pulls", len(wanted), "serves", len(tracks), "refused", len(rejected))
}

// addRecvSlots adds one recvonly transceiver per newly pulled producer: the
// m-line on which the answerer sends it.
func (l *link) addRecvSlots(kinds []sfu.Kind) error {
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
func (l *link) exchange(req negotiateRequest, pulls []*inPipe) (negotiateResponse, error) {
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
	if l.peerSide != resp.Side {
		// The peer answered from a new side (it replaced a stale side on
		// our first offer): what we recorded of the old side is void.
		l.resetPeerSideLocked(resp.Side)
	}
	l.recordSSRCsLocked(resp.Accepted, func(pp *inPipe) bool { return offered[pp] })
	l.mu.Unlock()
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
func (l *link) resetPeerSideLocked(side string) {
	if l.peerSide != "" {
		l.log.Info("peer side of the link changed", "old", l.peerSide, "new", side)
		l.peerWanted, l.peerVersion, l.applied = nil, 0, 0
		l.result = wantResponse{}
		close(l.roundDone) // waiters re-check and see the side change
		l.roundDone = make(chan struct{})
		l.kickLocked()
	}
	l.peerSide = side
}

// finishRoundLocked publishes the outcome of a round for the answerer's
// wanted set of version and wakes the want requests waiting for it. Caller
// holds l.mu.
func (l *link) finishRoundLocked(version uint64, tracks []AcceptedPipe, rejected []RejectedPipe) {
	l.applied = max(l.applied, version)
	l.result = wantResponse{LinkID: l.id, Version: version, Accepted: tracks, Rejected: rejected}
	close(l.roundDone)
	l.roundDone = make(chan struct{})
}

// acceptWants records the answerer's wanted set (a want request), has the
// next round negotiate it, and returns that round's outcome for it. It
// waits at most until ctx ends; the caller bounds ctx.
func (l *link) acceptWants(ctx context.Context, req wantRequest) (wantResponse, error) {
	l.mu.Lock()
	if req.Side == l.peerSide && req.Version > l.peerVersion {
		l.peerWanted, l.peerVersion = req.Wanted, req.Version
		l.kickLocked()
	}
	for {
		switch {
		case l.closed:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
		case l.peerSide != req.Side:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: side %s of the link was replaced", ErrControlConflict, req.Side)
		case req.Version < l.peerVersion:
			l.mu.Unlock()
			return wantResponse{}, fmt.Errorf("%w: want version %d superseded by %d", ErrControlConflict, req.Version, l.peerVersion)
		case l.applied >= req.Version:
			resp := l.result
			l.mu.Unlock()
			return resp, nil
		}
		ch := l.roundDone
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
func (l *link) closeIfIdle() bool {
	l.mu.Lock()
	if l.closed || len(l.pulls) > 0 || len(l.peerWanted) > 0 || len(l.kick) > 0 {
		closed := l.closed
		l.mu.Unlock()
		return closed
	}
	ch := make(chan struct{})
	l.closing = ch
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
	if l.closing == ch {
		l.closing = nil
		close(ch)
	}
	l.mu.Unlock()
	l.log.Debug("idle link kept: the peer wants producers")
	return false
}
