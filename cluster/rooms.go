package cluster

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// roomResync is how often a room with remote producers compares what it asked
// pipe.Pipes for with what pipe.Pipes reports piped, to catch pipes that failed on
// their own.
const roomResync = 10 * time.Second

// roomWatch follows one open room: which other nodes serve it and what they
// publish there (roomsync.go), and pipes in every remote producer whose node
// is alive, unpiping the ones that went away.
//
// Its view is fed by a one-shot read of the room's Consul records when the
// room opens (after this node's own room record is written) and again every
// ReconcileInterval, and by the states other nodes push (ingest). A state a
// node pushed itself wins over what its records say.
//
// Lifecycle: created by RoomOpened (launched at once, or by Start when the
// room opened before Start), cancelled by RoomClosed or Close. A watch for a
// room that opens again waits for the previous watch of the same room to
// finish (including its UnpipeRoom) before it starts, so the two never
// interleave. The run goroutine owns piped, failing and retry; mu guards
// peers and contrib, which the control channel's handler also writes.
type roomWatch struct {
	n      *Node
	name   string
	room   *sfu.Room // the engine room this watch serves
	ctx    context.Context
	cancel context.CancelFunc
	prev   *roomWatch    // previous watch of the same room, or nil
	done   chan struct{} // closed when run returned (or the watch never ran)
	pokeCh chan struct{} // capacity 1: "re-evaluate"

	launched bool // guarded by n.mu

	mu      sync.Mutex
	peers   map[string]bool         // other nodes serving the room
	contrib map[string]contribution // what each other node publishes here
	bad     map[string]bool         // malformed records or states (logged once)

	readDone atomic.Bool // the first read of the room's records is done

	chatFrom  map[string]bool           // peers whose chat history was received; guarded by mu
	announced map[string]announcedState // origins handed to SetRemoteParticipants; run goroutine only

	piped   map[string]sfu.ProducerInfo // producers this watch piped in, by id
	failing map[string]bool             // producers whose PipeIn failed (logged once)
	retry   backoff
}

// contribution is what one other node publishes in the room.
type contribution struct {
	life         time.Time // the node's startedAt; zero when read from Consul
	seq          uint64
	pushed       bool // from the node itself (else from its Consul records)
	producers    map[string]sfu.ProducerInfo
	participants []sfu.ParticipantInfo // pushed states only
}

func newRoomWatch(n *Node, name string, room *sfu.Room, prev *roomWatch) *roomWatch {
	ctx, cancel := context.WithCancel(n.ctx)
	return &roomWatch{
		n:       n,
		name:    name,
		room:    room,
		ctx:     ctx,
		cancel:  cancel,
		prev:    prev,
		done:    make(chan struct{}),
		pokeCh:  make(chan struct{}, 1),
		peers:   make(map[string]bool),
		contrib: make(map[string]contribution),
		bad:     make(map[string]bool),
		piped:   make(map[string]sfu.ProducerInfo),

		chatFrom:  make(map[string]bool),
		announced: make(map[string]announcedState),
		failing:   make(map[string]bool),
		retry:     backoff{min: 500 * time.Millisecond, max: n.cfg.MaxBackoff},
	}
}

// launchLocked starts w's goroutine. Caller holds n.mu.
func (n *Node) launchLocked(w *roomWatch) {
	w.launched = true
	n.wg.Add(1)
	go w.run()
}

// roomWatchesLocked returns the current room watches. Caller holds n.mu.
func (n *Node) roomWatchesLocked() []*roomWatch {
	out := make([]*roomWatch, 0, len(n.rooms))
	for _, w := range n.rooms {
		out = append(out, w)
	}
	return out
}

// roomNodes returns the nodes known to serve room and present in the
// directory, this one included.
func (n *Node) roomNodes(room string) []string {
	n.mu.Lock()
	w := n.rooms[room]
	n.mu.Unlock()
	if w == nil {
		return nil
	}
	peers := w.peerList()
	n.mu.Lock()
	out := make([]string, 0, len(peers)+1)
	for _, id := range peers {
		if _, ok := n.nodes[id]; ok {
			out = append(out, id)
		}
	}
	n.mu.Unlock()
	out = append(out, n.cfg.NodeID)
	sort.Strings(out)
	return out
}

// peerList returns the other nodes serving the room.
func (w *roomWatch) peerList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.peers))
	for id := range w.peers {
		out = append(out, id)
	}
	return out
}

// hasChatFrom reports whether node's chat history was received.
func (w *roomWatch) hasChatFrom(node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.chatFrom[node]
}

// setChatFrom records that node's chat history was received.
func (w *roomWatch) setChatFrom(node string) {
	w.mu.Lock()
	w.chatFrom[node] = true
	w.mu.Unlock()
}

func (w *roomWatch) hasPeer(node string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peers[node]
}

