package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// departedTTL is how long a node whose record vanished stays listed in
// Status (with Alive false).
const departedTTL = 10 * time.Minute

// Link failure backoff: after a link to a node fails, producers of that node
// are piped again only after this (growing) delay.
const (
	linkBackoffMin   = time.Second
	linkBackoffMax   = 30 * time.Second
	linkBackoffReset = time.Minute // a failure this long after the last one starts over
)

// departedNode is a node whose record disappeared at At.
type departedNode struct {
	rec nodeRecord
	at  time.Time
}

// linkBackoff delays re-piping from a node whose link failed.
type linkBackoff struct {
	b     backoff
	last  time.Time // last failure
	until time.Time // no PipeIn from the node before this
}

// runDirectory keeps the node directory (confab/nodes/) up to date until ctx
// is done, and ends resync grace periods (resync.go): when one ends, it
// applies the latest directory again and has every room re-evaluate. Owned
// by Node; started by Start. The blocking query runs on a helper goroutine
// it waits for.
func (n *Node) runDirectory(ctx context.Context) {
	defer n.wg.Done()
	results := make(chan api.KVPairs, 1)
	var qwg sync.WaitGroup
	qwg.Add(1)
	go func() {
		defer qwg.Done()
		n.newPrefixWatch(nodesPrefix).run(ctx, func(p api.KVPairs) {
			// Snapshots: the latest wins over an unconsumed older one.
			select {
			case <-results:
			default:
			}
			results <- p
		})
	}()
	defer qwg.Wait()
	graceEnd := time.NewTimer(time.Hour)
	graceEnd.Stop()
	defer graceEnd.Stop()
	var last api.KVPairs
	have := false
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-results:
			last, have = p, true
			n.applyDirectory(p)
		case <-n.resyncCh:
		case <-graceEnd.C:
			if n.inResync(time.Now()) {
				break // extended meanwhile
			}
			n.log.Info("consul resync grace period over; dropping what did not come back")
			if have {
				n.applyDirectory(last)
			}
			n.pokeRooms()
		}
		graceEnd.Stop()
		if d := time.Until(n.resyncDeadline()); d > 0 {
			graceEnd.Reset(d + 10*time.Millisecond)
		}
	}
}

// newPrefixWatch returns a watch of prefix with the node's settings.
func (n *Node) newPrefixWatch(prefix string) *prefixWatch {
	return &prefixWatch{
		kv:         n.reg.kv,
		prefix:     prefix,
		wait:       n.cfg.WatchWait,
		timeout:    n.cfg.ConsulTimeout,
		maxBackoff: n.cfg.MaxBackoff,
		health:     n.health,
		log:        n.log,
		onReset:    func() { n.startResync("consul index went backwards on " + prefix) },
		restart:    n.watchRestart,
	}
}

// applyDirectory replaces the node directory with the records in pairs. For
// every other node whose record disappeared, or was rewritten by a new life
// of that node (different start time or URL), it drops the node's links and
// pipes (pipe.Pipes.DropNode) and forgets whether it was unreachable; then it asks
// every room watch to re-evaluate which remote producers to pipe. During a
// resync grace period nodes missing from pairs are kept. If this node's own
// record is missing while it has a session, the session goroutine is asked
// to check the session at once, and if the record was there before, a
// resync grace period starts (Consul lost data).
func (n *Node) applyDirectory(pairs api.KVPairs) {
	recs := make(map[string]nodeRecord, len(pairs))
	for _, p := range pairs {
		id, ok := parseNodeKey(p.Key)
		if !ok {
			continue
		}
		var rec nodeRecord
		if err := json.Unmarshal(p.Value, &rec); err != nil || rec.URL == "" {
			n.log.Debug("ignoring malformed node record", "key", p.Key)
			continue
		}
		if id != n.cfg.NodeID && !n.checkRecordURL(id, rec.URL) {
			continue // never dialled, never handed to browsers
		}
		rec.ID = id
		recs[id] = rec
	}
	self := n.cfg.NodeID
	now := time.Now()

	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return
	}
	_, selfPresent := recs[self]
	_, selfWasPresent := n.nodes[self]
	checkSelf := !selfPresent && n.session != "" && n.state == stateRunning
	// Our record vanished although we hold it: Consul lost data (or
	// expired us); other records may be missing for the same reason.
	lostData := checkSelf && selfWasPresent && !n.kv.isDirty(nodeKey(self))
	firstResync := lostData && n.extendResyncLocked(now)
	if now.Before(n.resyncUntil) {
		for id, old := range n.nodes {
			if _, ok := recs[id]; !ok && id != self {
				recs[id] = old // not trusted as gone yet
			}
		}
	}
	var dropped, joined []string
	for id, old := range n.nodes {
		if id == self {
			continue
		}
		rec, ok := recs[id]
		switch {
		case !ok:
			dropped = append(dropped, id)
			n.departed[id] = departedNode{rec: old, at: now}
		case !rec.StartedAt.Equal(old.StartedAt) || rec.URL != old.URL:
			dropped = append(dropped, id) // restarted: its old links are dead
			joined = append(joined, id)
		}
	}
	for id := range recs {
		if _, ok := n.nodes[id]; !ok && id != self {
			joined = append(joined, id)
		}
		delete(n.departed, id)
	}
	for id, d := range n.departed {
		if now.Sub(d.at) > departedTTL {
			delete(n.departed, id)
		}
	}
	for _, id := range dropped {
		if _, ok := recs[id]; !ok {
			delete(n.links, id)
		}
		delete(n.unreachable, id) // gone, or a new life judged afresh
		n.stopOutboxLocked(id)
		n.stopChatOutboxLocked(id)
	}
	n.nodes = recs
	rooms := n.roomWatchesLocked()
	n.mu.Unlock()

	sort.Strings(dropped)
	sort.Strings(joined)
	for _, id := range dropped {
		n.log.Info("node left the cluster; dropping its pipes", "peer", id)
		n.media.DropNode(id)
	}
	for _, id := range joined {
		n.log.Info("node joined the cluster", "peer", id, "url", recs[id].URL)
	}
	for _, id := range dropped {
		for _, w := range rooms {
			w.forget(id, recs[id].StartedAt) // zero when it departed
		}
	}
	for _, id := range joined {
		// Rooms that already know it as a peer (from Consul records read
		// before its node record arrived) send it their state now.
		n.markSync(id, n.roomsSharedWith(id)...)
	}
	if len(dropped) > 0 || len(joined) > 0 {
		for _, w := range rooms {
			w.poke()
		}
	}
	if lostData {
		n.resyncStarted("own node record vanished", firstResync)
	}
	if checkSelf {
		n.nudgeSession()
	}
}

