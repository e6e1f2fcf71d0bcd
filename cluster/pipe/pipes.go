package pipe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/confab/confab/sfu"
	"golang.org/x/time/rate"
)

// Pipes defaults.
const (
	DefaultPipeRequestTimeout = 5 * time.Second
	DefaultPipeMaxClockSkew   = 30 * time.Second
	DefaultLinkIdleTimeout    = 5 * time.Second
	DefaultPipeProbeTimeout   = 2 * time.Second
	minSecretLength           = 16
)

// Log rate of refused control requests: a burst, then one a second.
const (
	refusedLogRate  rate.Limit = 1
	refusedLogBurst            = 10
)

// PipesConfig configures node-to-node pipes. Call SetDefaults, then
// Validate (NewPipes does both on its own copy).
type PipesConfig struct {
	// NodeID is this node's id; must equal the engine's NodeID.
	NodeID string
	// Secret is the shared cluster secret, the HMAC key of the control
	// channel; at least 16 bytes. NewPipes keeps a copy.
	Secret []byte
	// Resolve maps a node id to the base URL of its control channel
	// ("http://10.0.0.2:8080", no path; routes are /cluster/v1/...), from
	// the Consul node records. It is also the directory of senders: a
	// control request from a node id Resolve does not know is refused
	// (403). Called without Pipes locks held, for every control request
	// sent and received; must be fast and safe for concurrent use.
	Resolve func(nodeID string) (baseURL string, ok bool)
	// RequestTimeout bounds every control request and every negotiation
	// step (ICE gathering included). Default 5s.
	RequestTimeout time.Duration
	// MaxClockSkew is the largest accepted difference between a request's
	// timestamp and this node's clock; also how long signatures are
	// remembered for replay protection. Default 30s.
	MaxClockSkew time.Duration
	// LinkIdleTimeout is the grace period a link is kept open after it
	// stopped carrying producers in both directions, so that a quick
	// re-publish reuses it. Default 5s.
	LinkIdleTimeout time.Duration
	// ProbeTimeout bounds one liveness probe (Ping) of a peer's control
	// channel. Short, so that a dead peer is recognised quickly; a live
	// peer answers a ping in milliseconds. Default 2s.
	ProbeTimeout time.Duration
	// MayServe reports whether this node may serve a producer of room to
	// node, i.e. whether node is known to have the room open (package
	// cluster answers from its room watches). Called without Pipes locks
	// held before a producer is first sent to a peer; must be fast and
	// safe for concurrent use. nil serves every room (tests of this
	// package only).
	MayServe func(node, room string) bool
	// Logger is the parent logger; default slog.Default().
	Logger *slog.Logger
	// HTTPClient sends control requests. Default: a client owned by Pipes
	// with dial/header timeouts and no redirects (closed by Pipes.Close).
	HTTPClient *http.Client
}

// SetDefaults fills zero fields with defaults.
func (c *PipesConfig) SetDefaults() {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultPipeRequestTimeout
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultPipeMaxClockSkew
	}
	if c.LinkIdleTimeout == 0 {
		c.LinkIdleTimeout = DefaultLinkIdleTimeout
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultPipeProbeTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field.
func (c *PipesConfig) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("cluster: pipes: NodeID is required")
	case len(c.Secret) < minSecretLength:
		return fmt.Errorf("cluster: pipes: Secret must be at least %d bytes", minSecretLength)
	case c.Resolve == nil:
		return errors.New("cluster: pipes: Resolve is required")
	case c.RequestTimeout <= 0:
		return errors.New("cluster: pipes: RequestTimeout must be positive")
	case c.MaxClockSkew <= 0:
		return errors.New("cluster: pipes: MaxClockSkew must be positive")
	case c.LinkIdleTimeout <= 0:
		return errors.New("cluster: pipes: LinkIdleTimeout must be positive")
	case c.ProbeTimeout <= 0:
		return errors.New("cluster: pipes: ProbeTimeout must be positive")
	}
	return nil
}

