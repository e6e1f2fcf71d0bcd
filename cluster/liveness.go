package cluster

import (
	"time"
)

// Fast node death detection.
//
// Consul notices a dead node only when its session expires, between TTL and
// 2×TTL after its last renewal (10–20s by default). A node that pulls
// producers from the dead node notices much sooner: the link goes silent,
// ICE reports "disconnected" after sfu.Config.ICEDisconnectedTimeout (2s by
// default). Silence alone is not proof (a congested path, a stalled peer),
// so the node then probes the peer's control channel (pipe.Pipes.Ping, a signed
// GET /cluster/v1/ping bounded by pipe.PipesConfig.ProbeTimeout). No signed
// answer — connection refused (the process is gone, the kernel answers for
// it), timeout (the host is gone), a wrong signer — marks the peer
// unreachable: its pipes are dropped at once (participants get
// producer-removed), Status lists it with Alive false, and the room watches
// ignore its producers.
//
// The mark is tied to the peer's record (its life): it ends when the record
// vanishes (the session expired: the ordinary departure), when it comes back
// with another startedAt or URL (the node restarted: its producers are piped
// again), or when a later probe is answered (a false alarm, e.g. a network
// partition that healed). Re-probes run with backoff (probeRetryMin to
// probeRetryMax) while the mark lasts.
//
// A link failure (ICE failed, a control request to the peer failing) also
// triggers a probe, so a peer whose control channel dies while no link is
// disconnected is caught too.

// Re-probe backoff of an unreachable node.
const (
	probeRetryMin = 2 * time.Second
	probeRetryMax = 10 * time.Second
)

// unreachableNode is a node whose control channel did not answer a probe.
type unreachableNode struct {
	rec   nodeRecord // the life of the node that was found unreachable
	since time.Time
}

// sameLife reports whether two records describe the same life of a node.
func sameLife(a, b nodeRecord) bool {
	return a.StartedAt.Equal(b.StartedAt) && a.URL == b.URL
}

// onLinkDisconnected is the pipe.Pipes' disconnected-link callback: probe the
// peer. Never blocks.
func (n *Node) onLinkDisconnected(peer string) { n.probe(peer, "link disconnected") }

// probe starts a probe goroutine for peer unless one runs already, the peer
// is already marked unreachable, or it is not (or no longer) in the
// directory. Never blocks.
func (n *Node) probe(peer, why string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != stateRunning || peer == n.cfg.NodeID || n.probing[peer] {
		return
	}
	if _, dead := n.unreachable[peer]; dead {
		return
	}
	rec, ok := n.nodes[peer]
	if !ok {
		return
	}
	n.probing[peer] = true
	n.wg.Add(1)
	go n.runProbe(peer, rec, why)
}

// runProbe pings peer once; when it does not answer, marks it unreachable,
// drops its pipes and re-probes with backoff until the mark ends. Owned by
// Node (wg); ends with Close.
func (n *Node) runProbe(peer string, rec nodeRecord, why string) {
	defer n.wg.Done()
	defer func() {
		n.mu.Lock()
		delete(n.probing, peer)
		n.mu.Unlock()
	}()
	err := n.pipes.Ping(n.ctx, peer)
	if n.ctx.Err() != nil {
		return
	}
	if err == nil {
		n.log.Debug("peer answered the liveness probe", "peer", peer, "why", why)
		return
	}
	since, ok := n.markUnreachable(peer, rec)
	if !ok {
		return // the record changed meanwhile: a new life, judged afresh
	}
	n.log.Warn("node unreachable: dropping its pipes until it answers again or its record changes",
		"peer", peer, "url", rec.URL, "why", why, "err", err)
	n.media.DropNode(peer)
	n.pokeRooms()

	b := backoff{min: probeRetryMin, max: probeRetryMax}
	for {
		if !sleepCtx(n.ctx, b.next()) {
			return
		}
		if !n.isUnreachable(peer, rec) {
			return // record gone or replaced: applyDirectory took over
		}
		if err := n.pipes.Ping(n.ctx, peer); err != nil {
			continue
		}
		if n.clearUnreachable(peer, rec) {
			n.log.Info("node answers again; piping its producers again", "peer", peer,
				"unreachableFor", time.Since(since).Round(time.Millisecond))
			n.pokeRooms()
		}
		return
	}
}

// markUnreachable marks peer unreachable if its current record is still
// rec's life; it returns when the mark was set.
func (n *Node) markUnreachable(peer string, rec nodeRecord) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cur, ok := n.nodes[peer]
	if n.state != stateRunning || !ok || !sameLife(cur, rec) {
		return time.Time{}, false
	}
	now := time.Now()
	n.unreachable[peer] = unreachableNode{rec: rec, since: now}
	return now, true
}

// isUnreachable reports whether peer is still marked unreachable for rec's
// life.
func (n *Node) isUnreachable(peer string, rec nodeRecord) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	u, ok := n.unreachable[peer]
	return ok && sameLife(u.rec, rec)
}

// clearUnreachable removes the mark of rec's life of peer; it reports
// whether there was one.
func (n *Node) clearUnreachable(peer string, rec nodeRecord) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	u, ok := n.unreachable[peer]
	if !ok || !sameLife(u.rec, rec) {
		return false
	}
	delete(n.unreachable, peer)
	return true
}

// pokeRooms asks every room watch to re-evaluate its pipes.
func (n *Node) pokeRooms() {
	n.mu.Lock()
	rooms := n.roomWatchesLocked()
	n.mu.Unlock()
	for _, w := range rooms {
		w.poke()
	}
}