// forget drops what the room knows node publishes (it left the cluster,
// or restarted), except a state pushed by node's life keep (a restarted
// node may push before this node's directory sees its new record; zero
// keep forgets every state). The node stays among the room's peers: if its
// record comes back (Consul lost it for a while), the directory's "joined"
// sends it this room's state and its answer restores what it publishes; a
// peer that is not in the directory is sent nothing and not listed.
func (w *roomWatch) forget(node string, keep time.Time) {
	w.mu.Lock()
	c, ok := w.contrib[node]
	if !ok || !c.pushed || keep.IsZero() || !c.life.Equal(keep) {
		delete(w.contrib, node)
	}
	w.mu.Unlock()
	w.poke()
}

// poke asks the watch to re-evaluate its pipes; it never blocks.
func (w *roomWatch) poke() {
	select {
	case w.pokeCh <- struct{}{}:
	default:
	}
}

// ingest applies st, the state node (life) pushed or answered for this
// room, received at now, if it is newer than what the watch holds.
func (w *roomWatch) ingest(node string, life time.Time, st roomState, now time.Time) {
	if node == w.n.cfg.NodeID {
		return
	}
	producers, err := decodeStateProducers(node, st)
	if err != nil {
		w.logBad("state from "+node, err.Error())
		return
	}
	w.mu.Lock()
	cur, ok := w.contrib[node]
	if ok && cur.pushed {
		if life.Before(cur.life) || (life.Equal(cur.life) && st.Seq <= cur.seq) {
			w.mu.Unlock()
			return // older or already known
		}
	}
	if st.Open {
		w.peers[node] = true
		w.contrib[node] = contribution{life: life, seq: st.Seq, pushed: true, producers: producers,
			participants: decodeStateParticipants(st)}
	} else {
		delete(w.peers, node)
		delete(w.contrib, node)
	}
	w.mu.Unlock()
	if st.At > 0 && (len(st.Producers) > 0 || len(st.Participants) > 0) {
		w.n.syncLatency.Store(int64(now.Sub(time.UnixMilli(st.At))))
	}
	w.poke()
}

// run is the watch goroutine.
func (w *roomWatch) run() {
	defer w.n.wg.Done()
	defer close(w.done)
	defer w.n.roomWatchEnded(w)
	if w.prev != nil {
		<-w.prev.done // prev was cancelled before w was created
		w.prev = nil
	}
	if w.ctx.Err() != nil {
		return
	}
	defer w.n.media.UnpipeRoom(w.name)
	// The room's records are read on a goroutine of their own, so that a
	// slow read never delays acting on what peers push.
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		w.runReads()
	}()
	defer readers.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		next := w.sync()
		timer.Stop()
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-w.ctx.Done():
			return
		case <-w.pokeCh:
		case <-timer.C:
		}
	}
}

// runReads does the room's first read, then one every ReconcileInterval
// (jittered), until the watch is cancelled.
func (w *roomWatch) runReads() {
	if !w.firstRead() {
		return
	}
	w.readDone.Store(true)
	b := backoff{min: 500 * time.Millisecond, max: w.n.cfg.MaxBackoff}
	for {
		if !sleepCtx(w.ctx, w.n.reconcileDelay()) {
			return
		}
		for w.read(true) != nil {
			if !sleepCtx(w.ctx, b.next()) {
				return
			}
		}
		b.reset()
	}
}

// firstRead waits until this node's room record is in Consul, then reads
// the room's records, retrying with backoff; it returns false when the
// watch was cancelled first. Writing before reading makes two nodes that
// open the room at once see each other (at least one of them sees the
// other's record and pushes to it).
func (w *roomWatch) firstRead() bool {
	key := roomNodeKey(w.name, w.n.cfg.NodeID)
	for {
		ok, flushed := w.n.kv.written(key)
		if ok {
			break
		}
		select {
		case <-w.ctx.Done():
			return false
		case <-flushed:
		}
	}
	b := backoff{min: 250 * time.Millisecond, max: w.n.cfg.MaxBackoff}
	for {
		err := w.read(false)
		if w.ctx.Err() != nil {
			return false
		}
		if err == nil {
			return true
		}
		if !sleepCtx(w.ctx, b.next()) {
			return false
		}
	}
}

// read reads the room's records from Consul and merges them: nodes not yet
// known as peers are added and sent this node's state (their answers bring
// theirs); producers of nodes that never pushed are taken from the records.
// Reconciliation reads (limited) wait for the ReconcileRate limiter; first
// reads, as many as rooms open, are bounded only by the registry's
// concurrent reads, so a burst of opening rooms finds its peers at once.
func (w *roomWatch) read(limited bool) error {
	const activity = "room reads"
	if limited {
		if err := w.n.reads.Wait(w.ctx); err != nil {
			return err
		}
	}
	pairs, err := w.n.reg.listBounded(w.ctx, roomPrefix(w.name))
	if err != nil {
		if w.ctx.Err() == nil {
			w.n.health.fail(activity, err)
		}
		return err
	}
	w.n.health.ok(activity)
	self := w.n.cfg.NodeID
	nodes := make(map[string]bool)
	recs := make(map[string]map[string]sfu.ProducerInfo)
	for _, p := range pairs {
		k, ok := parseRoomKey(p.Key)
		if !ok || k.Room != w.name {
			w.logBad(p.Key, "unrecognised key")
			continue
		}
		if k.Node == self {
			continue
		}
		if k.Producer == "" {
			nodes[k.Node] = true
			continue
		}
		info, err := decodeProducer(k, p.Value)
		if err != nil {
			w.logBad(p.Key, err.Error())
			continue
		}
		if recs[k.Node] == nil {
			recs[k.Node] = make(map[string]sfu.ProducerInfo)
		}
		recs[k.Node][info.ID] = info
	}
	var added []string
	w.mu.Lock()
	for node := range nodes {
		if !w.peers[node] {
			w.peers[node] = true
			added = append(added, node)
		}
		if c, ok := w.contrib[node]; !ok || !c.pushed {
			w.contrib[node] = contribution{producers: recs[node]}
		}
	}
	for node, c := range w.contrib {
		if !c.pushed && !nodes[node] {
			delete(w.contrib, node)
			delete(w.peers, node)
		}
	}
	w.mu.Unlock()
	for _, node := range added {
		w.n.markSync(node, w.name)
	}
	w.poke()
	return nil
}