// Pipes moves producers between nodes: over ONE link per peer node (one
// PeerConnection carrying producers in both directions, shared by all
// rooms) it pulls remote producers into local rooms and serves local
// producers to the peer, and it serves the authenticated control channel
// the links are negotiated on. Of two nodes, the one with the smaller id
// controls their link (sends every offer). See the protocol summary at the
// top of control.go.
//
// Ownership: Pipes owns every link PeerConnection, every piped-in
// sfu.Producer it added, every sfu.Consumer it created on link PCs, and all
// goroutines it starts; Close releases them and waits. The sfu.Engine must
// outlive the Pipes (close Pipes first).
//
// Locking: mu guards the fields below it; each link has its own mutex.
// Lock order is Pipes.mu before link mu; no lock is held while calling
// into the engine's blocking methods, doing network I/O, or invoking
// callbacks.
type Pipes struct {
	cfg      PipesConfig
	engine   *sfu.Engine
	log      *slog.Logger
	client   *controlClient
	verifier *verifier
	// refusedLog rate-limits the log lines of refused control requests.
	refusedLog *rate.Limiter
	handler    http.Handler
	ownHTTP    bool
	ctx        context.Context // cancelled by Close: aborts control requests
	cancel     context.CancelFunc

	wg sync.WaitGroup // every goroutine started by Pipes and its links

	mu            sync.Mutex
	closed        bool
	links         map[string]*link // by peer node id
	onLinkFailed  func(nodeID string)
	onLinkTrouble func(nodeID string)
	onRoomEvent   func(RoomEvent)
	onRoomSync    func(from string, body []byte) (any, error)
	lastFailure   map[string]time.Time // by peer: last link failure logged at WARN
}

// NewPipes validates cfg and returns Pipes for engine. Nothing starts until
// the first PipeIn or incoming control request.
func NewPipes(cfg PipesConfig, engine *sfu.Engine) (*Pipes, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if engine == nil {
		return nil, errors.New("cluster: pipes: engine is required")
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	if engine.NodeID() != cfg.NodeID {
		return nil, fmt.Errorf("cluster: pipes: NodeID %q differs from the engine's %q", cfg.NodeID, engine.NodeID())
	}
	p := &Pipes{
		cfg:    cfg,
		engine: engine,
		log:    cfg.Logger.With("component", "pipes", "node", cfg.NodeID),
		links:  make(map[string]*link),

		lastFailure: make(map[string]time.Time),
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = newOwnHTTPClient(cfg.RequestTimeout)
		p.ownHTTP = true
	}
	p.client = &controlClient{
		nodeID:  cfg.NodeID,
		secret:  cfg.Secret,
		maxSkew: cfg.MaxClockSkew,
		resolve: cfg.Resolve,
		http:    hc,
		now:     time.Now,
	}
	known := func(node string) bool { _, ok := cfg.Resolve(node); return ok }
	p.verifier = newVerifier(cfg.Secret, cfg.NodeID, known, cfg.MaxClockSkew, time.Now)
	p.refusedLog = rate.NewLimiter(refusedLogRate, refusedLogBurst)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.handler = p.newControlHandler()
	return p, nil
}

// Handler returns the control channel handler. The app mounts it at
// "/cluster/" WITHOUT stripping the prefix: it routes /cluster/v1/... .
func (p *Pipes) Handler() http.Handler { return p.handler }

// SetOnLinkFailed installs fn, called with the peer node id when the link
// with that node fails while this node pulls producers over it: ICE/DTLS
// failure, the PC closing unexpectedly, a control request to the peer
// failing, timing out or being refused as stale, or the peer closing its
// side. By then the link and every producer piped through it are closed;
// the orchestrator may re-pipe what the registry still lists (a new link
// is created) or treat the node as gone. A failing link that only served
// the peer is not reported: the peer notices it itself. fn is called
// without locks held, from a Pipes, pion or HTTP handler goroutine; it may
// call Pipes methods but must not block for long. Set it before use; nil
// disables.
func (p *Pipes) SetOnLinkFailed(fn func(nodeID string)) {
	p.mu.Lock()
	p.onLinkFailed = fn
	p.mu.Unlock()
}

// SetOnLinkDisconnected installs fn, called with the peer node id when the
// link with that peer reports the WebRTC connection state "disconnected":
// ICE heard nothing from the peer for
// sfu.Config.ICEDisconnectedTimeout. The link stays open (ICE may recover;
// it fails after sfu.Config.ICEFailedTimeout more). The membership uses it
// to probe the peer (Ping) and drop it at once when it is dead. Same rules
// as SetOnLinkFailed: no locks held, a Pipes or pion goroutine, must not
// block. nil disables.
func (p *Pipes) SetOnLinkDisconnected(fn func(nodeID string)) {
	p.mu.Lock()
	p.onLinkTrouble = fn
	p.mu.Unlock()
}

// Ping checks that nodeID's control channel answers: a signed
// GET /cluster/v1/ping with a signed answer from nodeID, bounded by ctx and
// ProbeTimeout. nil proves the peer process is alive and holds the
// secret; an error (connection refused, timeout, bad answer, ...) means it
// could not be reached.
func (p *Pipes) Ping(ctx context.Context, nodeID string) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProbeTimeout)
	defer cancel()
	err := p.client.ping(ctx, nodeID)
	var refused *ControlError
	if err != nil && !errors.As(err, &refused) {
		return fmt.Errorf("cluster: ping %s: %w", nodeID, err)
	}
	// nil, or a refusal signed by nodeID for this ping (e.g. this node is
	// not in its directory yet): either way the peer is alive.
	return nil
}

