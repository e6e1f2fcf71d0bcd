package cluster

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
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
// is done. Owned by Node; started by Start.
func (n *Node) runDirectory(ctx context.Context) {
	defer n.wg.Done()
	w := n.newPrefixWatch(nodesPrefix)
	w.run(ctx, n.applyDirectory)
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
	}
}

// applyDirectory replaces the node directory with the records in pairs. For
// every other node whose record disappeared, or was rewritten by a new life
// of that node (different start time or URL), it drops the node's links and
// pipes (Pipes.DropNode); then it asks every room watch to re-evaluate which
// remote producers to pipe. If this node's own record is missing while it has
// a session, the session goroutine is asked to check the session at once.
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
	}
	_, selfPresent := recs[self]
	checkSelf := !selfPresent && n.session != "" && n.state == stateRunning
	n.nodes = recs
	rooms := n.roomWatchesLocked()
	n.mu.Unlock()

	sort.Strings(dropped)
	sort.Strings(joined)
	for _, id := range dropped {
		n.log.Info("node left the cluster; dropping its pipes", "peer", id)
		n.pipes.DropNode(id)
	}
	for _, id := range joined {
		n.log.Info("node joined the cluster", "peer", id, "url", recs[id].URL)
	}
	if len(dropped) > 0 || len(joined) > 0 {
		for _, w := range rooms {
			w.poke()
		}
	}
	if checkSelf {
		n.nudgeSession()
	}
}

// resolve returns the control base URL of node id; it is the Resolve function
// of the node's Pipes.
func (n *Node) resolve(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, ok := n.nodes[id]
	if !ok || id == n.cfg.NodeID {
		return "", false
	}
	return rec.URL, true
}

// origins returns the nodes whose producers may be piped: every other node in
// the directory, with the time before which PipeIn must not be tried (zero
// when there is no link backoff).
func (n *Node) origins() map[string]time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]time.Time, len(n.nodes))
	for id := range n.nodes {
		if id == n.cfg.NodeID {
			continue
		}
		var until time.Time
		if lb := n.links[id]; lb != nil {
			until = lb.until
		}
		out[id] = until
	}
	return out
}

// onLinkFailed is the Pipes' link-failure callback: it delays re-piping from
// node (growing backoff) and asks every room watch to re-evaluate, which pipes
// the node's producers in again (over a new link) once the delay has passed.
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
}
