package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
	"golang.org/x/time/rate"
)

// nodeState is the lifecycle of a Node.
type nodeState int

const (
	stateNew nodeState = iota
	stateStarting
	stateRunning
	stateClosed
)

// Node is the Consul-backed Membership: it records this node, its rooms and
// its producers in Consul KV under its session, watches the other nodes'
// records and pipes remote producers of its rooms in through pipe.Pipes.
//
// Create it with New, install it with engine.SetObserver, call Start once and
// Close once. All methods are safe for concurrent use. The observer methods
// never block on I/O: they update the desired KV state and the room watches
// and return. One mutex (mu) guards the node's state; it is never held while
// calling pipe.Pipes, the engine or Consul.
type Node struct {
	cfg          Config
	engine       *sfu.Engine
	log          *slog.Logger
	advertiseURL string // cfg.AdvertiseURL without a trailing slash
	reg          *registry
	pipes        *pipe.Pipes
	media        mediaPipes // pipes, or the fleet simulation's stand-in
	local        *localRooms
	placements   *placeTally // participants recently sent to each node (placement.go)
	cpu          *cpuMeter
	reads        *rate.Limiter // reconciliation reads of rooms (ReconcileRate)
	badURLLog    *rate.Limiter // log lines of node records ignored for their URL
	kv           *kvState
	health       *consulHealth
	checkSession chan struct{}  // capacity 1: "renew now" (e.g. a write saw an invalid session)
	writerKick   chan struct{}  // capacity 1: "retry failed writes now" (a new session exists)
	resyncCh     chan struct{}  // capacity 1: "a resync grace period started or was extended"
	watchRestart *restartSignal // restarts every watch from index 0 (resync.go)
	startedAt    time.Time

	ctx    context.Context // cancelled by Close; parent of every goroutine's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine started by the node

	mu        sync.Mutex
	state     nodeState
	startDone chan struct{} // closed when a Start in progress returns
	session   string
	load      nodeLoad
	loadCPUAt time.Time               // when load was last written
	nodes     map[string]nodeRecord   // directory: nodes whose record exists
	departed  map[string]departedNode // nodes whose record vanished recently
	rooms     map[string]*roomWatch   // current watch per open room (may be stopping)
	links     map[string]*linkBackoff // per remote node, after link failures
	// unreachable are nodes whose record exists but whose control channel
	// did not answer a probe (liveness.go); probing are the nodes a probe
	// goroutine currently runs for.
	unreachable map[string]unreachableNode
	probing     map[string]bool
	// resyncUntil: until then Consul is known to have lost data (resync.go)
	// and records missing from it are not taken as departures.
	resyncUntil time.Time
	draining    bool // Drain was called
	// outboxes are the room sync queues per peer node (roomsync.go).
	outboxes map[string]*syncOutbox
	// chatOut are the chat queues per peer node (meeting.go).
	chatOut map[string]*chatOutbox

	syncLatency atomic.Int64 // last room state propagation delay (ns)
}

// mediaPipes is what the membership asks of pipe.Pipes to move media; *pipe.Pipes
// implements it, and the control-plane fleet simulation (no media)
// replaces it with a recorder.
type mediaPipes interface {
	PipeIn(ctx context.Context, room string, info sfu.ProducerInfo) error
	Unpipe(room, producerID string)
	UnpipeRoom(room string)
	Piped(room string) []sfu.ProducerInfo
	DropNode(nodeID string)
}