// SetRoomEventHandler installs fn, called for every authenticated
// POST /cluster/v1/rooms/{room}/events (see RoomEvent), synchronously on the
// HTTP server goroutine and without locks held; it must not block for long
// (enqueue). nil (the default) answers such requests with 501.
func (p *Pipes) SetRoomEventHandler(fn func(RoomEvent)) {
	p.mu.Lock()
	p.onRoomEvent = fn
	p.mu.Unlock()
}

// SetRoomSyncHandler installs fn, called for every authenticated
// POST /cluster/v1/sync/rooms with the sender and the request body,
// synchronously on the HTTP server goroutine; its result is the signed
// JSON answer (an error is mapped like every control error). nil (the
// default) answers 501. The membership owns the body's format.
func (p *Pipes) SetRoomSyncHandler(fn func(from string, body []byte) (any, error)) {
	p.mu.Lock()
	p.onRoomSync = fn
	p.mu.Unlock()
}

// SyncRooms posts in (JSON) to nodeID's POST /cluster/v1/sync/rooms and
// decodes its signed answer into out, bounded by ctx and RequestTimeout.
func (p *Pipes) SyncRooms(ctx context.Context, nodeID string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	if err := p.client.do(ctx, nodeID, controlPrefix+"sync/rooms", in, out); err != nil {
		return fmt.Errorf("cluster: sync rooms with %s: %w", nodeID, err)
	}
	return nil
}

// SendRoomEvent posts the JSON value body as a room event for room to
// nodeID's control channel and waits for its acceptance (bounded by ctx and
// RequestTimeout).
func (p *Pipes) SendRoomEvent(ctx context.Context, nodeID, room string, body json.RawMessage) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RequestTimeout)
	defer cancel()
	if err := p.client.sendRoomEvent(ctx, nodeID, room, body); err != nil {
		return fmt.Errorf("cluster: send room event to %s: %w", nodeID, err)
	}
	return nil
}