// reconcileDelay is the jittered time until a room's next reconciliation.
func (n *Node) reconcileDelay() time.Duration {
	d := n.cfg.ReconcileInterval
	return d/2 + rand.N(d)
}

// roomWatchEnded forgets w if it is still the room's current watch.
func (n *Node) roomWatchEnded(w *roomWatch) {
	n.mu.Lock()
	if n.rooms[w.name] == w {
		delete(n.rooms, w.name)
	}
	n.mu.Unlock()
}

func (w *roomWatch) logBad(key, why string) {
	w.mu.Lock()
	seen := w.bad[key]
	if !seen {
		if len(w.bad) > 1000 {
			clear(w.bad)
		}
		w.bad[key] = true
	}
	w.mu.Unlock()
	if !seen {
		w.n.log.Warn("ignoring malformed room record or state", "room", w.name, "key", key, "why", why)
	}
}

// remote returns the producers other nodes publish in the room, by id, each
// from a node alive in the directory (of the life that pushed it).
func (w *roomWatch) remote(origins map[string]originInfo) map[string]sfu.ProducerInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]sfu.ProducerInfo)
	for node, c := range w.contrib {
		o, alive := origins[node]
		if !alive || (c.pushed && !c.life.Equal(o.life)) {
			continue
		}
		for id, p := range c.producers {
			if _, dup := out[id]; dup {
				continue
			}
			out[id] = p
		}
	}
	return out
}

// sync pipes in every remote producer whose node is alive and not in link
// backoff, and unpipes those that are no longer announced or whose node went
// away. It returns when to run again (0: only on the next change).
func (w *roomWatch) sync() time.Duration {
	origins := w.n.origins()
	w.presence(origins)
	now := time.Now()
	actual := make(map[string]bool)
	for _, p := range w.n.media.Piped(w.name) {
		actual[p.ID] = true
	}
	desired := w.remote(origins)
	for id, p := range w.piped {
		if d, ok := desired[id]; !ok || d.Origin != p.Origin {
			w.n.media.Unpipe(w.name, id)
			delete(w.piped, id)
			delete(actual, id)
		}
	}
	for id := range w.failing {
		if _, ok := desired[id]; !ok {
			delete(w.failing, id)
		}
	}
	for id := range actual {
		if _, ok := desired[id]; !ok {
			// Piped but no longer wanted (e.g. left over after a failure).
			w.n.media.Unpipe(w.name, id)
		}
	}
	if len(desired) == 0 {
		w.retry.reset()
		return 0
	}
	ids := make([]string, 0, len(desired))
	for id := range desired {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	next := roomResync
	var todo []sfu.ProducerInfo
	for _, id := range ids {
		p := desired[id]
		if _, ok := w.piped[id]; ok && actual[id] {
			continue
		}
		if until := origins[p.Origin].until; until.After(now) {
			next = min(next, until.Sub(now)+10*time.Millisecond)
			continue
		}
		todo = append(todo, p)
	}
	// PipeIn waits for the origin's acceptance; concurrent calls are batched
	// by pipe.Pipes into one negotiation per link.
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.n.media.PipeIn(w.ctx, w.name, p)
		}()
	}
	wg.Wait()
	if w.ctx.Err() != nil {
		return 0
	}
	failed := false
	for i, p := range todo {
		id := p.ID
		if err := errs[i]; err != nil {
			delete(w.piped, id)
			if !w.failing[id] {
				w.failing[id] = true
				level := slog.LevelWarn
				if errors.Is(err, pipe.ErrPipeRejected) {
					// Usually transient: the origin already closed the
					// producer and its record is about to go.
					level = slog.LevelInfo
				}
				w.n.log.Log(w.ctx, level, "pipe in producer failed; retrying while it is registered",
					"room", w.name, "producer", id, "peer", p.Origin, "err", err)
			}
			failed = true
			continue
		}
		if w.failing[id] {
			delete(w.failing, id)
			w.n.log.Info("piped in producer after earlier failure", "room", w.name, "producer", id, "peer", p.Origin)
		}
		w.piped[id] = p
	}
	if failed {
		next = min(next, w.retry.next())
	} else {
		w.retry.reset()
	}
	return next
}