// New creates the Consul-backed membership of engine. It validates cfg (after
// applying defaults) and that engine's node id equals cfg.NodeID, creates the
// Consul client and the pipe.Pipes, and performs no I/O; Start joins the cluster.
func New(cfg Config, engine *sfu.Engine) (*Node, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: new node: %w", err)
	}
	if engine == nil {
		return nil, fmt.Errorf("cluster: new node: %w: nil engine", ErrInvalidConfig)
	}
	if id := engine.NodeID(); id != cfg.NodeID {
		return nil, fmt.Errorf("cluster: new node: %w: engine node id %q differs from %q", ErrInvalidConfig, id, cfg.NodeID)
	}
	reg, err := newRegistry(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: new node: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:          cfg,
		engine:       engine,
		log:          cfg.Logger,
		advertiseURL: strings.TrimSuffix(cfg.AdvertiseURL, "/"),
		reg:          reg,
		kv:           newKVState(),
		health:       newConsulHealth(cfg.Logger),
		checkSession: make(chan struct{}, 1),
		writerKick:   make(chan struct{}, 1),
		resyncCh:     make(chan struct{}, 1),
		watchRestart: newRestartSignal(),
		startedAt:    time.Now().UTC().Truncate(time.Millisecond),
		ctx:          ctx,
		cancel:       cancel,
		nodes:        make(map[string]nodeRecord),
		departed:     make(map[string]departedNode),
		rooms:        make(map[string]*roomWatch),
		links:        make(map[string]*linkBackoff),
		unreachable:  make(map[string]unreachableNode),
		probing:      make(map[string]bool),
		outboxes:     make(map[string]*syncOutbox),
		chatOut:      make(map[string]*chatOutbox),
		local:        newLocalRooms(),
		placements:   newPlaceTally(),
		cpu:          newCPUMeter(),
		reads:        rate.NewLimiter(rate.Limit(cfg.ReconcileRate), max(1, int(cfg.ReconcileRate))),
		badURLLog:    rate.NewLimiter(badURLLogRate, badURLLogBurst),
	}
	pipes, err := pipe.NewPipes(pipe.PipesConfig{
		NodeID:   cfg.NodeID,
		Secret:   []byte(cfg.Secret),
		Resolve:  n.resolve,
		MayServe: n.mayServe,
		Logger:   cfg.Logger,
	}, engine)
	if err != nil {
		cancel()
		reg.close()
		return nil, fmt.Errorf("cluster: new node: %w", err)
	}
	pipes.SetOnLinkFailed(n.onLinkFailed)
	pipes.SetOnLinkDisconnected(n.onLinkDisconnected)
	pipes.SetRoomSyncHandler(n.handleRoomSync)
	pipes.SetRoomEventHandler(n.handleRoomEvent)
	n.pipes = pipes
	n.media = pipes
	return n, nil
}

// Start joins the cluster: it creates the node's Consul session, deletes the
// records an earlier life of this node id left behind (and that life's
// sessions), reads the node directory, writes the node record and the
// records of rooms and producers observed so far, registers the Consul
// service, and starts the background goroutines (session renewal, KV writer,
// directory watch, one watch per open room). ctx bounds this start-up work
// only. On error nothing stays registered and Start may be retried; after
// Close it returns ErrNodeClosed.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	switch n.state {
	case stateClosed:
		n.mu.Unlock()
		return ErrNodeClosed
	case stateStarting, stateRunning:
		n.mu.Unlock()
		return ErrAlreadyStarted
	}
	n.state = stateStarting
	done := make(chan struct{})
	n.startDone = done
	n.mu.Unlock()
	defer close(done)

	// Close interrupts a Start in progress.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()

	err := n.start(sctx)
	if isDenied(err) {
		err = fmt.Errorf("%w: %w", ErrConsulDenied, err)
	}

	n.mu.Lock()
	if n.state == stateClosed {
		// Close waits for done and cleans up what start registered.
		n.mu.Unlock()
		return ErrNodeClosed
	}
	if err != nil {
		n.state = stateNew
		session := n.session
		n.session = ""
		n.mu.Unlock()
		if session != "" {
			// Best effort (the TTL cleans up otherwise); deletes what start wrote.
			cctx, ccancel := context.WithTimeout(context.Background(), n.cfg.ConsulTimeout)
			_ = n.reg.destroySession(cctx, session)
			ccancel()
		}
		n.kv.markAll() // a retried Start writes everything again
		return err
	}
	defer n.mu.Unlock()
	n.state = stateRunning
	n.goLocked(n.runSession)
	n.goLocked(n.runWriter)
	n.goLocked(n.runDirectory)
	n.goLocked(n.runHealth)
	n.goLocked(n.runLoad)
	for _, w := range n.rooms {
		if !w.launched && w.ctx.Err() == nil {
			n.launchLocked(w)
		}
	}
	n.kv.signal() // records that failed during start are retried by the writer
	n.log.Info("joined cluster", "consul", n.cfg.ConsulAddr, "url", n.advertiseURL)
	return nil
}

// start does Start's Consul work.
func (n *Node) start(ctx context.Context) error {
	session, err := n.reg.createSession(ctx)
	if err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	n.setSession(session)
	stale, err := n.reg.clearNode(ctx, n.cfg.NodeID)
	if err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	if len(stale) > 0 {
		n.log.Info("deleted records left by an earlier life of this node", "count", len(stale))
	}
	if cnt, err := n.reg.destroyStaleSessions(ctx, session); err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	} else if cnt > 0 {
		n.log.Info("destroyed sessions left by an earlier life of this node", "count", cnt)
	}
	pairs, _, err := n.reg.list(ctx, nodesPrefix)
	if err != nil {
		return fmt.Errorf("cluster: start: read node directory: %w", err)
	}
	n.applyDirectory(pairs)
	n.refreshRecord(false)
	if err := n.applyOps(ctx, n.kv.take()); err != nil {
		if n.kv.isDirty(nodeKey(n.cfg.NodeID)) {
			return fmt.Errorf("cluster: start: register node: %w", err)
		}
		// Room and producer records are retried by the writer.
		n.health.fail("kv writes", err)
	}
	if err := n.registerService(ctx); err != nil {
		return fmt.Errorf("cluster: start: %w", err)
	}
	return nil
}