// resolve returns the control base URL of node id; it is the Resolve function
// of the node's pipe.Pipes.
func (n *Node) resolve(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, ok := n.nodes[id]
	if !ok || id == n.cfg.NodeID {
		return "", false
	}
	return rec.URL, true
}

// mayServe is the MayServe function of the node's pipe.Pipes: a producer
// of room is served to node only while this node knows node has the room
// open, i.e. node is among the peers of the room's watch (from node's
// room records in Consul or the room states node pushed), and node is in
// the directory.
func (n *Node) mayServe(node, room string) bool {
	w := n.openWatch(room)
	if w == nil || !w.hasPeer(node) {
		return false
	}
	_, ok := n.resolve(node)
	return ok
}

// originInfo is what a room needs to know of a node it may pipe from.
type originInfo struct {
	life  time.Time // the node's startedAt in its record
	until time.Time // no PipeIn before this (link backoff); zero if none
}

// origins returns the nodes whose producers may be piped: every other node in
// the directory that is not marked unreachable, with its life and the time
// before which PipeIn must not be tried (zero when there is no link backoff).
func (n *Node) origins() map[string]originInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]originInfo, len(n.nodes))
	for id, rec := range n.nodes {
		if _, dead := n.unreachable[id]; dead || id == n.cfg.NodeID {
			continue
		}
		o := originInfo{life: rec.StartedAt}
		if lb := n.links[id]; lb != nil {
			o.until = lb.until
		}
		out[id] = o
	}
	return out
}

// onLinkFailed is the pipe.Pipes' link-failure callback: it delays re-piping from
// node (growing backoff) and asks every room watch to re-evaluate, which pipes
// the node's producers in again (over a new link) once the delay has passed.
// It also probes the node (liveness.go): if it is gone, its producers are
// not piped again at all.
func (n *Node) onLinkFailed(node string) {
	now := time.Now()
	n.mu.Lock()
	if n.state == stateClosed {
		n.mu.Unlock()
		return
	}
	lb := n.links[node]
	if lb == nil {
		lb = &linkBackoff{b: backoff{min: linkBackoffMin, max: linkBackoffMax}}
		n.links[node] = lb
	}
	if now.Sub(lb.last) > linkBackoffReset {
		lb.b.reset()
	}
	firstInSeries := lb.b.attempt == 0
	delay := lb.b.next()
	lb.last = now
	lb.until = now.Add(delay)
	rooms := n.roomWatchesLocked()
	n.mu.Unlock()
	// Log the first failure of a series; repeated failures of the same
	// series (the peer stays unreachable) only at debug level.
	level := slog.LevelDebug
	if firstInSeries {
		level = slog.LevelWarn
	}
	n.log.Log(n.ctx, level, "link to node failed; piping its producers again later", "peer", node, "retryIn", delay.Round(time.Millisecond))
	for _, w := range rooms {
		w.poke()
	}
	// Is the node itself gone? (Its control channel answers a probe if not.)
	n.probe(node, "link failed")
}
