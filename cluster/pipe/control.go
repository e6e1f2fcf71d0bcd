// Package pipe is the node-to-node link protocol of a confab cluster: the
// signed control channel (/cluster/v1/) and the WebRTC links that carry
// producers between nodes (Pipes). It knows nothing of Consul: package
// cluster decides what to pipe from where and resolves node ids to URLs.
package pipe

// # Node-to-node control channel and media pipes, wire protocol version 1
//
// Every confab node serves the control channel under /cluster/v1/ on its
// HTTP listener (the app mounts Pipes.Handler at "/cluster/"). Other nodes
// find the base URL (scheme://host:port, no path) in the node's Consul
// record; PipesConfig.Resolve maps node id -> base URL.
//
// Authentication (every request, see auth.go). The sender adds
//
//	X-Confab-Node:        sender node id
//	X-Confab-To:          recipient node id
//	X-Confab-Timestamp:   unix milliseconds (decimal)
//	X-Confab-Nonce:       16 random bytes, lowercase hex
//	X-Confab-Body-Sha256: hex(sha256(body))
//	X-Confab-Signature:   hex(HMAC-SHA256(secret, "CONFAB-CONTROL-2" "\n"
//	    METHOD "\n" path "\n" sender "\n" recipient "\n" timestamp "\n"
//	    nonce "\n" body-hash))
//
// where secret is the shared cluster secret and path the escaped request
// path (e.g. "/cluster/v1/links/a/negotiate"); all hex is lowercase, and
// only that spelling is accepted. The receiver decides from the headers
// alone, before reading the body: 403 for another recipient or a sender
// not in its directory (Resolve), 401 for a timestamp more than
// MaxClockSkew away from its clock or a wrong signature, 413 for a missing
// or over-1-MiB Content-Length. It then reads the declared body and
// refuses (401) one that does not match the signed hash, and any MAC it
// already accepted within the skew window (replay; the cache is keyed by
// the decoded MAC). Refused requests change nothing. Bodies that are not
// the expected JSON get 400. EVERY response, errors included, is signed by
// the responder over
//
//	"RESPONSE" "\n" status "\n" request-signature "\n" node "\n" timestamp "\n" hex(sha256(body))
//
// (headers X-Confab-Node, X-Confab-Timestamp, X-Confab-Body-Sha256,
// X-Confab-Signature), and the client refuses an unsigned or wrongly
// signed response of any status as a failed request (ErrControlBadResponse),
// never taking it for the peer's verdict; so an SDP answer (which carries
// the DTLS fingerprint protecting the media) can only come from a node
// holding the secret. The channel itself is not encrypted: use an https
// base URL or a private network if its contents must stay confidential
// (media is always DTLS-SRTP encrypted).
//
// All bodies are JSON. Errors are {"error": code, "message": text} with
// code one of unauthorized (401), forbidden (403), bad-request (400),
// too-large (413), not-found (404), conflict (409), not-implemented (501),
// unavailable (503), internal (500).
//
// # Links
//
// A link is ONE WebRTC PeerConnection per UNORDERED pair of nodes,
// carrying producers in both directions and shared by every room. Why one:
// all PCs of a node share one ICE UDP socket (sfu.Engine), and pion's UDP
// mux routes non-STUN packets by remote address only, so two PCs between
// the same two sockets (A->B and B->A) would receive each other's SRTP
// (auth tag failures, stalled media). One PC per pair also means one
// ICE/DTLS handshake per pair; producers come and go by renegotiating a
// warm connection. Both PCs are built by sfu.Engine.NewPeerConnection
// (same UDP mux, codecs, interceptors and DTLS-SRTP as participant PCs).
//
// Roles. The node with the lexicographically smaller id is the link's
// CONTROLLER and the only one that ever sends an offer; the other is the
// ANSWERER. So there is no glare and no rollback. Each side keeps what it
// pulls from the peer (room, producer id, pipe id) and what it serves to
// the peer. The controller runs one negotiation round at a time (changes
// made meanwhile, local or announced by the answerer, are coalesced into
// the next round). When the answerer's pulls change it sends its complete
// wanted set to the controller (want, below), which negotiates it; the
// answerer never holds a lock that answering an offer needs while its want
// request is outstanding.
//
// Identity. The link id is a random id chosen by the controller when it
// creates its side. The answerer has a random side id of its own. A side
// that gets an initial offer (seq 1) with a new link id while it has
// another link with that peer drops the stale one (the controller
// restarted or re-created the link); a controller that gets a want from a
// new answerer side (with no link id) drops its stale link (the answerer
// restarted or re-created its side). Requests naming a link or side the
// receiver does not have get 409 and the sender fails its side: pulls
// through a replaced or failed link close and OnLinkFailed fires; the
// orchestrator pipes them again over a fresh link.
//
//	POST /cluster/v1/links/{controller}/negotiate   (sender must be {controller},
//	                                                  and the controller of the pair)
//	  {"linkId": "...", "side": "<answerer side id, \"\" if not known yet>",
//	   "seq": 1, "offer": {"type":"offer","sdp":"..."},
//	   "wanted": [{"room","producerId","pipeId"}, ...],
//	   "wantVersion": 3,
//	   "tracks": [{"room","producerId","pipeId","ssrc","mid"}, ...],
//	   "rejected": [{"room","producerId","pipeId","reason"}, ...]}
//	-> 200 {"side": "<answerer side id>", "answer": {"type":"answer","sdp":"..."},
//	        "accepted": [{"room","producerId","pipeId","ssrc","mid"}, ...],
//	        "rejected": [{"room","producerId","pipeId","reason"}, ...]}
//
// "wanted" is the COMPLETE set the controller pulls from the answerer now
// (not a delta), so the exchange is idempotent. "tracks" and "rejected"
// are the controller's verdict on the answerer's wanted set of version
// "wantVersion": tracks it sends (pipe id -> SSRC and mid of its sender),
// producers it refuses. "accepted"/"rejected" in the answer are the
// answerer's verdict on "wanted", with the SSRC and mid of its senders.
// Each side binds an arriving track to its pull by track id (= producer
// id) and the announced SSRC, recorded before the description carrying
// the track is applied. pipeId names the puller's pipe instance: the same
// producer wanted with a new pipeId (dropped and wanted again between two
// rounds) gets a fresh sender.
//
// SDP. The offer has ICE gathering complete (no trickle). The controller
// sends its own tracks on sendonly m-lines (Producer.NewSendonlyConsumer,
// one m-line per sender it ever attached: pion's AddTrack on an offerer
// would reuse its recvonly transceivers and make them sendrecv) and adds
// one recvonly m-line per producer it newly pulls; the answerer attaches
// its served producers with Producer.NewConsumer (AddTrack), which takes
// those offered recvonly m-lines (or ones freed by an earlier removed
// track) and never adds m-lines an answer could not carry (a producer
// without a free m-line is refused as "no-slot"). The
// SDP therefore grows with the producers that crossed the link in its
// lifetime and starts from scratch when an idle link is closed. Both
// sides refuse (rejected, with a reason; see the Reject* constants)
// unknown rooms/producers and remote producers: a producer is only ever
// served by the node where it was published, so media can never loop
// between nodes. The puller re-produces arriving tracks in its local room
// with Room.AddProducer (Remote=true) and forwards RTP. PLI from the
// puller's subscribers is written as RTCP on the link and reaches the
// publisher through the serving side's consumer. When a served producer
// closes, its node sends an RTCP BYE for its SSRC on the link so the
// puller drops the piped producer at once; the authoritative removal
// still comes from the cluster registry (the orchestrator calls
// Pipes.Unpipe).
//
// Simulcast. A wanted entry of a simulcast producer lists the layers the
// puller wants ("layers": [0, 2], ascending, 0 = lowest; [] none for now),
// and the verdict lists one track per served layer
// ("layers": [{"layer", "ssrc", "mid"}], instead of "ssrc"/"mid"). The
// serving node sends each layer through its own consumer pinned to that
// layer, so its dynacast counts the peer's demand. An entry without
// "layers" is one track carrying the producer's top layer (single-layer
// producers, and nodes that predate layered pipes). The puller asks for
// layer 0 first and then for exactly the layers its local subscribers
// need (the piped producer's dynacast demand); each change is a new
// version of its wanted set.
//
//	POST /cluster/v1/links/{answerer}/want          (sender must be {answerer},
//	                                                  the receiver the controller)
//	  {"linkId": "<link id, \"\" before the first offer>", "side": "...",
//	   "version": 4, "wanted": [{"room","producerId","pipeId"}, ...]}
//	-> 200 {"linkId": "...", "version": 4,
//	        "accepted": [{"room","producerId","pipeId","ssrc","mid"}, ...],
//	        "rejected": [{"room","producerId","pipeId","reason"}, ...]}
//
// The answerer's COMPLETE wanted set, versioned (a new version per
// change; one request in flight per link). The controller records it,
// runs a round (whose offer reaches the answerer's negotiate endpoint
// while this request waits) and answers once a round covering this
// version completed, with its verdict.
//
//	POST /cluster/v1/links/{sender}/close            (sender must be {sender})
//	  {"linkId": "...", "side": "<sender side id>", "idle": true|false}
//	-> 200 {"closed": true|false}
//
// The controller closes a link that carried nothing in either direction
// for LinkIdleTimeout (default 5s, so a quick re-publish reuses the warm
// link) after asking the answerer with idle=true; the answerer refuses
// (closed=false) while it wants something (its want request is on its
// way). idle=false tells the peer that the sender closed its side
// (failure, shutdown): the receiver closes its side like a failed link.
// A stale link id is ignored (closed=false).
//
// # Failures and timeouts
//
// Every control request and every negotiation step (ICE gathering
// included) is bounded by RequestTimeout; a want request by
// 3 x RequestTimeout (it may wait for a round in flight and its own).
// A failed or timed out round or want request, a 409, a close from the
// peer, or the link PC reaching "failed" (or "closed" without us closing
// it) closes the link: every producer piped through it and every link
// consumer close, pending PipeIn calls return ErrLinkFailed, and the
// OnLinkFailed callback fires if this side pulled anything. Pipes.DropNode
// (node left the cluster) closes the link without talking to the node.
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
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"
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
// same producer again before the serving node heard of the removal, the
// new PipeID makes it attach a fresh sender (new SSRC, new track at the
// puller) instead of silently keeping the old one.
type PipeRef struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	PipeID     string `json:"pipeId,omitempty"`
	// Layers are the simulcast layers (0 = lowest) the puller wants of a
	// layered producer, one link track each, ascending; [] wants none for
	// now. Absent (nil): one track carrying the producer's top layer
	// (single-layer producers, and nodes without layered pipes).
	Layers []int `json:"layers,omitzero"`
}

