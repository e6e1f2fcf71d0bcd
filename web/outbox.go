package web

import (
	"context"
	"errors"
	"time"

	"github.com/coder/websocket"
)

// This file holds the sending half of a session: the bounded outbox, the
// close request, and writeLoop, the only goroutine that writes to the
// WebSocket.
//
// Nothing that enqueues ever blocks: when the outbox is full the client is
// too slow, the session is closed with StatusPolicyViolation ("slow client")
// and its participant is closed, so one stuck browser can never stall the
// engine goroutines delivering room events.

// Close reasons (WebSocket close frames carry at most 123 bytes of reason).
const (
	reasonLeft           = "left"
	reasonSlowClient     = "slow client"
	reasonTooBig         = "message too big"
	reasonShutdown       = "server shutting down"
	reasonParticipantEnd = "participant closed"
	reasonWriteFailed    = "write failed"
	reasonFlood          = "rate limit exceeded"
	reasonDraining       = "draining"
)

// send enqueues a reply produced by the reader goroutine (pong, error,
// publish-answer). It never blocks.
func (s *session) send(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushLocked(b)
}

// sendEvent enqueues a message caused by an engine event. Until the
// "joined" reply is queued (events may arrive while Engine.Join is still
// running) events are held in pending, bounded by the outbox size, so the
// client always sees "joined" first. It never blocks.
func (s *session) sendEvent(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeRequested {
		return
	}
	if !s.live {
		if len(s.pending) >= cap(s.out) {
			s.overflowLocked()
			return
		}
		s.pending = append(s.pending, b)
		return
	}
	s.pushLocked(b)
}

// goLive enqueues the "joined" reply followed by the events held back
// during Join; from then on events go straight to the outbox.
func (s *session) goLive(joined []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushLocked(joined)
	for _, b := range s.pending {
		s.pushLocked(b)
	}
	s.pending = nil
	s.live = true
}

// pushLocked puts b into the outbox or, when full, closes the session as a
// slow client. Caller holds s.mu.
func (s *session) pushLocked(b []byte) {
	if s.closeRequested {
		return
	}
	select {
	case s.out <- b:
	default:
		s.overflowLocked()
	}
}

func (s *session) overflowLocked() {
	s.logger().Warn("signaling: outbox full, disconnecting slow client", "outbox", cap(s.out))
	s.requestCloseLocked(websocket.StatusPolicyViolation, reasonSlowClient, false)
}

// requestClose asks writeLoop to close the connection with code and
// reason; with flush it first writes what is already queued. Only the
// first request counts. It never blocks; the participant is closed by
// watch as soon as the request is made.
func (s *session) requestClose(code websocket.StatusCode, reason string, flush bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requestCloseLocked(code, reason, flush)
}

func (s *session) requestCloseLocked(code websocket.StatusCode, reason string, flush bool) {
	if s.closeRequested {
		return
	}
	s.closeRequested = true
	s.closeCode, s.closeReason, s.closeFlush = code, reason, flush
	s.pending = nil
	close(s.closing)
}

// closing reports whether a close was requested.
func (s *session) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// writeLoop writes queued messages until a close is requested (or the
// server shuts down), then performs the close handshake. It is the only
// writer of s.conn, owned by run, and always leaves the connection closed,
// which also ends readLoop.
func (s *session) writeLoop() {
	defer s.wg.Done()
	for !s.isClosing() {
		select {
		case b := <-s.out:
			if err := s.write(b); err != nil {
				s.abort(err)
				return
			}
			s.wrote(b)
		case <-s.closing:
		case <-s.ctx.Done():
			s.requestClose(websocket.StatusGoingAway, reasonShutdown, false)
		}
	}

	s.mu.Lock()
	code, reason, flush := s.closeCode, s.closeReason, s.closeFlush
	s.mu.Unlock()
	for flush {
		select {
		case b := <-s.out:
			if err := s.write(b); err != nil {
				s.abort(err)
				return
			}
			s.wrote(b)
		default:
			flush = false
		}
	}
	err := s.conn.Close(code, reason)
	s.logger().Debug("signaling: connection closed", "code", code, "reason", reason, "err", err)
}

// write writes one message, bounded by the write timeout. It is not tied to
// the server's lifetime: on shutdown a write in progress may finish (at most
// WriteTimeout) so the client still gets a proper close frame.
func (s *session) write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.writeTimeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// wrote is called by writeLoop after it wrote b: when b is the "joined"
// reply, the join latency goes to Deps.ObserveJoin (once).
func (s *session) wrote(b []byte) {
	m := s.joinedMsg.Load()
	if m == nil || len(b) == 0 || &b[0] != m {
		return
	}
	s.joinedMsg.Store(nil)
	s.srv.deps.ObserveJoin(time.Since(s.joinStart))
}

// abort drops a connection whose write failed (peer gone or write timeout)
// without a close handshake.
func (s *session) abort(err error) {
	s.requestClose(websocket.StatusInternalError, reasonWriteFailed, false)
	if errors.Is(err, context.DeadlineExceeded) {
		s.logger().Info("signaling: write timed out, dropping connection", "timeout", s.writeTimeout)
	} else {
		s.logger().Debug("signaling: write failed, dropping connection", "err", err)
	}
	_ = s.conn.CloseNow()
}
