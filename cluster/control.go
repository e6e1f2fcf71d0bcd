package cluster

// # Node-to-node control channel and media pipes, wire protocol version 1
//
// Every confab node serves the control channel under /cluster/v1/ on its
// HTTP listener (the app mounts Pipes.Handler at "/cluster/"). Other nodes
// find the base URL (scheme://host:port, no path) in the node's Consul
// record; PipesConfig.Resolve maps node id -> base URL.
//
// Authentication (every request, see auth.go). The sender adds
//
//	X-Confab-Node:      sender node id
//	X-Confab-Timestamp: unix milliseconds (decimal)
//	X-Confab-Signature: hex(HMAC-SHA256(secret,
//	    METHOD "\n" path "\n" node "\n" timestamp "\n" hex(sha256(body))))
//
// where secret is the shared cluster secret and path the escaped request
// path (e.g. "/cluster/v1/links/b/negotiate"). The receiver rejects with 401
// (JSON error, no state change) a missing/wrong signature, a timestamp
// more than MaxClockSkew away from its clock, and any signature it already
// accepted within that window (replay). Bodies over 1 MiB get 413; bodies
// that are not the expected JSON get 400. Every 2xx response is signed the
// same way by the responder over
//
//	"RESPONSE" "\n" status "\n" request-signature "\n" node "\n" timestamp "\n" hex(sha256(body))
//
// and the client refuses unsigned or wrongly signed 2xx responses, so an
// SDP answer (which carries the DTLS fingerprint protecting the media) can
// only come from a node holding the secret. The channel itself is not
// encrypted: use an https base URL or a private network if SDP must stay
// confidential (media is always DTLS-SRTP encrypted).
//
// All bodies are JSON. Errors are {"error": code, "message": text} with
// code one of unauthorized (401), forbidden (403), bad-request (400),
// too-large (413), not-found (404), not-implemented (501), unavailable
// (503), internal (500).
//
// # Links
//
// A link is ONE WebRTC PeerConnection per ordered node pair origin->puller,
// shared by every room and producer that the puller pulls from the origin.
// Why: one ICE/DTLS handshake and one 5-tuple per node pair instead of one
// per producer or room; producers come and go with a renegotiation on a
// warm connection. Why ordered (A->B and B->A are two PCs): the puller
// (the node that wants media) is always the offerer and the origin always
// the answerer, so each side has one negotiation role, negotiations are
// serialized per link on both sides (puller: one goroutine per link;
// origin: one negotiation at a time per link), and glare is impossible.
// Both PCs are built by sfu.Engine.NewPeerConnection: same UDP mux,
// codecs, interceptors and DTLS-SRTP as participant PCs. A link is
// identified by the puller's node id plus a random link id chosen by the
// puller when it creates its PC; a negotiate with a new link id (puller
// restarted, or re-created the link after a failure) makes the origin drop
// its stale PC and start a fresh one.
//
//	POST /cluster/v1/links/{puller}/negotiate     (sender must be {puller})
//	  {"linkId": "...", "offer": {"type":"offer","sdp":"..."},
//	   "wanted": [{"room":"r","producerId":"p","pipeId":"7"}, ...]}
//	-> 200 {"answer": {"type":"answer","sdp":"..."},
//	        "accepted": [{"room","producerId","pipeId","ssrc"}, ...],
//	        "rejected": [{"room","producerId","reason"}, ...]}
//
// "wanted" is the COMPLETE set the puller wants on this link now (not a
// delta), so the exchange is idempotent and a lost response cannot leave
// the two sides disagreeing for long. Concurrent PipeIn calls on the
// puller are batched into the next negotiation. pipeId names the puller's
// pipe instance: the same producer wanted with a new pipeId (dropped and
// wanted again between two negotiations) gets a fresh sender. "ssrc" is
// the SSRC the origin sends the producer with, which the puller uses to
// bind the arriving track to its pipe.
//
// The offer has ICE gathering complete (no trickle) and one recvonly
// m-line per producer ever wanted on the link (the puller adds one per
// newly wanted producer; m-lines freed by removed producers are reused by
// the origin's AddTrack, so the SDP only grows with the peak number of
// concurrent pipes plus churn, and restarts from scratch when an idle link
// is closed). The origin sets the offer, attaches every newly wanted LOCAL
// producer with Producer.NewConsumer (track id = producer id, stream id =
// participant id), closes consumers that are no longer wanted, and answers
// after gathering completes. It refuses (rejected, with a reason; see the
// Reject* constants) unknown rooms/producers and remote producers: a
// producer is only ever served by the node where it was published, so
// media can never loop between nodes. The puller maps arriving tracks to
// pipes by track id (= producer id) and announced SSRC, re-produces them
// in its local room with Room.AddProducer (Remote=true) and forwards RTP.
// PLI from the puller's subscribers is written as RTCP on the link and
// reaches the publisher through the origin's consumer. When an origin
// producer closes, the origin sends an RTCP BYE for its SSRC on the link
// so the puller drops the piped producer at once; the authoritative
// removal still comes from the cluster registry (the orchestrator calls
// Pipes.Unpipe).
//
//	POST /cluster/v1/links/{puller}/close          (sender must be {puller})
//	  {"linkId": "..."}  -> 200 {"closed": true|false}
//
// The puller closes a link that has carried nothing for LinkIdleTimeout
// (default 5s, so a quick re-publish reuses the warm link) and tells the
// origin (best effort); a stale link id is ignored (closed=false).
//
// # Failures and timeouts
//
// Every control request and every negotiation step (ICE gathering
// included) is bounded by RequestTimeout. On the puller, a failed or timed
// out negotiation, or the link PC reaching "failed" (or "closed" without
// us closing it, e.g. the origin shut down), closes the link and every
// producer piped through it and calls the OnLinkFailed callback; pending
// PipeIn calls return ErrLinkFailed. On the origin, a failed PC or a bad
// offer closes its side; the puller notices on its own. Pipes.DropNode
// (node left the cluster) closes both directions without talking to the
// node.
//
// # Liveness probe
//
//	GET /cluster/v1/ping   (signed like every request, empty body)
//	-> 200 {"node": "<responder id>"}   (signed response)
//
// A node whose link to a peer goes "disconnected" (ICE heard nothing for
// sfu.Config.ICEDisconnectedTimeout) or fails pings the peer with a short
// timeout (PipesConfig.ProbeTimeout). No signed answer (connection
// refused, timeout, reset, wrong signer) means the peer process is gone:
// the membership drops its pipes at once instead of waiting for Consul to
// expire its session. See Node.probe.
//
// # Room events (placeholder for chat and other room-scoped messages)
//
//	POST /cluster/v1/rooms/{room}/events
//	  any JSON value (opaque to this package)  -> 202 {"ok": true}
//
// delivered to the handler installed with Pipes.SetRoomEventHandler as a
// RoomEvent{From, Room, Body}; 501 when none is installed.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// Control channel limits and paths.
const (
	controlPrefix     = "/cluster/v1/"
	maxControlBody    = 1 << 20 // 1 MiB, requests and responses
	maxWantedPerLink  = 4096    // producers one negotiation may list
	maxIDLength       = 256     // room, producer, node and link ids on the wire
	contentTypeJSON   = "application/json"
	controlAuthCtxKey = ctxKey("cluster-control-auth")
)

