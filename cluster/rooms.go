package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/confab/confab/sfu"
	"github.com/hashicorp/consul/api"
)

// roomResync is how often a room with remote producers compares what it asked
// Pipes for with what Pipes reports piped, to catch pipes that failed on
// their own.
const roomResync = 10 * time.Second

// roomWatch follows one open room: a blocking query on confab/rooms/{room}/
// feeds the room's remote producers and nodes; the watch pipes in every
// remote producer whose node is alive and unpipes the ones that went away.
//
// Lifecycle: created by RoomOpened (launched at once, or by Start when the
// room opened before Start), cancelled by RoomClosed or Close. A watch for a
// room that opens again waits for the previous watch of the same room to
// finish (including its UnpipeRoom) before it starts, so the two never
// interleave. The run goroutine owns remote, piped and failing; mu guards
// nodes only.
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

	mu    sync.Mutex
	nodes []string // nodes that have the room open, per the last result

	remote  map[string]sfu.ProducerInfo // remote producers in KV, by id
	piped   map[string]sfu.ProducerInfo // producers this watch piped in, by id
	failing map[string]bool             // producers whose PipeIn failed (logged once)
	bad     map[string]bool             // malformed keys (logged once)
	retry   backoff
	sawSelf bool // the last result held this node's own room record
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
		remote:  make(map[string]sfu.ProducerInfo),
		piped:   make(map[string]sfu.ProducerInfo),
		failing: make(map[string]bool),
		bad:     make(map[string]bool),
		retry:   backoff{min: 500 * time.Millisecond, max: n.cfg.MaxBackoff},
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

// roomNodes returns the nodes that have room open according to Consul.
func (n *Node) roomNodes(room string) []string {
	n.mu.Lock()
	w := n.rooms[room]
	n.mu.Unlock()
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string{}, w.nodes...)
}

// poke asks the watch to re-evaluate its pipes; it never blocks.
func (w *roomWatch) poke() {
	select {
	case w.pokeCh <- struct{}{}:
	default:
	}
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

	results := make(chan api.KVPairs, 1)
	var qwg sync.WaitGroup
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		w.n.newPrefixWatch(roomPrefix(w.name)).run(w.ctx, func(p api.KVPairs) {
			// Latest wins: drop an unconsumed older result.
			select {
			case <-results:
			default:
			}
			results <- p
		})
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		timer.Stop()
		qwg.Wait()
		w.n.pipes.UnpipeRoom(w.name)
	}()
	for {
		select {
		case <-w.ctx.Done():
			return
		case p := <-results:
			w.update(p)
		case <-w.pokeCh:
		case <-timer.C:
		}
		next := w.sync()
		timer.Stop()
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// roomWatchEnded forgets w if it is still the room's current watch.
func (n *Node) roomWatchEnded(w *roomWatch) {
	n.mu.Lock()
	if n.rooms[w.name] == w {
		delete(n.rooms, w.name)
	}
	n.mu.Unlock()
}

// update replaces the watch's view of the room with the KV pairs of a result.
// If this node's own room record vanished from one result to the next while
// the node holds it, Consul lost data: a resync grace period starts (before
// sync acts on the result).
func (w *roomWatch) update(pairs api.KVPairs) {
	self := w.n.cfg.NodeID
	remote := make(map[string]sfu.ProducerInfo)
	nodes := []string{}
	seen := make(map[string]bool)
	hasSelf := false
	for _, p := range pairs {
		k, ok := parseRoomKey(p.Key)
		if !ok || k.Room != w.name {
			w.logBad(p.Key, "unrecognised key")
			seen[p.Key] = true
			continue
		}
		if k.Producer == "" {
			nodes = append(nodes, k.Node)
			hasSelf = hasSelf || k.Node == self
			continue
		}
		if k.Node == self {
			continue
		}
		info, err := decodeProducer(k, p.Value)
		if err != nil {
			w.logBad(p.Key, err.Error())
			seen[p.Key] = true
			continue
		}
		if other, dup := remote[info.ID]; dup {
			w.logBad(p.Key, "producer id also announced by node "+other.Origin)
			seen[p.Key] = true
			continue
		}
		remote[info.ID] = info
	}
	for key := range w.bad {
		if !seen[key] {
			delete(w.bad, key)
		}
	}
	selfKey := roomNodeKey(w.name, self)
	if _, held := w.n.kv.get(selfKey); w.sawSelf && !hasSelf && held && !w.n.kv.isDirty(selfKey) {
		// Our own record vanished although we hold it: Consul lost data
		// (or expired us); other nodes' records may be missing too.
		w.n.startResync("own room record vanished")
	}
	w.sawSelf = hasSelf
	sort.Strings(nodes)
	w.remote = remote
	w.mu.Lock()
	w.nodes = nodes
	w.mu.Unlock()
}

func (w *roomWatch) logBad(key, why string) {
	if w.bad[key] {
		return
	}
	w.bad[key] = true
	w.n.log.Warn("ignoring malformed room record", "room", w.name, "key", key, "why", why)
}

// sync pipes in every remote producer whose node is alive and not in link
// backoff, and unpipes those that are no longer announced or whose node went
// away. During a resync grace period (resync.go) producers that are piped
// but missing from the records stay piped. It returns when to run again (0:
// only on the next change).
func (w *roomWatch) sync() time.Duration {
	origins := w.n.origins()
	now := time.Now()
	actual := make(map[string]bool)
	for _, p := range w.n.pipes.Piped(w.name) {
		actual[p.ID] = true
	}
	desired := make(map[string]sfu.ProducerInfo, len(w.remote))
	for id, p := range w.remote {
		if _, alive := origins[p.Origin]; alive {
			desired[id] = p
		}
	}
	if w.n.inResync(now) {
		// Consul lost data: what is piped stays piped until its origin
		// registers it again or the grace period ends.
		for id, p := range w.piped {
			if _, ok := desired[id]; ok || !actual[id] {
				continue
			}
			if _, alive := origins[p.Origin]; alive {
				desired[id] = p
			}
		}
	}
	for id, p := range w.piped {
		if d, ok := desired[id]; !ok || d.Origin != p.Origin {
			w.n.pipes.Unpipe(w.name, id)
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
			w.n.pipes.Unpipe(w.name, id)
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
		if until := origins[p.Origin]; until.After(now) {
			next = min(next, until.Sub(now)+10*time.Millisecond)
			continue
		}
		todo = append(todo, p)
	}
	// PipeIn waits for the origin's acceptance; concurrent calls are batched
	// by Pipes into one negotiation per link.
	errs := make([]error, len(todo))
	var wg sync.WaitGroup
	for i, p := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.n.pipes.PipeIn(w.ctx, w.name, p)
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
				if errors.Is(err, ErrPipeRejected) {
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
