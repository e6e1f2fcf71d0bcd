package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web/access"
)

// session is one signaling WebSocket connection and (after "join") its
// sfu.Participant.
//
// Goroutines, all owned by run (which runs on the HTTP handler goroutine
// and returns only after the others have exited):
//   - the reader: run itself, in readLoop; it decodes client messages and
//     is the only goroutine that calls Participant methods other than Close;
//   - writeLoop: the only writer of the socket (see outbox.go);
//   - watch (after a successful join): closes the participant when the
//     session closes, and closes the session when the engine ends the
//     participant.
//
// Engine events arrive through HandleEvent on engine goroutines and are
// only ever enqueued.
type session struct {
	srv          *Server
	conn         *websocket.Conn
	room         string
	selfURL      string                      // this node's base URL as the client reached it
	log          atomic.Pointer[slog.Logger] // scoped; gains the participant id on join
	ctx          context.Context             // the server's lifetime
	writeTimeout time.Duration

	// version is the protocol version of the latest join attempt (0
	// before any); once joined, every message to the client carries it
	// and every client message must. Set by the reader before the join
	// checks for draining (so Drain, which marks the server draining
	// first, sees it), read by engine goroutines (HandleEvent) and Drain.
	version atomic.Int32

	out     chan []byte   // bounded outbox, drained by writeLoop
	endOnce sync.Once     // ended
	closing chan struct{} // closed by the first requestClose
	wg      sync.WaitGroup

	// Reader-goroutine state (no lock needed).
	participant *sfu.Participant // nil until joined
	grants      access.Grants    // what the participant may do (set by join)
	replyV      int              // version of the replies to the message being handled (see receive)
	limiter     *rateLimiter     // nil when rate limiting is disabled
	limitedOnce bool             // the first rate-limited message was logged
	trickled    map[sfu.Target]int

	mu             sync.Mutex // guards the fields below
	closeRequested bool
	closeCode      websocket.StatusCode
	closeReason    string
	closeFlush     bool
	live           bool     // "joined" was queued; events go straight to out
	pending        [][]byte // events that arrived before "joined" was queued
	offerMids      []string // mids of the latest subscriber offer (nil before the first)

	// Join latency (Deps.ObserveJoin): the reader sets joinStart, then
	// joinedMsg to the first byte of the queued "joined"; writeLoop
	// observes the latency once it wrote that message.
	joinStart time.Time
	joinedMsg atomic.Pointer[byte]
}

// The session receives its participant's engine events.
var _ sfu.EventHandler = (*session)(nil)

// newSession prepares a session on conn for room; selfURL is this node's
// base URL as the client reached it (for "joined".nodes without
// Deps.Peers). The caller runs it with run.
func newSession(srv *Server, conn *websocket.Conn, room, selfURL string, log *slog.Logger) *session {
	s := &session{
		srv:          srv,
		conn:         conn,
		room:         room,
		selfURL:      selfURL,
		ctx:          srv.ctx,
		writeTimeout: srv.cfg.WriteTimeout,
		out:          make(chan []byte, srv.cfg.OutboxSize),
		closing:      make(chan struct{}),
		limiter:      newRateLimiter(&srv.cfg),
		trickled:     map[sfu.Target]int{},
	}
	s.log.Store(log)
	return s
}

// protocol returns the session's protocol version: the version of its
// (latest) join, protocolV1 before any.
func (s *session) protocol() int {
	if v := s.version.Load(); v != 0 {
		return int(v)
	}
	return protocolV1
}

// logger returns the session's current scoped logger.
func (s *session) logger() *slog.Logger { return s.log.Load() }

// run serves the connection until it closes and everything the session
// started has stopped. The participant (if any) is closed by then.
func (s *session) run() {
	s.wg.Add(1)
	go s.writeLoop()
	s.readLoop()
	// The peer went away or the connection was closed by writeLoop; make
	// sure writeLoop and watch finish either way.
	s.requestClose(websocket.StatusNormalClosure, "", false)
	s.wg.Wait()
}

