package cluster

import (
	"time"
)

// Resync after Consul lost its data.
//
// When the Consul agent restarts without its data (a dev agent, a lost
// data directory, a snapshot restore), every record of every node is gone
// at once, and the nodes re-register one after the other within seconds
// (each notices when its session renewal or a write is refused). A node
// that took the first, nearly empty, results of its watches literally would
// drop every peer and every piped producer, then pipe them all again a
// moment later: needless churn, and a visible glitch for every remote
// participant.
//
// So when the node sees evidence that Consul lost data — a watch index
// that went backwards, its own session unknown to Consul, or its own node
// or room record vanished while it holds it — it starts a grace period of
// 2×SessionTTL. When it starts, every watch restarts its blocking query
// from index 0 at once (a query waiting on an index of the old store would
// block until the new store's index caught up or the wait ran out) and the
// session is checked at once. During the grace period absences are not
// trusted: nodes missing from the directory are kept, and piped producers
// missing from a room's records stay piped (records that appear are acted
// upon at once, so new producers are piped as usual). When the grace period
// ends the directory and every room are evaluated again against what Consul
// holds then, and whatever is still missing is dropped. Dead nodes are
// still noticed during the grace period through their links (liveness.go).

// resyncGrace is how long absences are not trusted after Consul lost data.
func (n *Node) resyncGrace() time.Duration { return 2 * n.cfg.SessionTTL }

// startResync starts (or extends) the grace period. Never blocks.
func (n *Node) startResync(why string) {
	n.mu.Lock()
	first := n.extendResyncLocked(time.Now())
	n.mu.Unlock()
	n.resyncStarted(why, first)
}

// extendResyncLocked starts or extends the grace period and reports whether
// none was running. Caller holds n.mu and calls resyncStarted after
// unlocking.
func (n *Node) extendResyncLocked(now time.Time) (first bool) {
	first = !now.Before(n.resyncUntil)
	if until := now.Add(n.resyncGrace()); until.After(n.resyncUntil) {
		n.resyncUntil = until
	}
	return first
}

// resyncStarted logs the start of a grace period (once) and has the
// directory goroutine schedule its end.
func (n *Node) resyncStarted(why string, first bool) {
	if first {
		n.log.Warn("consul lost data: keeping peers and piped producers while every node re-registers",
			"why", why, "grace", n.resyncGrace())
		n.watchRestart.fire() // blocking queries with old indexes would hang
		n.nudgeSession()      // is our session gone too? find out now
	}
	select {
	case n.resyncCh <- struct{}{}:
	default:
	}
}

// inResync reports whether the grace period is running at now.
func (n *Node) inResync(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return now.Before(n.resyncUntil)
}

// resyncDeadline returns the end of the current (or last) grace period.
func (n *Node) resyncDeadline() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.resyncUntil
}