// maxPipeLayers bounds the layer indices of a PipeRef (sfu producers have
// at most 3 layers).
const maxPipeLayers = 8

// PipeLayer is one layer track of a layered pipe: the layer it carries and
// the SSRC and mid of its sender.
type PipeLayer struct {
	Layer int    `json:"layer"`
	SSRC  uint32 `json:"ssrc"`
	Mid   string `json:"mid,omitempty"`
}

// AcceptedPipe is a PipeRef a node serves on a link, with the SSRC and mid
// of its sender, so the puller binds exactly that track to the pipe.
type AcceptedPipe struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	PipeID     string `json:"pipeId,omitempty"`
	SSRC       uint32 `json:"ssrc,omitempty"`
	Mid        string `json:"mid,omitempty"`
	// Layers answer a PipeRef with Layers: the tracks sent, one per
	// served layer ([] none; SSRC and Mid are then unset). Absent: the
	// pipe is one track (SSRC, Mid) carrying the top layer.
	Layers []PipeLayer `json:"layers,omitzero"`
}

// RejectedPipe is a PipeRef a node refused to serve, with one of the
// Reject* reasons.
type RejectedPipe struct {
	Room       string `json:"room"`
	ProducerID string `json:"producerId"`
	PipeID     string `json:"pipeId,omitempty"`
	Reason     string `json:"reason"`
}