// ctxKey is the type of context keys of this package.
type ctxKey string

// PipeRef names one producer of one room on the wire. PipeID identifies
// the puller's pipe instance: when the puller drops a pipe and wants the
// same producer again before the origin heard of the removal, the new
// PipeID makes the origin attach a fresh sender (new SSRC, new track at the
// puller) instead of silently keeping the old one.
type PipeRef struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	PipeID     string `json:"pipeId,omitempty"`
}

// AcceptedPipe is a PipeRef the origin serves, with the SSRC of its sender
// on the link, so the puller binds exactly that track to the pipe.
type AcceptedPipe struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	PipeID     string `json:"pipeId,omitempty"`
	SSRC       uint32 `json:"ssrc,omitempty"`
}

// RejectedPipe is a PipeRef the origin refused, with one of the Reject*
// reasons.
type RejectedPipe struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	Reason     string `json:"reason"`
}

// negotiateRequest is the body of POST /cluster/v1/links/{puller}/negotiate.
type negotiateRequest struct {
	LinkID string                    `json:"linkId"`
	Offer  webrtc.SessionDescription `json:"offer"`
	Wanted []PipeRef                 `json:"wanted"`
}

// negotiateResponse is the 200 body of a negotiate.
type negotiateResponse struct {
	Answer   webrtc.SessionDescription `json:"answer"`
	Accepted []AcceptedPipe            `json:"accepted"`
	Rejected []RejectedPipe            `json:"rejected"`
}