// PipeIn makes the producer described by info (published on node
// info.Origin, in room) available in the local room: it gets or creates
// the one link with info.Origin, and has the origin send the producer on
// it (batched with concurrent changes into the link's next negotiation).
// When the track arrives, it is added with room.AddProducer (Remote=true;
// its keyframe requests become PLI on the link) and its RTP forwarded.
//
// PipeIn returns nil once the origin accepted (or the producer was already
// piped: idempotent per room and producer id); media setup continues
// asynchronously, owned by Pipes. It returns an error wrapping
// ErrPipeRejected (*RejectedError), ErrLinkFailed, ErrPipeRemoved,
// ErrPipeRoomNotFound, ErrNodeUnresolved, ErrPipeInvalid or ErrPipesClosed.
// If ctx ends first, the request is withdrawn (as by Unpipe) and ctx's
// error returned. Safe for concurrent use.
func (p *Pipes) PipeIn(ctx context.Context, room string, info sfu.ProducerInfo) error {
	if err := p.checkPipe(room, info); err != nil {
		return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, err)
	}
	if p.engine.Room(room) == nil {
		return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, ErrPipeRoomNotFound)
	}
	var (
		l   *link
		pp  *inPipe
		err error
	)
	// A link found in the map can close (idle, failure) before want runs,
	// or be agreeing an idle close with its peer (wait for the outcome);
	// the next lookup then finds it or creates a fresh one. Bounded retries.
	for range 5 {
		if l, err = p.linkFor(info.Origin); err != nil {
			return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, err)
		}
		var wait <-chan struct{}
		if pp, wait, err = l.want(room, info); !errors.Is(err, errLinkGone) {
			break
		}
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, ctx.Err())
			}
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, err)
	}
	select {
	case <-pp.settled:
	case <-ctx.Done():
		if l.abandon(pp) {
			return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, ctx.Err())
		}
		<-pp.settled // abandon refused: already settled
	}
	if pp.err != nil {
		return fmt.Errorf("cluster: pipe in %s/%s: %w", room, info.ID, pp.err)
	}
	return nil
}

// checkPipe validates PipeIn arguments.
func (p *Pipes) checkPipe(room string, info sfu.ProducerInfo) error {
	switch {
	case !validID(room) || !validID(info.ID):
		return fmt.Errorf("%w: room and producer id are required", ErrPipeInvalid)
	case info.Origin == "":
		return fmt.Errorf("%w: origin node is required", ErrPipeInvalid)
	case info.Origin == p.cfg.NodeID:
		return fmt.Errorf("%w: producer is local", ErrPipeInvalid)
	case info.Kind != sfu.KindAudio && info.Kind != sfu.KindVideo:
		return fmt.Errorf("%w: unknown kind %q", ErrPipeInvalid, info.Kind)
	}
	return nil
}

// Unpipe closes the local piped producer (room, producerID), if any, and
// has the origin stop sending it (next negotiation of its link); when the
// link then carries nothing in either direction it is closed after
// LinkIdleTimeout. A pending PipeIn for it fails with ErrPipeRemoved. Safe
// for concurrent use.
func (p *Pipes) Unpipe(room, producerID string) {
	k := pipeKey{room: room, producer: producerID}
	for _, l := range p.allLinks() {
		if l.remove(func(pk pipeKey) bool { return pk == k }, ErrPipeRemoved) > 0 {
			return
		}
	}
}

// UnpipeRoom closes every pipe into room (the room closed locally).
func (p *Pipes) UnpipeRoom(room string) {
	for _, l := range p.allLinks() {
		l.remove(func(pk pipeKey) bool { return pk.room == room }, ErrPipeRemoved)
	}
}

// DropNode closes the link with nodeID (both directions) and every
// producer piped through it, without telling the node (it died or left).
// Does not call the OnLinkFailed callback.
func (p *Pipes) DropNode(nodeID string) {
	if l := p.linkWith(nodeID); l != nil {
		l.shutdown(fmt.Errorf("%w: node %s dropped", ErrPipeRemoved, nodeID), closeOpts{})
	}
}

// Close closes every link (telling the peers, best effort, in parallel,
// each bounded by min(RequestTimeout, 2s)), closes piped producers and
// link consumers, and waits for every goroutine and for control requests
// being handled. Idempotent; PipeIn returns ErrPipesClosed and the control
// channel answers 503 afterwards. Call it before sfu.Engine.Close.
func (p *Pipes) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for _, l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()

	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.shutdown(ErrPipesClosed, closeOpts{tellPeer: true})
		}()
	}
	wg.Wait()
	p.cancel()
	p.wg.Wait()
	if p.ownHTTP {
		p.client.http.CloseIdleConnections()
	}
	return nil
}

// allLinks returns a snapshot of the links.
func (p *Pipes) allLinks() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	ls := make([]*link, 0, len(p.links))
	for _, l := range p.links {
		ls = append(ls, l)
	}
	return ls
}

// linkWith returns the link with peer, or nil.
func (p *Pipes) linkWith(peer string) *link {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.links[peer]
}

// errLinkRace is returned by createLink when another link with the peer
// appeared while the PC was being built.
var errLinkRace = errors.New("cluster: concurrent link setup")