// negotiateRequest is the body of POST /cluster/v1/links/{controller}/negotiate.
type negotiateRequest struct {
	LinkID      string                    `json:"linkId"`
	Side        string                    `json:"side,omitempty"` // answerer side id the controller knows ("" none yet)
	Seq         uint64                    `json:"seq"`            // offers sent on the link, 1 for the first
	Offer       webrtc.SessionDescription `json:"offer"`
	Wanted      []PipeRef                 `json:"wanted"`      // what the controller pulls (complete set)
	WantVersion uint64                    `json:"wantVersion"` // answerer want version that Tracks/Rejected answer
	Tracks      []AcceptedPipe            `json:"tracks"`      // the controller's senders for the answerer's wants
	Rejected    []RejectedPipe            `json:"rejected"`    // the answerer's wants the controller refused
}

// negotiateResponse is the 200 body of a negotiate.
type negotiateResponse struct {
	Side     string                    `json:"side"` // the answerer's side id
	Answer   webrtc.SessionDescription `json:"answer"`
	Accepted []AcceptedPipe            `json:"accepted"`
	Rejected []RejectedPipe            `json:"rejected"`
}

// wantRequest is the body of POST /cluster/v1/links/{answerer}/want.
type wantRequest struct {
	LinkID  string    `json:"linkId,omitempty"` // link id the answerer adopted ("" none yet)
	Side    string    `json:"side"`             // the answerer's side id
	Version uint64    `json:"version"`          // grows with every change of Wanted
	Wanted  []PipeRef `json:"wanted"`           // what the answerer pulls (complete set)
}