// closeLinkRequest is the body of POST /cluster/v1/links/{puller}/close.
type closeLinkRequest struct {
	LinkID string `json:"linkId"`
}

// closeLinkResponse is the 200 body of a close.
type closeLinkResponse struct {
	Closed bool `json:"closed"`
}

// pingResponse is the 200 body of GET /cluster/v1/ping.
type pingResponse struct {
	Node string `json:"node"`
}

// okResponse is the body of accepted room events.
type okResponse struct {
	OK bool `json:"ok"`
}

// errorResponse is the body of every error response.
type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// RoomEvent is a room-scoped message received from another node over the
// control channel (e.g. chat, later). Body is the opaque JSON value the
// sender posted; it is only checked to be valid JSON.
type RoomEvent struct {
	From string          // sender node id (authenticated)
	Room string          // room name from the path
	Body json.RawMessage // the request body
}

// controlAuth is what the auth layer stores in the request context for the
// route handlers.
type controlAuth struct {
	node string // authenticated sender
	sig  string // request signature (bound into the response signature)
	body []byte // the full request body
}

// newControlHandler builds the control channel handler. Authentication
// happens before routing, so every path under /cluster/ (even unknown ones)
// needs a valid signature, and a rejected request reaches no handler.
func (p *Pipes) newControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+controlPrefix+"links/{node}/negotiate", p.handleNegotiate)
	mux.HandleFunc("POST "+controlPrefix+"links/{node}/close", p.handleCloseLink)
	mux.HandleFunc("POST "+controlPrefix+"rooms/{room}/events", p.handleRoomEvent)
	mux.HandleFunc("GET "+controlPrefix+"ping", func(w http.ResponseWriter, r *http.Request) {
		p.writeJSON(w, r, http.StatusOK, pingResponse{Node: p.cfg.NodeID})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.writeError(w, r, fmt.Errorf("%w: %s %s", ErrControlNotFound, r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				p.writeError(w, r, fmt.Errorf("%w: limit %d bytes", ErrControlTooLarge, maxControlBody))
				return
			}
			p.writeError(w, r, fmt.Errorf("%w: reading body: %v", ErrControlBadRequest, err))
			return
		}
		node, sig, err := p.verifier.verify(r, body)
		if err != nil {
			p.log.Warn("control request refused", "method", r.Method, "path", r.URL.Path,
				"node", r.Header.Get(HeaderNode), "remote", r.RemoteAddr, "err", err)
			p.writeError(w, r, err)
			return
		}
		// Handlers touch links and the engine: Close waits for them (they
		// end quickly once the links are closed).
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			p.writeError(w, r, ErrPipesClosed)
			return
		}
		p.wg.Add(1)
		p.mu.Unlock()
		defer p.wg.Done()
		ctx := context.WithValue(r.Context(), controlAuthCtxKey, &controlAuth{node: node, sig: sig, body: body})
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

// authOf returns the authentication record of r (nil before/without auth).
func authOf(r *http.Request) *controlAuth {
	a, _ := r.Context().Value(controlAuthCtxKey).(*controlAuth)
	return a
}

// writeJSON writes v with status; when r was authenticated the response is
// signed (see canonicalResponse).
func (p *Pipes) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"internal","message":"encoding response"}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Cache-Control", "no-store")
	if a := authOf(r); a != nil {
		signResponse(p.cfg.Secret, h, status, a.sig, p.cfg.NodeID, body, time.Now())
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // the peer went away; nothing to do
}

// writeError writes err as a JSON error with the status from controlStatus.
func (p *Pipes) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := controlStatus(err)
	if status == http.StatusInternalServerError {
		p.log.Error("control request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	p.writeJSON(w, r, status, errorResponse{Error: code, Message: err.Error()})
}

// decodeJSON strictly decodes body into v (unknown fields are allowed for
// forward compatibility; trailing data is not).
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrControlBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after JSON value", ErrControlBadRequest)
	}
	return nil
}