// readLoop reads and handles client messages until the connection fails
// or is closed (writeLoop always closes it on its way out).
func (s *session) readLoop() {
	s.conn.SetReadLimit(s.srv.cfg.MaxMessageBytes)
	for {
		// Not bound to s.ctx: cancelling a Read closes the socket at once,
		// and on shutdown writeLoop should get to send its close frame.
		typ, data, err := s.conn.Read(context.Background())
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrMessageTooBig):
				// The library has already sent the close frame.
				s.logger().Info("signaling: message too big, closing", "limit", s.srv.cfg.MaxMessageBytes)
				s.requestClose(websocket.StatusMessageTooBig, reasonTooBig, false)
			case websocket.CloseStatus(err) != -1:
				s.logger().Debug("signaling: client closed the connection", "code", websocket.CloseStatus(err))
			default:
				s.logger().Debug("signaling: read ended", "err", err)
			}
			return
		}
		s.receive(typ, data)
	}
}

// receive is the per-message state machine of the session: rate limit,
// framing, decoding and dispatch; failures are reported to the client as
// "error" messages. Once a close was requested it ignores everything (the
// reader keeps reading until the close handshake completes). Reader
// goroutine only (tests and fuzzing drive it directly).
//
// Replies (including errors) carry the session's version; before the
// session has joined, the version of the message they answer when that
// one is supported (see handle).
func (s *session) receive(typ websocket.MessageType, data []byte) {
	if s.isClosing() {
		return
	}
	s.replyV = s.protocol()
	switch s.limiter.judge() {
	case abusive:
		s.logger().Warn("signaling: client keeps flooding, closing",
			"rate", s.srv.cfg.RateLimit, "burst", s.srv.cfg.RateBurst, "factor", s.srv.cfg.AbuseFactor)
		s.requestClose(websocket.StatusPolicyViolation, reasonFlood, false)
		return
	case limited:
		if !s.limitedOnce {
			s.limitedOnce = true
			s.logger().Info("signaling: client exceeds the rate limit, dropping messages",
				"rate", s.srv.cfg.RateLimit, "burst", s.srv.cfg.RateBurst)
		}
		s.sendError(protoErrorf(errRateLimited, "too many messages: at most %v per second (bursts of %d); message dropped",
			s.srv.cfg.RateLimit, s.srv.cfg.RateBurst))
		return
	}
	if typ != websocket.MessageText {
		s.sendError(protoErrorf(errBadMessage, "binary messages are not supported"))
		return
	}
	if err := s.handle(data); err != nil {
		s.sendError(err)
	}
}