// wantResponse is the 200 body of a want: the outcome of the round that
// negotiated (at least) that version.
type wantResponse struct {
	LinkID   string         `json:"linkId"`
	Version  uint64         `json:"version"`
	Accepted []AcceptedPipe `json:"accepted"`
	Rejected []RejectedPipe `json:"rejected"`
}

// closeLinkRequest is the body of POST /cluster/v1/links/{sender}/close.
type closeLinkRequest struct {
	LinkID string `json:"linkId"`
	Side   string `json:"side,omitempty"` // the sender's side id
	Idle   bool   `json:"idle,omitempty"` // a proposal, refused while the receiver wants something
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
	mux.HandleFunc("POST "+controlPrefix+"links/{node}/want", p.handleWant)
	mux.HandleFunc("POST "+controlPrefix+"links/{node}/close", p.handleCloseLink)
	mux.HandleFunc("POST "+controlPrefix+"rooms/{room}/events", p.handleRoomEvent)
	mux.HandleFunc("POST "+controlPrefix+"sync/rooms", p.handleRoomSync)
	mux.HandleFunc("GET "+controlPrefix+"ping", func(w http.ResponseWriter, r *http.Request) {
		p.writeJSON(w, r, http.StatusOK, pingResponse{Node: p.cfg.NodeID})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.writeError(w, r, fmt.Errorf("%w: %s %s", ErrControlNotFound, r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Headers first: recipient, sender, clock, declared length and
		// MAC are checked before a byte of the body is read.
		h, err := p.verifier.verifyHeaders(r, maxControlBody)
		if err != nil {
			p.refused(w, r, err)
			return
		}
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(http.MaxBytesReader(w, r.Body, maxControlBody), body); err != nil {
			p.refused(w, r, fmt.Errorf("%w: reading body: %v", ErrControlBadRequest, err))
			return
		}
		if err := p.verifier.accept(h, body); err != nil {
			p.refused(w, r, err)
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
		ctx := context.WithValue(r.Context(), controlAuthCtxKey, &controlAuth{node: h.node, sig: h.sig, body: body})
		mux.ServeHTTP(w, r.WithContext(ctx))
	})
}

// refused answers a request that failed authentication, logging it at
// most refusedLogRate times a second (a flood of bad requests must not
// flood the log).
func (p *Pipes) refused(w http.ResponseWriter, r *http.Request, err error) {
	if p.refusedLog.Allow() {
		p.log.Warn("control request refused", "method", r.Method, "path", r.URL.Path,
			"node", r.Header.Get(HeaderNode), "remote", r.RemoteAddr, "err", err)
	}
	p.writeError(w, r, err)
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
	if sig := requestSig(r); sig != "" {
		signResponse(p.cfg.Secret, h, status, sig, p.cfg.NodeID, body, time.Now())
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // the peer went away; nothing to do
}

// requestSig returns the signature a response to r is bound to: that of
// the authenticated request, or for a refused one the signature header
// when it is canonical hex ("" otherwise: the response goes unsigned and
// its client refuses it, as it would any answer to a garbled request).
// Signing refusals too lets a client tell a peer's real refusal from one
// forged on the way; a signed refusal reveals nothing an eavesdropper
// could use, since a response string can never verify as a request.
func requestSig(r *http.Request) string {
	if a := authOf(r); a != nil {
		return a.sig
	}
	if sig := r.Header.Get(HeaderSignature); canonicalHex(sig, sha256.Size) {
		return sig
	}
	return ""
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

// senderFrom checks that the {node} path segment is the authenticated
// sender: a node may only act as itself on its links.
func (p *Pipes) senderFrom(r *http.Request) (string, error) {
	a := authOf(r)
	node := r.PathValue("node")
	if a == nil {
		return "", fmt.Errorf("%w: unauthenticated", ErrControlUnauthorized)
	}
	if node != a.node {
		return "", fmt.Errorf("%w: link of node %q requested by %q", ErrControlForbidden, node, a.node)
	}
	if node == p.cfg.NodeID {
		return "", fmt.Errorf("%w: a node cannot link to itself", ErrControlBadRequest)
	}
	return node, nil
}

// checkRefs validates a wanted list from the wire (its entries are checked
// one by one when served).
func checkRefs(refs []PipeRef) error {
	if len(refs) > maxWantedPerLink {
		return fmt.Errorf("%w: more than %d wanted producers", ErrControlBadRequest, maxWantedPerLink)
	}
	return nil
}

// handleNegotiate serves POST /cluster/v1/links/{controller}/negotiate (on
// the answerer). It runs on the HTTP server's goroutine, bounded by the
// request context and RequestTimeout.
func (p *Pipes) handleNegotiate(w http.ResponseWriter, r *http.Request) {
	peer, err := p.senderFrom(r)
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
	case len(req.Side) > maxIDLength:
		err = fmt.Errorf("%w: oversized side", ErrControlBadRequest)
	case req.Offer.Type != webrtc.SDPTypeOffer || req.Offer.SDP == "":
		err = fmt.Errorf("%w: offer must be an SDP offer", ErrControlBadRequest)
	case req.Seq == 0:
		err = fmt.Errorf("%w: seq must be positive", ErrControlBadRequest)
	case peer > p.cfg.NodeID:
		err = fmt.Errorf("%w: node %s is not the controller of its link with %s", ErrControlForbidden, peer, p.cfg.NodeID)
	default:
		err = cmp.Or(checkRefs(req.Wanted), checkRefs(refsOf(req.Tracks)))
	}
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.RequestTimeout)
	defer cancel()
	l, err := p.linkForOffer(peer, req)
	if err != nil {
		p.writeError(w, r, fmt.Errorf("cluster: negotiate link %s-%s: %w", peer, p.cfg.NodeID, err))
		return
	}
	a, ok := l.role.(*answerer)
	if !ok {
		p.writeError(w, r, fmt.Errorf("%w: this node is the controller of its link with %s", ErrControlForbidden, peer))
		return
	}
	resp, err := a.answer(ctx, req)
	if err != nil {
		p.writeError(w, r, fmt.Errorf("cluster: negotiate link %s-%s: %w", peer, p.cfg.NodeID, err))
		return
	}
	p.writeJSON(w, r, http.StatusOK, resp)
}

// handleWant serves POST /cluster/v1/links/{answerer}/want (on the
// controller): it waits for the round that negotiates the wanted set,
// bounded by the request context and twice RequestTimeout (a round in
// flight, then the one covering the request).
func (p *Pipes) handleWant(w http.ResponseWriter, r *http.Request) {
	peer, err := p.senderFrom(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	var req wantRequest
	if err := decodeJSON(authOf(r).body, &req); err != nil {
		p.writeError(w, r, err)
		return
	}
	switch {
	case !validID(req.Side) || len(req.LinkID) > maxIDLength:
		err = fmt.Errorf("%w: missing or oversized side or linkId", ErrControlBadRequest)
	case req.Version == 0:
		err = fmt.Errorf("%w: version must be positive", ErrControlBadRequest)
	case peer < p.cfg.NodeID:
		err = fmt.Errorf("%w: node %s is the controller of its link with %s", ErrControlForbidden, peer, p.cfg.NodeID)
	default:
		err = checkRefs(req.Wanted)
	}
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*p.cfg.RequestTimeout)
	defer cancel()
	l, err := p.linkForWant(peer, req)
	if err != nil {
		p.writeError(w, r, fmt.Errorf("cluster: want on link %s-%s: %w", p.cfg.NodeID, peer, err))
		return
	}
	c, ok := l.role.(*controller)
	if !ok {
		p.writeError(w, r, fmt.Errorf("%w: this node is the answerer of its link with %s", ErrControlForbidden, peer))
		return
	}
	resp, err := c.acceptWants(ctx, req)
	if err != nil {
		p.writeError(w, r, fmt.Errorf("cluster: want on link %s-%s: %w", p.cfg.NodeID, peer, err))
		return
	}
	p.writeJSON(w, r, http.StatusOK, resp)
}

// refsOf returns the PipeRefs of accepted entries.
func refsOf(as []AcceptedPipe) []PipeRef {
	refs := make([]PipeRef, len(as))
	for i, a := range as {
		refs[i] = PipeRef{Room: a.Room, ProducerID: a.ProducerID, PipeID: a.PipeID}
	}
	return refs
}

// handleCloseLink serves POST /cluster/v1/links/{sender}/close (either side).
func (p *Pipes) handleCloseLink(w http.ResponseWriter, r *http.Request) {
	peer, err := p.senderFrom(r)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	var req closeLinkRequest
	if err := decodeJSON(authOf(r).body, &req); err != nil {
		p.writeError(w, r, err)
		return
	}
	if !validID(req.LinkID) || len(req.Side) > maxIDLength {
		p.writeError(w, r, fmt.Errorf("%w: missing or oversized linkId or side", ErrControlBadRequest))
		return
	}
	closed := false
	if l := p.linkWith(peer); l != nil {
		closed = l.closeRequested(req)
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

// handleRoomSync serves POST /cluster/v1/sync/rooms: the membership's room
// state exchange (see roomsync.go).
func (p *Pipes) handleRoomSync(w http.ResponseWriter, r *http.Request) {
	a := authOf(r)
	p.mu.Lock()
	fn := p.onRoomSync
	p.mu.Unlock()
	if fn == nil {
		p.writeError(w, r, fmt.Errorf("%w: no room sync handler", ErrControlNotImplemented))
		return
	}
	out, err := fn(a.node, a.body)
	if err != nil {
		p.writeError(w, r, err)
		return
	}
	p.writeJSON(w, r, http.StatusOK, out)
}
