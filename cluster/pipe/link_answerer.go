package pipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// wantTimeoutFactor bounds a want request in RequestTimeouts: the
// controller may have to finish a round in flight before it runs the one
// covering the request, and each round is bounded by RequestTimeout.
const wantTimeoutFactor = 3

// answerer is the role of the link's side whose node id is the larger one:
// it answers the controller's offers and sends it its wanted set.
type answerer struct {
	l   *link
	sem chan struct{} // cap 1: one offer answered at a time

	sentVersion uint64 // version of the last wanted set the controller answered; guarded by l.mu
}

func newAnswerer(l *link) *answerer { return &answerer{l: l, sem: make(chan struct{}, 1)} }

func (a *answerer) name() string { return RoleAnswerer }

func (a *answerer) run() { a.runAnswerer() }

// sendsOnOwnLines: the answerer's AddTrack takes the recvonly m-lines the
// controller offered for it.
func (a *answerer) sendsOnOwnLines() bool { return false }

func (a *answerer) closingLocked() chan struct{} { return nil }

// unusedLocked: no offer adopted this side and no want is due.
func (a *answerer) unusedLocked() bool {
	l := a.l
	return l.id == "" && l.version == a.sentVersion && len(l.kick) == 0
}

func (a *answerer) shutdownLocked() {}

// acceptsCloseFrom: the controller's side is the link id, checked by the
// caller.
func (a *answerer) acceptsCloseFrom(string) bool { return true }

// runAnswerer sends the wanted set to the controller whenever it changed,
// one request at a time (changes made meanwhile are coalesced into the
// next). It closes a side that the controller never adopted once it wants
// nothing for LinkIdleTimeout; an adopted link is closed by the controller.
func (a *answerer) runAnswerer() {
	l := a.l
	defer l.p.wg.Done()
	idle := time.NewTimer(l.p.cfg.LinkIdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-l.kick:
			a.sendWants()
			idle.Reset(l.p.cfg.LinkIdleTimeout)
		case <-idle.C:
			if l.shutdown(fmt.Errorf("%w: link idle", ErrPipeRemoved), closeOpts{onlyIfIdle: true, onlyIfUnused: true}) {
				return
			}
		}
	}
}