// createLink builds a link with peer (and its PeerConnection), applies
// init to it before anyone else can see it, and registers and starts it
// unless Pipes closed or an open link with peer appeared meanwhile
// (errLinkRace, the new PC is closed).
func (p *Pipes) createLink(peer string, init func(*link)) (*link, error) {
	pc, err := p.engine.NewPeerConnection()
	if err != nil {
		return nil, fmt.Errorf("creating link peer connection: %w", err)
	}
	l := newLink(p, peer, pc)
	if init != nil {
		init(l)
	}
	id := l.id // l is shared once registered
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = pc.Close() // never used
		return nil, ErrPipesClosed
	}
	if cur := p.links[peer]; cur != nil && !cur.isClosed() {
		p.mu.Unlock()
		_ = pc.Close() // lost the race; never used
		return cur, errLinkRace
	}
	p.links[peer] = l
	l.start() // handlers and goroutines; under p.mu so Close sees it
	p.mu.Unlock()
	l.log.Info("link created", "link", id)
	return l, nil
}

// linkFor returns the open link with peer, creating it (and its
// PeerConnection) when there is none.
func (p *Pipes) linkFor(peer string) (*link, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPipesClosed
	}
	if l := p.links[peer]; l != nil && !l.isClosed() {
		p.mu.Unlock()
		return l, nil
	}
	p.mu.Unlock()
	if _, ok := p.cfg.Resolve(peer); !ok {
		return nil, fmt.Errorf("%w: %s", ErrNodeUnresolved, peer)
	}
	l, err := p.createLink(peer, nil)
	if errors.Is(err, errLinkRace) {
		return l, nil
	}
	return l, err
}

// linkForOffer returns the link an offer from the controller peer is for
// (see "Identity" in control.go): the current link if the offer names it;
// the current not yet negotiated side, which adopts the link id, for a
// first offer; a fresh link for a first offer when there is none or the
// current one is stale (it is closed as failed). Anything else is
// ErrControlConflict.
func (p *Pipes) linkForOffer(peer string, req negotiateRequest) (*link, error) {
	for range 3 {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPipesClosed
		}
		var stale *link
		if cur := p.links[peer]; cur != nil {
			cur.mu.Lock()
			switch {
			case cur.closed:
				// being removed: as if absent
			case cur.id == req.LinkID:
				ok := req.Side == "" || req.Side == cur.side
				cur.mu.Unlock()
				p.mu.Unlock()
				if !ok {
					return nil, fmt.Errorf("%w: link %s is not with side %s", ErrControlConflict, req.LinkID, req.Side)
				}
				return cur, nil
			case cur.id == "" && req.Seq == 1 && (req.Side == "" || req.Side == cur.side):
				cur.id = req.LinkID
				cur.mu.Unlock()
				p.mu.Unlock()
				cur.log.Info("link adopted", "link", req.LinkID)
				return cur, nil
			case cur.id != "" && req.Seq == 1:
				stale = cur
			default:
				cur.mu.Unlock()
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: unknown link %s (offer %d, side %q)", ErrControlConflict, req.LinkID, req.Seq, req.Side)
			}
			cur.mu.Unlock()
		}
		p.mu.Unlock()
		if req.Seq != 1 {
			return nil, fmt.Errorf("%w: unknown link %s (offer %d)", ErrControlConflict, req.LinkID, req.Seq)
		}
		if stale != nil {
			stale.shutdown(fmt.Errorf("%w: replaced by a new link from the controller", ErrLinkFailed), closeOpts{notify: true})
		}
		l, err := p.createLink(peer, func(l *link) { l.id = req.LinkID })
		if errors.Is(err, errLinkRace) {
			continue // decide again against the link that won
		}
		return l, err
	}
	return nil, fmt.Errorf("%w: concurrent link setup with %s", ErrControlUnavailable, peer)
}

