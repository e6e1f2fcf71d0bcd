// Package peer holds the client side of confab's peer connections that
// tests and tools share. Its Answerer is the answering side of a peer
// connection whose offers come from the other end: the subscriber peer
// connection of a confab participant, as a browser, a test client or the
// load generator holds it.
package peer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Answerer is the answering side of a peer connection whose offers come
// from the other end (a confab subscriber peer connection). It creates the
// peer connection on the first offer and answers every offer without
// trickle ICE: each answer carries all local candidates. It is safe for
// concurrent use; answers are made one at a time.
type Answerer struct {
	api     *webrtc.API
	onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	done    chan struct{} // closed by the first Close

	// negotiating is held by Answer and by Close while it closes the peer
	// connection: pion leaks the ICE agent of a peer connection closed
	// while a negotiation step creates it, so the two never overlap.
	negotiating sync.Mutex
	pcClosed    bool // guarded by negotiating

	mu     sync.Mutex // guards pc and closed
	pc     *webrtc.PeerConnection
	closed bool
}

// NewAnswerer returns an Answerer whose peer connection api creates (with
// the default webrtc.Configuration). onTrack, which may be nil, is the peer
// connection's OnTrack handler: pion calls it on its own goroutine for each
// remote track, and the track's reads fail once the Answerer is closed.
func NewAnswerer(api *webrtc.API, onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)) *Answerer {
	return &Answerer{api: api, onTrack: onTrack, done: make(chan struct{})}
}

// Answer applies offer as the remote description (creating the peer
// connection on first use), sets a local answer, waits for ICE gathering
// and returns the answer with every local candidate in it, ready to send.
//
// It returns an error wrapping ErrStopped if stop (which may be nil) closes
// before the answer is ready, and one wrapping ErrClosed if Close came
// before or during the call. Other errors wrap the failing pion step.
func (a *Answerer) Answer(offer webrtc.SessionDescription, stop <-chan struct{}) (webrtc.SessionDescription, error) {
	a.negotiating.Lock()
	defer a.negotiating.Unlock()
	select {
	case <-stop:
		return webrtc.SessionDescription{}, fmt.Errorf("%w before the offer was applied", ErrStopped)
	default:
	}
	pc, err := a.peerConnection()
	if err != nil {
		return webrtc.SessionDescription{}, err
	}
	if err := pc.SetRemoteDescription(offer); err != nil {
		return webrtc.SessionDescription{}, stepError("set remote description", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return webrtc.SessionDescription{}, stepError("create answer", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return webrtc.SessionDescription{}, stepError("set local description", err)
	}
	select {
	case <-gathered:
	case <-stop:
		return webrtc.SessionDescription{}, fmt.Errorf("%w while gathering ICE candidates", ErrStopped)
	case <-a.done:
	}
	select {
	case <-a.done: // also when Close came during a step and gathering is done
		return webrtc.SessionDescription{}, fmt.Errorf("%w while answering", ErrClosed)
	default:
	}
	local := pc.LocalDescription()
	if local == nil { // the peer connection was closed by the other end
		return webrtc.SessionDescription{}, stepError("read local description", webrtc.ErrConnectionClosed)
	}
	return *local, nil
}

// Serve answers the offers that arrive on offers, one at a time, and hands
// each answer to send (which delivers it to the offering side), until stop
// closes or the Answerer is closed. An error of Answer or send goes to fail
// and serving goes on; errors that come once stop has closed are dropped,
// as they are expected while the connection goes away. Serve runs on the
// caller's goroutine.
func (a *Answerer) Serve(offers <-chan webrtc.SessionDescription, stop <-chan struct{},
	send func(webrtc.SessionDescription) error, fail func(error)) {
	for {
		select {
		case <-stop:
			return
		case offer := <-offers:
			answer, err := a.Answer(offer, stop)
			if err == nil {
				err = send(answer)
			}
			select {
			case <-stop:
				return
			default:
			}
			if errors.Is(err, ErrClosed) {
				return
			}
			if err != nil {
				fail(err)
			}
		}
	}
}

// peerConnection returns the peer connection, creating it on first use; it
// fails after Close.
func (a *Answerer) peerConnection() (*webrtc.PeerConnection, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, ErrClosed
	}
	if a.pc == nil {
		pc, err := a.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return nil, fmt.Errorf("peer: new peer connection: %w", err)
		}
		if a.onTrack != nil {
			pc.OnTrack(a.onTrack)
		}
		a.pc = pc
	}
	return a.pc, nil
}

// stepError wraps the error of a negotiation step.
func stepError(step string, err error) error {
	return fmt.Errorf("peer: %s: %w", step, err)
}

// PC returns the peer connection, or nil before the first offer. Use it for
// what the Answerer does not do (RTCP, stats); closing it is Close's job.
func (a *Answerer) PC() *webrtc.PeerConnection {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pc
}

// Close closes the peer connection, which ends the reads of its tracks. It
// interrupts an Answer waiting for ICE gathering, waits for one in a pion
// negotiation step, and makes later ones fail with ErrClosed. It is
// idempotent: every call returns once the peer connection is closed, and
// only the first reports an error of closing it.
func (a *Answerer) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.done)
	}
	a.mu.Unlock()
	a.negotiating.Lock()
	defer a.negotiating.Unlock()
	pc := a.PC() // final: closed is set, so Answer creates none any more
	if pc == nil || a.pcClosed {
		return nil
	}
	a.pcClosed = true
	if err := pc.Close(); err != nil {
		return fmt.Errorf("peer: close peer connection: %w", err)
	}
	return nil
}