// validID reports whether s is acceptable as a wire id.
func validID(s string) bool { return s != "" && len(s) <= maxIDLength }

// pullerFrom checks that the {node} path segment is the authenticated
// sender: a node may only negotiate or close its own links.
func (p *Pipes) pullerFrom(r *http.Request) (string, error) {
	a := authOf(r)
	puller := r.PathValue("node")
	if a == nil {
		return "", fmt.Errorf("%w: unauthenticated", ErrControlUnauthorized)
	}
	if puller != a.node {
		return "", fmt.Errorf("%w: link of node %q requested by %q", ErrControlForbidden, puller, a.node)
	}
	if puller == p.cfg.NodeID {
		return "", fmt.Errorf("%w: a node cannot link to itself", ErrControlBadRequest)
	}
	return puller, nil
}

// handleNegotiate serves POST /cluster/v1/links/{puller}/negotiate (origin
// side). It runs on the HTTP server's goroutine, bounded by the request
// context and RequestTimeout.
func (p *Pipes) handleNegotiate(w http.ResponseWriter, r *http.Request) {
	puller, err := p.pullerFrom(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	var req negotiateRequest
	if err := decodeJSON(authOf(r).body, &req); err != nil {
		p.writeError(w, r, err)
		return
	}
	switch {
	case !validID(req.LinkID):
		err = fmt.Errorf("%w: missing or oversized linkId", ErrControlBadRequest)
	case req.Offer.Type != webrtc.SDPTypeOffer || req.Offer.SDP == "":
		err = fmt.Errorf("%w: offer must be an SDP offer", ErrControlBadRequest)
	case len(req.Wanted) > maxWantedPerLink:
		err = fmt.Errorf("%w: more than %d wanted producers", ErrControlBadRequest, maxWantedPerLink)
	}
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.RequestTimeout)
	defer cancel()
	l, err := p.outLinkFor(puller, req.LinkID)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	resp, err := l.negotiate(ctx, req)
	if err != nil {
		p.writeError(w, r, fmt.Errorf("cluster: negotiate link %s->%s: %w", p.cfg.NodeID, puller, err))
		return
	}
	p.writeJSON(w, r, http.StatusOK, resp)
}

// handleCloseLink serves POST /cluster/v1/links/{puller}/close (origin side).
func (p *Pipes) handleCloseLink(w http.ResponseWriter, r *http.Request) {
	puller, err := p.pullerFrom(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	var req closeLinkRequest
	if err := decodeJSON(authOf(r).body, &req); err != nil {
		p.writeError(w, r, err)
		return
	}
	if !validID(req.LinkID) {
		p.writeError(w, r, fmt.Errorf("%w: missing or oversized linkId", ErrControlBadRequest))
		return
	}
	closed := false
	p.mu.Lock()
	l := p.out[puller]
	p.mu.Unlock()
	if l != nil && l.id == req.LinkID {
		closed = l.close("closed by puller")
	}
	p.writeJSON(w, r, http.StatusOK, closeLinkResponse{Closed: closed})
}

// handleRoomEvent serves POST /cluster/v1/rooms/{room}/events.
func (p *Pipes) handleRoomEvent(w http.ResponseWriter, r *http.Request) {
	a := authOf(r)
	room := r.PathValue("room")
	if !validID(room) {
		p.writeError(w, r, fmt.Errorf("%w: bad room name", ErrControlBadRequest))
		return
	}
	if !json.Valid(a.body) {
		p.writeError(w, r, fmt.Errorf("%w: body is not valid JSON", ErrControlBadRequest))
		return
	}
	p.mu.Lock()
	fn := p.onRoomEvent
	p.mu.Unlock()
	if fn == nil {
		p.writeError(w, r, fmt.Errorf("%w: no room event handler", ErrControlNotImplemented))
		return
	}
	fn(RoomEvent{From: a.node, Room: room, Body: json.RawMessage(bytes.Clone(a.body))})
	p.writeJSON(w, r, http.StatusAccepted, okResponse{OK: true})
}

// ---------------------------------------------------------------------------
// Origin side of a link (this node answers and sends).

// servedPipe is one local producer sent on an outgoing link.
type servedPipe struct {
	key      pipeKey
	pipeID   string // the puller's pipe instance
	producer *sfu.Producer
	consumer *sfu.Consumer
	ssrc     uint32        // SSRC of the link sender (for BYE), 0 if unknown
	stop     chan struct{} // closed when no longer served
}

// outLink is the origin side of a link: this node sends local producers to
// node peer over pc and answers the peer's offers. Negotiations are
// serialized by sem (a request waiting for it gives up with its context).
// mu guards closed and served. Goroutines (owned via Pipes.wg): one watch
// per served producer, ending when the producer closes, it is no longer
// served, or the link closes.
type outLink struct {
	p    *Pipes
	peer string // puller node id
	id   string // the puller's link id
	log  *slog.Logger
	pc   *webrtc.PeerConnection
	sem  chan struct{} // cap 1: negotiation in progress
	done chan struct{} // closed on close

	mu     sync.Mutex
	closed bool
	served map[pipeKey]*servedPipe
}

// newOutLink returns an unstarted outgoing link over pc.
func newOutLink(p *Pipes, puller, linkID string, pc *webrtc.PeerConnection) *outLink {
	return &outLink{
		p:      p,
		peer:   puller,
		id:     linkID,
		log:    p.log.With("peer", puller, "direction", "out", "link", linkID),
		pc:     pc,
		sem:    make(chan struct{}, 1),
		done:   make(chan struct{}),
		served: make(map[pipeKey]*servedPipe),
	}
}

// start installs the PC handlers ("disconnected" is reported to the
// OnLinkDisconnected callback, "failed"/"closed" close the link). Called
// once under Pipes.mu.
func (l *outLink) start() {
	l.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		l.log.Debug("link state", "state", s)
		switch s {
		case webrtc.PeerConnectionStateDisconnected:
			if !l.isClosed() {
				l.log.Info("link disconnected: nothing heard from the peer")
				l.p.linkDisconnected(l.peer)
			}
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			l.close("peer connection " + s.String())
		}
	})
}