// handle decodes and executes one client message. The returned error is
// reported to the client as an "error" message; the session stays open.
func (s *session) handle(data []byte) error {
	want := 0 // before the join any supported version, after it the join's
	if s.participant != nil {
		want = s.protocol()
	}
	msg, err := parseMessage(data, want)
	if s.participant == nil && msg.V != 0 {
		s.replyV = msg.V // not joined: answer in the message's version
	}
	if err != nil {
		return err
	}
	if max := s.srv.cfg.MaxProtocol; msg.V > max {
		return protoErrorf(errUnsupportedVersion, "unsupported protocol version %d: this node speaks versions 1 to %d", msg.V, max)
	}
	if msg.Type == typeJoin {
		return s.join(msg)
	}
	p := s.participant
	if p == nil {
		return protoErrorf(errNotJoined, "%q before join: send join first", msg.Type)
	}
	switch msg.Type {
	case typePing:
		s.sendMessage(newOutbound(s.replyV, typePong))
	case typeLeave:
		s.logger().Debug("signaling: participant leaves")
		s.requestClose(websocket.StatusNormalClosure, reasonLeft, true)
	case typePublish:
		if err := checkSDP(msg.Type, msg.SDP.Type, msg.SDP.SDP); err != nil {
			return err
		}
		if err := s.mayPublish(msg); err != nil {
			return err
		}
		if msg.Sources != nil {
			if err := p.SetSources(msg.Sources); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
		answer, err := p.Publish(msg.SDP)
		if err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		reply := newOutbound(s.replyV, typePublishAnswer)
		reply.SDP = toWireSDP(answer)
		s.sendMessage(reply)
	case typeSubscriberAnswer:
		if err := checkSDP(msg.Type, msg.SDP.Type, msg.SDP.SDP); err != nil {
			return err
		}
		// The engine offers one at a time and waits for the answer, so
		// the latest offer is the one being answered.
		s.mu.Lock()
		offerMids := s.offerMids
		s.mu.Unlock()
		if offerMids != nil {
			if err := matchOffer(msg.Type, msg.SDP.SDP, offerMids); err != nil {
				return err
			}
		}
		if err := p.SetSubscriberAnswer(msg.SDP); err != nil {
			return fmt.Errorf("subscriber answer: %w", err)
		}
	case typeCandidate:
		if msg.Candidate.Candidate != "" {
			if s.trickled[msg.Target] >= maxTrickleCandidates {
				return protoErrorf(errBadMessage, "candidate: more than %d candidates for the %s connection", maxTrickleCandidates, msg.Target)
			}
			s.trickled[msg.Target]++
		}
		if err := p.AddICECandidate(msg.Target, msg.Candidate); err != nil {
			return fmt.Errorf("candidate for %s: %w", msg.Target, err)
		}
	case typeMediaState:
		if err := p.SetMediaState(msg.State); err != nil && !errors.Is(err, sfu.ErrParticipantClosed) {
			return fmt.Errorf("media state: %w", err)
		}
	case typeModerate:
		if !s.grants.Admin {
			return protoErrorf(access.ErrForbidden, "moderate: your access token has no admin grant")
		}
		if err := p.Moderate(msg.Mod); err != nil && !errors.Is(err, sfu.ErrParticipantClosed) {
			return fmt.Errorf("moderate: %w", err)
		}
	case typeChat:
		if !s.grants.Chat {
			return protoErrorf(access.ErrForbidden, "chat: your access token does not allow chat")
		}
		// Delivered back to the sender like to everyone (EventChat).
		if _, err := p.SendChat(msg.Text); err != nil && !errors.Is(err, sfu.ErrParticipantClosed) {
			return chatError(err)
		}
	case typeVideoSettings:
		// Entries apply in order (a later one for the same producer wins);
		// producers not listed keep their settings, unknown ones are
		// remembered by the engine for when they appear.
		for _, vs := range msg.Settings {
			if err := p.SetVideoSettings(vs.ProducerID, vs.Settings); err != nil {
				if errors.Is(err, sfu.ErrParticipantClosed) {
					return nil // the session is closing anyway
				}
				return fmt.Errorf("video settings of producer %s: %w", vs.ProducerID, err)
			}
		}
	}
	return nil
}

// join validates the name, asks placement where the participant belongs
// and, if here, joins the engine room and queues "joined"; otherwise it
// queues "move" to the chosen node and stays unjoined. On a draining node it
// answers "draining" and closes the connection instead. v is the join's
// protocol version, which becomes the session's; placed and avoid are the
// join's "placed" and "avoid" fields.
func (s *session) join(msg inbound) error {
	v, rawName, placed, avoid := msg.V, msg.Name, msg.Placed, msg.Avoid
	start := time.Now()
	if s.participant != nil {
		return protoErrorf(errAlreadyJoined, "already joined as participant %s", s.participant.ID())
	}
	s.version.Store(int32(v))
	claims, err := s.authorize(msg.Token)
	if err != nil {
		return err
	}
	if claims.Name != "" {
		rawName = claims.Name // the token's name wins over the typed one
	}
	name, err := normalizeDisplayName(rawName)
	if err != nil {
		return protoErrorf(errInvalidName, "invalid name: %v (1-64 characters, no control characters)", err)
	}
	if s.srv.isDraining() {
		s.sendError(protoErrorf(errDraining, "node %s is shutting down and takes no new participants: join another node", s.srv.nodeID))
		s.requestClose(websocket.StatusTryAgainLater, reasonDraining, true)
		return nil
	}
	if moved, err := s.place(placed, avoid); moved || err != nil {
		return err
	}
	p, err := s.srv.engine.Join(s.room, sfu.JoinParams{
		Name: name, Events: s, State: msg.State,
		Identity: claims.Identity(), Hidden: claims.Grants.Hidden, NoSubscribe: !claims.Grants.Subscribe,
		Admin: claims.Grants.Admin,
	})
	if err != nil {
		return joinError(s.room, s.srv.nodeID, err)
	}
	s.participant = p
	s.grants = claims.Grants
	s.log.Store(s.logger().With("participant", p.ID()))
	s.logger().Info("signaling: joined", "name", name)

	peers, producers := p.InitialState()
	joined, err := json.Marshal(joinedMessage{
		V:             v,
		Type:          typeJoined,
		ParticipantID: p.ID(),
		NodeID:        s.srv.nodeID,
		Room:          s.room,
		Participants:  toWireParticipants(peers, v),
		Producers:     toWireProducers(producers, v),
		Nodes:         s.srv.peers(s.ctx, s.selfURL),
		Chat:          joinedChat(p, v),
		Identity:      joinedIdentity(claims, v),
		Grants:        toWireGrants(claims.Grants, v),
		Locked:        v >= protocolV4 && p.Room().Locked(),
		ICEServers:    s.iceServers(p.ID(), v),
	})
	if err != nil {
		// Cannot happen with these types; fail the session rather than lie.
		s.logger().Error("signaling: encode joined", "err", err)
		s.requestClose(websocket.StatusInternalError, "internal error", false)
	} else {
		if s.srv.deps.ObserveJoin != nil {
			s.joinStart = start
			s.joinedMsg.Store(&joined[0])
		}
		s.goLive(joined)
	}
	s.wg.Add(1)
	go s.watch(p)
	return nil
}

// authorize checks a join's access token (Server.claims) and adds the
// identity to the session's logger.
func (s *session) authorize(token string) (access.Claims, error) {
	c, err := s.srv.claims(token, s.room)
	if err != nil {
		s.logger().Info("signaling: join refused", "err", err)
		return access.Claims{}, err
	}
	if c.Identity() != "" {
		s.log.Store(s.logger().With("identity", c.Identity()))
	}
	return c, nil
}

// claims checks an access token for room (Config.Auth token) and returns
// its claims, with a hidden participant's publish grant dropped (its
// media would show it); errors are accessError's. Without token auth
// everyone may publish, subscribe and chat (not administer) and has no
// identity. Signaling joins and WHIP/WHEP share it.
func (s *Server) claims(token, room string) (access.Claims, error) {
	if s.cfg.Auth != AuthToken {
		return access.Claims{Grants: access.Grants{Publish: true, Subscribe: true, Chat: true}}, nil
	}
	c, err := access.Verify(s.cfg.Keys, token, room, s.cfg.now())
	if err != nil {
		return access.Claims{}, accessError(err)
	}
	if c.Grants.Hidden {
		c.Grants.Publish = false
	}
	return c, nil
}

// mayPublish checks a publish offer against the grants: every m-line it
// sends on needs a source the token allows.
func (s *session) mayPublish(msg inbound) error {
	if !s.grants.Publish {
		return protoErrorf(access.ErrForbidden, "publish: your access token does not allow publishing")
	}
	for _, src := range sendingSources(msg.SDP.SDP, msg.Sources) {
		if !s.grants.MayPublish(src) {
			return protoErrorf(access.ErrForbidden, "publish: your access token does not allow publishing %s (allowed: %v)", src, s.grants.Sources)
		}
	}
	return nil
}

// joinedIdentity is the identity for "joined": version 4 only.
func joinedIdentity(c access.Claims, v int) string {
	if v < protocolV4 {
		return ""
	}
	return c.Identity()
}

// toWireGrants describes grants for "joined": version 4 only.
func toWireGrants(g access.Grants, v int) *wireGrants {
	if v < protocolV4 {
		return nil
	}
	w := &wireGrants{Publish: g.Publish, Subscribe: g.Subscribe, Chat: g.Chat, Hidden: g.Hidden, Admin: g.Admin, Sources: g.Sources}
	if w.Sources == nil {
		w.Sources = []string{}
		if g.Publish {
			w.Sources = access.AllSources()
		}
	}
	return w
}

// joinedChat is the room's chat history for "joined": version 3 only.
func joinedChat(p *sfu.Participant, v int) []wireChat {
	if v < protocolV3 {
		return nil
	}
	return toWireChats(p.InitialChat())
}

// watch ties the participant's lifetime to the session's: whichever ends
// first ends the other.
func (s *session) watch(p *sfu.Participant) {
	defer s.wg.Done()
	select {
	case <-p.Done():
		s.ended(p.Err())
	case <-s.closing:
	}
	p.Close()
}

// HandleEvent implements sfu.EventHandler. It is called by the engine,
// possibly concurrently and before Join returned, and never blocks: the
// event is translated and enqueued (or held until "joined" is queued).
// EventClosed closes the connection after flushing what is queued.
func (s *session) HandleEvent(ev sfu.Event) {
	switch ev.Type {
	case sfu.EventClosed:
		// Done is already closed, so watch ends the session too; whichever
		// is first, the close code and reason are the same.
		s.logger().Info("signaling: participant closed by the engine", "err", ev.Err)
		s.ended(ev.Err)
		return
	case sfu.EventConnectionState:
		s.logger().Debug("signaling: peer connection state", "target", ev.Target, "state", ev.State)
		return
	case sfu.EventEncodings:
		if ev.Encodings != nil {
			s.logger().Debug("signaling: encodings", "producer", ev.Encodings.ProducerID, "layers", ev.Encodings.Layers,
				"forwarded", s.protocol() >= protocolV2)
		}
	case sfu.EventSubscriberOffer:
		if ev.SDP != nil {
			m := mids(ev.SDP.SDP)
			s.mu.Lock()
			s.offerMids = m
			s.mu.Unlock()
		}
	}
	msg, ok := eventMessage(ev, s.protocol())
	if !ok {
		return
	}
	b, err := json.Marshal(msg)
	if err != nil {
		s.logger().Error("signaling: encode event", "type", ev.Type, "err", err)
		return
	}
	s.sendEvent(b)
}

// ended closes the session after the engine ended its participant
// (watch or EventClosed, whichever comes first; once). When it was ended
// on purpose (e.g. replaced by a new session of its identity) the client
// is told why before the close.
func (s *session) ended(reason error) {
	s.endOnce.Do(func() {
		if code := wireCode(reason); reason != nil && code != codeInternal {
			s.sendEndError(code, reason)
		}
		s.requestClose(websocket.StatusGoingAway, reasonParticipantEnd, true)
	})
}

// sendEndError queues the "error" that tells the client why the engine
// ended its participant.
func (s *session) sendEndError(code string, err error) {
	msg := newOutbound(s.protocol(), typeError)
	msg.Code = code
	msg.Message = endText(code, err)
	b, mErr := json.Marshal(msg)
	if mErr != nil {
		s.logger().Error("signaling: encode message", "type", msg.Type, "err", mErr)
		return
	}
	s.sendEvent(b)
}

// sendMessage encodes and enqueues a reply.
func (s *session) sendMessage(msg outbound) {
	b, err := json.Marshal(msg)
	if err != nil {
		s.logger().Error("signaling: encode message", "type", msg.Type, "err", err)
		return
	}
	s.send(b)
}

// sendError reports err to the client as an "error" message. Client
// mistakes are logged at debug level, internal errors at error level (this
// is where they are handled).
func (s *session) sendError(err error) {
	code := wireCode(err)
	if code == codeInternal {
		s.logger().Error("signaling: request failed", "err", err)
	} else {
		s.logger().Debug("signaling: rejected client message", "code", code, "err", err)
	}
	msg := newOutbound(s.replyV, typeError)
	msg.Code = code
	msg.Message = clientMessage(code, err)
	s.sendMessage(msg)
}

// place consults Deps.Place before a join. It returns moved when it queued
// a "move" to another node (the session stays unjoined), and the
// "node-full" error when the whole cluster is full. Other placement
// failures are logged and the participant joins here.
func (s *session) place(placed string, avoid []string) (moved bool, err error) {
	if s.srv.deps.Place == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.PlaceTimeout)
	pl, err := s.srv.deps.Place(ctx, PlaceRequest{Room: s.room, Avoid: avoid, Placed: placed != "" && placed == s.srv.nodeID})
	cancel()
	switch {
	case errors.Is(err, ErrClusterFull):
		return false, protoErrorf(ErrClusterFull, "every node of the cluster is full: no node can take another participant of room %q now", s.room)
	case err != nil:
		s.logger().Warn("signaling: placement failed; joining here", "err", err)
		return false, nil
	case pl.Local || pl.Node.ID == "" || pl.Node.URL == "":
		return false, nil
	}
	reason, text := moveReasonPlacement, fmt.Sprintf("room %q is served by node %s: join it there", s.room, pl.Node.ID)
	if pl.Full {
		reason, text = moveReasonNodeFull, fmt.Sprintf("node %s is full: join room %q on node %s", s.srv.nodeID, s.room, pl.Node.ID)
	} else if pl.Reason != "serves-room" {
		text = fmt.Sprintf("room %q goes to node %s (%s): join it there", s.room, pl.Node.ID, pl.Reason)
	}
	s.logger().Info("signaling: placed on another node", "node", pl.Node.ID, "reason", pl.Reason, "full", pl.Full)
	b, err := json.Marshal(moveMessage{V: s.replyV, Type: typeMove, Reason: reason, Message: text, Nodes: []Peer{pl.Node}})
	if err != nil { // cannot happen with these types
		return false, fmt.Errorf("encode move: %w", err)
	}
	s.send(b)
	return true, nil
}

// iceServers are the "iceServers" of the "joined" of participant id in
// protocol version v (none before version 4).
func (s *session) iceServers(id string, v int) []ICEServer {
	if v < protocolV4 || s.srv.deps.ICEServers == nil {
		return nil
	}
	return s.srv.deps.ICEServers(id)
}