// goLocked starts f as a node goroutine. Caller holds n.mu.
func (n *Node) goLocked(f func(ctx context.Context)) {
	n.wg.Add(1)
	go f(n.ctx)
}

// Handler serves the control channel of the node's pipe.Pipes (routes under
// /cluster/v1/). Mount it at "/cluster/" without stripping the prefix.
func (n *Node) Handler() http.Handler { return n.pipes.Handler() }

// Ready returns nil while the node runs normally. Otherwise it returns an
// error describing why: ErrNotStarted before Start completed, ErrNodeClosed
// after Close, ErrDraining after Drain, and an error wrapping ErrDegraded
// (with the last Consul error) while Consul is unreachable or the node has
// no session — the node then keeps serving its rooms and links and local
// joins work; /readyz reports it as degraded.
func (n *Node) Ready() error {
	n.mu.Lock()
	state, draining, session := n.state, n.draining, n.session
	n.mu.Unlock()
	switch state {
	case stateRunning:
	case stateClosed:
		return ErrNodeClosed
	default:
		return ErrNotStarted
	}
	if draining {
		return ErrDraining
	}
	healthy, lastErr := n.health.state()
	switch {
	case !healthy:
		return fmt.Errorf("%w: %v", ErrDegraded, lastErr)
	case session == "":
		return fmt.Errorf("%w: no consul session (re-creating it)", ErrDegraded)
	}
	return nil
}

// Close leaves the cluster: it stops the room watches (unpiping their rooms),
// the directory watch, the writer and the session renewal, and waits for them;
// then it destroys the session (Consul deletes every record the node holds),
// deregisters the service and closes the pipe.Pipes. Consul calls are bounded by
// the configured timeout, so Close returns even if Consul is unreachable (the
// session's TTL then removes the records). Idempotent; later calls return nil.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return nil
	}
	prev := n.state
	n.state = stateClosed
	startDone := n.startDone
	n.mu.Unlock()

	n.cancel()
	if prev == stateStarting && startDone != nil {
		<-startDone
	}
	n.wg.Wait()
	n.watchRestart.stop()

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.ConsulTimeout)
	defer cancel()
	if session := n.sessionID(); session != "" {
		if err := n.reg.destroySession(ctx, session); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close: %w", err))
		}
		n.setSession("")
	}
	if prev != stateNew {
		if err := n.reg.deregisterService(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close: %w", err))
		}
	}
	if err := n.pipes.Close(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: close pipes: %w", err))
	}
	n.reg.close()
	if prev == stateRunning {
		n.log.Info("left cluster")
	}
	return errors.Join(errs...)
}

// Status returns the /api/cluster document: the known nodes, this node's
// rooms with their local and piped producers, the links and the Consul
// connection's health. It does not call Consul.
func (n *Node) Status(ctx context.Context) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, fmt.Errorf("cluster: status: %w", err)
	}
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return Status{}, ErrNodeClosed
	}
	session := n.session
	nodes := make([]NodeInfo, 0, len(n.nodes)+len(n.departed)+1)
	for id, rec := range n.nodes {
		_, dead := n.unreachable[id]
		nodes = append(nodes, nodeInfo(rec, !dead, id == n.cfg.NodeID))
	}
	for id, d := range n.departed {
		if _, ok := n.nodes[id]; !ok {
			nodes = append(nodes, nodeInfo(d.rec, false, id == n.cfg.NodeID))
		}
	}
	if _, ok := n.nodes[n.cfg.NodeID]; !ok {
		// Our record is not (yet, or no longer) in Consul: still list us.
		self := n.selfRecordLocked()
		if _, gone := n.departed[n.cfg.NodeID]; !gone {
			nodes = append(nodes, nodeInfo(self, false, true))
		}
	}
	n.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	rooms := roomStatuses(n.engine, n.roomNodes)
	load := 0
	for _, r := range rooms {
		load += len(r.Participants)
	}
	for i := range nodes {
		if nodes[i].Self {
			nodes[i].Load = load // live; the record is refreshed every TTL/2
		}
	}

	healthy, lastErr := n.health.state()
	cs := &ConsulStatus{Address: n.cfg.ConsulAddr, Session: session, Healthy: healthy && session != ""}
	if lastErr != nil {
		cs.LastError = lastErr.Error()
	}
	links := n.pipes.Status()
	if links == nil {
		links = []pipe.LinkStatus{}
	}
	return Status{
		NodeID: n.cfg.NodeID,
		Mode:   "consul",
		Nodes:  nodes,
		Rooms:  rooms,
		Links:  links,
		Consul: cs,
	}, nil
}