// sendWants sends the current wanted set to the controller (POST want) and
// waits for the round that negotiated it. The controller's offer for that
// round arrives meanwhile (answer settles the pulls it covers); the
// response settles what is left. A failed or refused request fails the
// link.
func (a *answerer) sendWants() {
	l := a.l
	l.mu.Lock()
	if l.closed || l.version == a.sentVersion {
		l.mu.Unlock()
		return
	}
	wanted, pulls, _ := l.wantedLocked()
	v := l.version
	req := wantRequest{LinkID: l.id, Side: l.side, Version: v, Wanted: wanted}
	if l.id == "" && len(wanted) == 0 {
		// The controller never heard of this side: nothing to withdraw.
		a.sentVersion = v
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(l.ctx, wantTimeoutFactor*l.p.cfg.RequestTimeout)
	resp, err := l.p.client.want(ctx, l.peer, req)
	cancel()
	if err == nil && resp.Version < v {
		err = fmt.Errorf("%w: want version %d answered as %d", ErrControlBadResponse, v, resp.Version)
	}
	if err != nil {
		if l.isClosed() {
			return // closed under us
		}
		l.logFailure("sending wanted producers to the controller failed", "err", err)
		l.shutdown(fmt.Errorf("%w: %v", ErrLinkFailed, err), closeOpts{notify: true, tellPeer: true})
		return
	}
	l.mu.Lock()
	a.sentVersion = max(a.sentVersion, v)
	res := l.settleLocked(pulls, resp.Accepted, resp.Rejected)
	l.mu.Unlock()
	releaseAll(res)
}

// answer applies one offer from the controller (POST negotiate): it
// records the SSRCs of the controller's tracks for our pulls, sets the
// offer, serves exactly the producers the controller wants (its tracks
// take the recvonly m-lines the controller offered for them), answers
// after ICE gathering, and settles the pulls the offer covers. Offers are
// answered one at a time. Any failure after the offer was applied closes
// the link (the controller fails its side too and starts over).
func (a *answerer) answer(ctx context.Context, req negotiateRequest) (negotiateResponse, error) {
	l := a.l
	select {
	case a.sem <- struct{}{}:
	case <-l.done:
		return negotiateResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	case <-ctx.Done():
		return negotiateResponse{}, fmt.Errorf("%w: waiting for the previous negotiation: %v", ErrControlUnavailable, ctx.Err())
	}
	defer func() { <-a.sem }()

	// req.WantVersion only speaks of our wanted sets if the controller
	// knows this side (else it is about none, or a replaced side).
	covered := func(pp *inPipe) bool { return req.Side == l.side && pp.version <= req.WantVersion }
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return negotiateResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	}
	replaced := l.recordSSRCsLocked(req.Tracks, covered)
	l.mu.Unlock()
	releaseAll(replaced)

	if err := l.pc.SetRemoteDescription(req.Offer); err != nil {
		l.shutdown(fmt.Errorf("%w: bad offer: %v", ErrLinkFailed, err), closeOpts{notify: true})
		return negotiateResponse{}, fmt.Errorf("%w: applying offer: %v", ErrControlBadRequest, err)
	}
	accepted, rejected := l.reconcileServes(req.Wanted)
	local, err := a.createAnswer(ctx)
	if err != nil {
		l.shutdown(fmt.Errorf("%w: answering: %v", ErrLinkFailed, err), closeOpts{notify: true})
		return negotiateResponse{}, err
	}
	l.fillMids(accepted)

	l.mu.Lock()
	var cands []*inPipe
	for _, pp := range l.pulls {
		if covered(pp) {
			cands = append(cands, pp)
		}
	}
	res := l.settleLocked(cands, req.Tracks, req.Rejected)
	l.exchanged = true
	l.mu.Unlock()
	releaseAll(res)
	l.log.Debug("link negotiated", "seq", req.Seq, "serves", len(accepted), "refused", len(rejected))
	return negotiateResponse{Side: l.side, Answer: local, Accepted: accepted, Rejected: rejected}, nil
}

// createAnswer creates and sets the answer and waits for ICE gathering
// (bounded by ctx).
func (a *answerer) createAnswer(ctx context.Context) (webrtc.SessionDescription, error) {
	l := a.l
	answer, err := l.pc.CreateAnswer(nil)
	if err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("creating answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(answer); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("setting answer: %w", err)
	}
	select {
	case <-gathered:
	case <-l.done:
		return webrtc.SessionDescription{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	case <-ctx.Done():
		return webrtc.SessionDescription{}, fmt.Errorf("%w: gathering candidates: %v", ErrControlUnavailable, ctx.Err())
	}
	local := l.pc.LocalDescription()
	if local == nil {
		return webrtc.SessionDescription{}, errors.New("no local description after answering")
	}
	return *local, nil
}

// closeRequested handles a close request from the peer for link id
// req.LinkID: an idle close (from the controller) is refused while this
// side wants something; any other close fails the link like a PC failure.
// Reports whether the link was closed.
func (l *link) closeRequested(req closeLinkRequest) bool {
	l.mu.Lock()
	match := !l.closed && l.id != "" && l.id == req.LinkID &&
		l.role.acceptsCloseFrom(req.Side)
	l.mu.Unlock()
	if !match {
		return false
	}
	if req.Idle {
		return l.shutdown(fmt.Errorf("%w: link idle", ErrPipeRemoved), closeOpts{onlyIfIdle: true})
	}
	l.log.Info("link closed by the peer")
	return l.shutdown(fmt.Errorf("%w: closed by the peer", ErrLinkFailed), closeOpts{notify: true})
}