// negotiate applies one offer from the puller: serve exactly the wanted
// local producers, answer. Any failure after the offer was applied closes
// the link (the puller will fail its side too and start over).
func (l *outLink) negotiate(ctx context.Context, req negotiateRequest) (negotiateResponse, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return negotiateResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	case <-ctx.Done():
		return negotiateResponse{}, fmt.Errorf("%w: waiting for the previous negotiation: %v", ErrControlUnavailable, ctx.Err())
	}
	defer func() { <-l.sem }()
	if l.isClosed() {
		return negotiateResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	}
	if err := l.pc.SetRemoteDescription(req.Offer); err != nil {
		l.close("bad offer")
		return negotiateResponse{}, fmt.Errorf("%w: applying offer: %v", ErrControlBadRequest, err)
	}

	wanted := make(map[pipeKey]string, len(req.Wanted)) // -> pipe id
	resp := negotiateResponse{Accepted: []AcceptedPipe{}, Rejected: []RejectedPipe{}}
	var order []pipeKey
	for _, w := range req.Wanted {
		k := pipeKey{room: w.Room, producer: w.ProducerID}
		if _, dup := wanted[k]; dup {
			continue // listed twice: serve once, report once
		}
		if !validID(w.Room) || !validID(w.ProducerID) || len(w.PipeID) > maxIDLength {
			resp.Rejected = append(resp.Rejected, RejectedPipe{Room: w.Room, ProducerID: w.ProducerID, Reason: RejectInvalid})
			continue
		}
		wanted[k] = w.PipeID
		order = append(order, k)
	}

	// Stop serving what is no longer wanted, whose producer closed, or
	// that the puller wants as a new pipe instance. Removing first frees
	// the producer's track for re-adding below.
	var drop []*servedPipe
	l.mu.Lock()
	for k, s := range l.served {
		if id, ok := wanted[k]; !ok || id != s.pipeID || isDone(s.producer.Done()) {
			delete(l.served, k)
			drop = append(drop, s)
		}
	}
	l.mu.Unlock()
	for _, s := range drop {
		close(s.stop)
		s.consumer.Close()
	}

	for _, k := range order {
		ssrc, reason := l.serve(k, wanted[k])
		if reason == "" {
			resp.Accepted = append(resp.Accepted, AcceptedPipe{Room: k.room, ProducerID: k.producer, PipeID: wanted[k], SSRC: ssrc})
		} else {
			resp.Rejected = append(resp.Rejected, RejectedPipe{Room: k.room, ProducerID: k.producer, Reason: reason})
		}
	}

	answer, err := l.pc.CreateAnswer(nil)
	if err != nil {
		l.close("creating answer failed")
		return negotiateResponse{}, fmt.Errorf("creating answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(answer); err != nil {
		l.close("setting answer failed")
		return negotiateResponse{}, fmt.Errorf("setting answer: %w", err)
	}
	select {
	case <-gathered:
	case <-l.done:
		return negotiateResponse{}, fmt.Errorf("%w: link closed", ErrControlUnavailable)
	case <-ctx.Done():
		l.close("gathering timed out")
		return negotiateResponse{}, fmt.Errorf("%w: gathering candidates: %v", ErrControlUnavailable, ctx.Err())
	}
	local := l.pc.LocalDescription()
	if local == nil {
		l.close("no local description")
		return negotiateResponse{}, errors.New("no local description after answering")
	}
	resp.Answer = *local
	l.log.Debug("link negotiated", "accepted", len(resp.Accepted), "rejected", len(resp.Rejected))
	return resp, nil
}