func nodeInfo(rec nodeRecord, alive, self bool) NodeInfo {
	return NodeInfo{ID: rec.ID, URL: rec.URL, Version: rec.Version, Load: rec.Load, StartedAt: rec.StartedAt,
		Draining: rec.Draining, Alive: alive, Self: self}
}

// RoomOpened records that room r is open on this node and starts its watch.
// Called by the engine when the first local participant joins.
//
// The engine reports RoomClosed by name, after it forgot the room, so a new
// room of the same name can be reported open before the old one is reported
// closed. Watches therefore remember their *sfu.Room: RoomOpened with a new
// room replaces the current watch, and RoomClosed is ignored while the
// engine's open room of that name is the one being watched.
func (n *Node) RoomOpened(r *sfu.Room) {
	name := r.Name()
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return
	}
	cur := n.rooms[name]
	if cur != nil && cur.ctx.Err() == nil {
		if cur.room == r {
			n.mu.Unlock()
			return // already open
		}
		cur.cancel() // its RoomClosed has not been reported yet
	}
	w := newRoomWatch(n, name, r, cur)
	n.rooms[name] = w
	if n.state == stateRunning {
		n.launchLocked(w)
	} else if cur != nil && !cur.launched {
		w.prev = nil
		close(cur.done)
	}
	n.local.change(name, func(l *localRoom) { l.open = true })
	n.mu.Unlock()
	n.kv.set(roomNodeKey(name, n.cfg.NodeID), []byte(roomRecordBody))
}

// RoomClosed stops room's watch (which then unpipes the room) and deletes the
// room's records of this node. Called by the engine when the last local
// participant left.
func (n *Node) RoomClosed(name string) {
	open := n.engine.Room(name) // a newer room of the same name, or nil
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return
	}
	w := n.rooms[name]
	if w != nil && open != nil && w.room == open && w.ctx.Err() == nil {
		// Late report about an older room: the watched room is still open.
		n.mu.Unlock()
		return
	}
	// Change the local state before reading the peers (roomsync.go); under
	// n.mu, so that a RoomOpened of a new room of this name comes after.
	n.local.change(name, func(l *localRoom) { l.open = false; clear(l.producers); clear(l.participants) })
	var peers []string
	if w != nil {
		peers = w.peerList()
	}
	if w != nil {
		w.cancel()
		if !w.launched {
			delete(n.rooms, name)
			close(w.done)
		}
	}
	n.mu.Unlock()
	for _, p := range peers {
		n.markSync(p, name)
	}
	n.kv.del(roomNodeKey(name, n.cfg.NodeID))
	n.kv.delPrefix(roomPrefix(name) + roomProdDir + escapeSegment(n.cfg.NodeID) + "/")
}

// ProducerAdded records local producer info of room r. Remote producers are
// ignored (the engine reports local ones only).
func (n *Node) ProducerAdded(r *sfu.Room, info sfu.ProducerInfo) {
	if info.Remote || n.isClosed() {
		return
	}
	if info.ID == "" {
		n.log.Error("cluster: ignoring local producer without id", "room", r.Name())
		return
	}
	v, err := encodeProducer(n.cfg.NodeID, info)
	if err != nil {
		n.log.Error("cluster: record producer", "room", r.Name(), "producer", info.ID, "err", err)
		return
	}
	n.local.change(r.Name(), func(l *localRoom) { l.producers[info.ID] = v })
	n.kv.set(producerKey(r.Name(), n.cfg.NodeID, info.ID), v)
	n.roomChanged(r.Name())
}

// roomChanged queues room's new local state for every peer of the room.
func (n *Node) roomChanged(room string) {
	if w := n.openWatch(room); w != nil {
		for _, p := range w.peerList() {
			n.markSync(p, room)
		}
	}
}

// ProducerRemoved deletes the record of local producer info of room.
func (n *Node) ProducerRemoved(room string, info sfu.ProducerInfo) {
	if info.Remote || n.isClosed() {
		return
	}
	n.local.change(room, func(l *localRoom) { delete(l.producers, info.ID) })
	n.kv.del(producerKey(room, n.cfg.NodeID, info.ID))
	n.roomChanged(room)
}