// linkForWant returns the link a want request from the answerer peer is
// for (see "Identity" in control.go): the current link if it is with the
// request's side (a side not known yet is adopted); a fresh link when
// there is none or the request comes from a new side that has no link id
// yet (the stale link is closed as failed). Anything else is
// ErrControlConflict.
func (p *Pipes) linkForWant(peer string, req wantRequest) (*link, error) {
	for range 3 {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPipesClosed
		}
		var stale *link
		if cur := p.links[peer]; cur != nil {
			c, ok := cur.role.(*controller)
			if !ok { // wants go to the controller only (handleWant checked the ids)
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: this node answers its link with %s", ErrControlForbidden, peer)
			}
			cur.mu.Lock()
			known := req.LinkID == "" || req.LinkID == cur.id
			switch {
			case cur.closed:
				// being removed: as if absent
			case known && (c.peerSide == req.Side || c.peerSide == ""):
				c.peerSide = req.Side
				cur.mu.Unlock()
				p.mu.Unlock()
				return cur, nil
			case req.LinkID == cur.id:
				// The answerer replaced its side on our first offer and we
				// have not seen its answer yet.
				c.resetPeerSideLocked(req.Side)
				cur.mu.Unlock()
				p.mu.Unlock()
				return cur, nil
			case req.LinkID == "":
				stale = cur // a new side of the peer: it restarted or re-created its side
			default:
				cur.mu.Unlock()
				p.mu.Unlock()
				return nil, fmt.Errorf("%w: unknown link %s", ErrControlConflict, req.LinkID)
			}
			cur.mu.Unlock()
		}
		p.mu.Unlock()
		if req.LinkID != "" {
			return nil, fmt.Errorf("%w: unknown link %s", ErrControlConflict, req.LinkID)
		}
		if stale != nil {
			stale.shutdown(fmt.Errorf("%w: replaced by a new side of the peer", ErrLinkFailed), closeOpts{notify: true})
		}
		l, err := p.createLink(peer, func(l *link) {
			if c, ok := l.role.(*controller); ok {
				c.peerSide = req.Side
			}
		})
		if errors.Is(err, errLinkRace) {
			continue
		}
		return l, err
	}
	return nil, fmt.Errorf("%w: concurrent link setup with %s", ErrControlUnavailable, peer)
}

// failureLogQuiet is how long after a link failure logged at WARN further
// failures with the same peer are logged at DEBUG only: while a peer stays
// unreachable the orchestrator re-pipes with backoff, and each attempt
// fails the same way.
const failureLogQuiet = time.Minute

// failureLevel returns the level to log a link failure with peer at:
// WARN for the first of a series, DEBUG for repeats within failureLogQuiet.
func (p *Pipes) failureLevel(peer string) slog.Level {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.lastFailure[peer]; ok && now.Sub(last) < failureLogQuiet {
		return slog.LevelDebug
	}
	for id, t := range p.lastFailure { // keep the map small
		if now.Sub(t) >= failureLogQuiet {
			delete(p.lastFailure, id)
		}
	}
	p.lastFailure[peer] = now
	return slog.LevelWarn
}

// logFailure logs a failure of l (see Pipes.failureLevel).
func (l *link) logFailure(msg string, args ...any) {
	l.log.Log(context.Background(), l.p.failureLevel(l.peer), msg, args...)
}

// removeLink forgets l if it is still the link with its peer.
func (p *Pipes) removeLink(l *link) {
	p.mu.Lock()
	if p.links[l.peer] == l {
		delete(p.links, l.peer)
	}
	p.mu.Unlock()
}

// linkDisconnected invokes the OnLinkDisconnected callback (no locks held
// on entry).
func (p *Pipes) linkDisconnected(nodeID string) {
	p.mu.Lock()
	fn, closed := p.onLinkTrouble, p.closed
	p.mu.Unlock()
	if fn != nil && !closed {
		fn(nodeID)
	}
}

// linkFailed invokes the OnLinkFailed callback (no locks held on entry).
func (p *Pipes) linkFailed(nodeID string) {
	p.mu.Lock()
	fn, closed := p.onLinkFailed, p.closed
	p.mu.Unlock()
	if fn != nil && !closed {
		fn(nodeID)
	}
}

// newLinkID returns a random link id.
func newLinkID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
	return hex.EncodeToString(b[:])
}

// CloseIdleConnections closes the control client's idle HTTP connections
// (their reader goroutines otherwise linger until the idle timeout).
func (p *Pipes) CloseIdleConnections() { p.client.http.CloseIdleConnections() }