// serve makes sure the local producer k is sent on the link for pipe
// instance pipeID and returns its sender SSRC, or the reason it cannot be
// served. Called only from negotiate (serialized).
func (l *outLink) serve(k pipeKey, pipeID string) (uint32, string) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, RejectShuttingDown
	}
	if s := l.served[k]; s != nil {
		l.mu.Unlock()
		return s.ssrc, "" // still served (stale entries were dropped above)
	}
	l.mu.Unlock()

	room := l.p.engine.Room(k.room)
	if room == nil {
		return 0, RejectRoomNotFound
	}
	prod := room.Producer(k.producer)
	if prod == nil {
		return 0, RejectUnknownProducer
	}
	if info := prod.Info(); info.Remote || info.Origin != l.p.cfg.NodeID {
		// Only the node where a producer was published serves it: piping
		// onward could loop and would double the hops.
		return 0, RejectRemoteProducer
	}
	cons, err := prod.NewConsumer(l.pc)
	if err != nil {
		if errors.Is(err, sfu.ErrProducerClosed) {
			return 0, RejectProducerClosed
		}
		l.log.Warn("attaching producer to link failed", "room", k.room, "producer", k.producer, "err", err)
		return 0, RejectConsumerFailed
	}
	s := &servedPipe{key: k, pipeID: pipeID, producer: prod, consumer: cons, ssrc: senderSSRC(cons.Sender()), stop: make(chan struct{})}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cons.Close()
		return 0, RejectShuttingDown
	}
	l.served[k] = s
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.watch(s)
	l.log.Info("serving producer", "room", k.room, "producer", k.producer, "pipe", pipeID, "ssrc", s.ssrc)
	return s.ssrc, ""
}

// watch sends an RTCP BYE for s's SSRC when its producer closes while it
// is served, so the puller drops the pipe without waiting for the registry.
func (l *outLink) watch(s *servedPipe) {
	defer l.p.wg.Done()
	select {
	case <-s.producer.Done():
	case <-s.stop:
		return
	case <-l.done:
		return
	}
	if s.ssrc == 0 {
		return
	}
	if err := l.pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: []uint32{s.ssrc}, Reason: "producer closed"}}); err != nil {
		l.log.Debug("writing BYE on link failed", "producer", s.key.producer, "err", err)
	}
}

// isClosed reports whether the link was closed.
func (l *outLink) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// close closes the link once (consumers, PC) and reports whether this call
// closed it.
func (l *outLink) close(why string) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	served := l.served
	l.served = make(map[pipeKey]*servedPipe)
	l.mu.Unlock()

	close(l.done)
	l.p.removeOutLink(l)
	for _, s := range served {
		s.consumer.Close()
	}
	if err := l.pc.Close(); err != nil {
		l.log.Debug("closing link peer connection", "err", err)
	}
	l.log.Info("link closed", "why", why)
	return true
}

// senderSSRC returns the SSRC of a link sender, or 0.
func senderSSRC(s *webrtc.RTPSender) uint32 {
	if s == nil {
		return 0
	}
	if enc := s.GetParameters().Encodings; len(enc) > 0 {
		return uint32(enc[0].SSRC)
	}
	return 0
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