func (n *Node) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state == stateClosed
}

func (n *Node) sessionID() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.session
}

func (n *Node) setSession(id string) {
	n.mu.Lock()
	n.session = id
	n.mu.Unlock()
}

// kickWriter asks a failing writer to retry now.
func (n *Node) kickWriter() {
	select {
	case n.writerKick <- struct{}{}:
	default:
	}
}

// nudgeSession asks the session goroutine to renew now.
func (n *Node) nudgeSession() {
	select {
	case n.checkSession <- struct{}{}:
	default:
	}
}

func isSessionLost(err error) bool { return errors.Is(err, ErrSessionLost) }

// selfRecordLocked is this node's record. Caller holds n.mu.
func (n *Node) selfRecordLocked() nodeRecord {
	return nodeRecord{ID: n.cfg.NodeID, URL: n.advertiseURL, Version: n.cfg.Version, Load: n.load.participants,
		Tracks: n.load.tracks, CPU: n.load.cpu, MaxParticipants: n.cfg.MaxParticipants,
		StartedAt: n.startedAt, Draining: n.draining}
}

// applyOps writes ops to Consul with the current session, in transactions
// of up to maxTxnOps operations (one request each); a transaction Consul
// refuses is retried one operation at a time to find the failing key.
// Failed keys are marked dirty again; the first error is returned. Waiters
// of kvState.written are woken when it returns.
func (n *Node) applyOps(ctx context.Context, ops []kvOp) error {
	defer n.kv.applied(ops)
	session := n.sessionID()
	var first error
	fail := func(keys []kvOp, err error) {
		for _, op := range keys {
			n.kv.markDirty(op.Key)
		}
		if first == nil {
			first = err
		}
	}
	for start := 0; start < len(ops); start += maxTxnOps {
		batch := ops[start:min(start+maxTxnOps, len(ops))]
		if ctx.Err() != nil {
			fail(ops[start:], ctx.Err())
			return first
		}
		if session == "" && hasAcquire(batch) {
			// Deletes need no session; acquires wait for a new one.
			var dels []kvOp
			for _, op := range batch {
				if op.Value == nil {
					dels = append(dels, op)
				} else {
					fail([]kvOp{op}, fmt.Errorf("cluster: acquire %s: %w", op.Key, ErrSessionLost))
				}
			}
			batch = dels
			if len(batch) == 0 {
				continue
			}
		}
		err := n.reg.applyTxn(ctx, batch, session)
		if err == nil {
			continue
		}
		if !errors.Is(err, errTxnRefused) {
			fail(batch, err)
			if isSessionLost(err) && session != "" {
				n.nudgeSession()
			}
			continue
		}
		for _, op := range batch {
			if err := n.applyOne(ctx, op, session); err != nil {
				fail([]kvOp{op}, err)
				if isSessionLost(err) && session != "" {
					n.nudgeSession()
				}
			}
		}
	}
	return first
}

func hasAcquire(ops []kvOp) bool {
	for _, op := range ops {
		if op.Value != nil {
			return true
		}
	}
	return false
}

// applyOne writes one op on its own.
func (n *Node) applyOne(ctx context.Context, op kvOp, session string) error {
	if op.Value == nil {
		return n.reg.delete(ctx, op.Key)
	}
	return n.reg.acquire(ctx, op.Key, op.Value, session)
}

// runWriter applies the dirty part of the desired KV state to Consul until ctx
// is done. Failures are retried with capped, jittered exponential backoff;
// while failing, new changes wait for the next retry (or for kickWriter,
// after a new session was created). Logs once per change between failing
// and working.
func (n *Node) runWriter(ctx context.Context) {
	defer n.wg.Done()
	const activity = "kv writes"
	b := backoff{min: 250 * time.Millisecond, max: n.cfg.MaxBackoff}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failing := false
	for {
		if failing {
			select {
			case <-ctx.Done():
				return
			case <-retry.C:
			case <-n.writerKick: // a new session: retry at once
				retry.Stop()
				b.reset()
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-n.kv.wake:
			}
		}
		ops := n.kv.take()
		if len(ops) == 0 {
			failing = false
			continue
		}
		err := n.applyOps(ctx, ops)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n.health.fail(activity, err)
			failing = true
			retry.Reset(b.next())
			continue
		}
		n.health.ok(activity)
		failing = false
		b.reset()
		if n.kv.pending() {
			n.kv.signal()
		}
	}
}

// LinkStats returns the figures of this node's links to other nodes (see
// pipe.Pipes.LinkStats).
func (n *Node) LinkStats() []pipe.LinkStats { return n.pipes.LinkStats() }
