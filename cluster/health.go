package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// runHealth watches the health of every node's Consul service (one blocking
// query for the whole cluster) until ctx is done. A node whose HTTP check
// (its /healthz, run by the Consul agent every HealthCheckInterval) turns
// critical is probed (liveness.go) and, if it does not answer, marked
// unreachable and dropped by this node, within seconds of its death and
// whether or not this node shares a room or a link with it. A draining
// node's maintenance check does not count: only the confab check does.
// Owned by Node; started by Start.
func (n *Node) runHealth(ctx context.Context) {
	defer n.wg.Done()
	const activity = "health watch"
	defer n.health.forget(activity)
	b := backoff{min: 250 * time.Millisecond, max: n.cfg.MaxBackoff}
	var index uint64
	first, failed := true, false
	for ctx.Err() == nil {
		start := time.Now()
		qctx, cancel := context.WithTimeout(ctx, n.cfg.WatchWait+n.cfg.WatchWait/16+n.cfg.ConsulTimeout)
		stop := context.AfterFunc(n.watchRestart.current(), cancel)
		waitIndex := index
		if failed {
			waitIndex = 0
		}
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: n.cfg.WatchWait}).WithContext(qctx)
		entries, meta, err := n.reg.client.Health().Service(serviceName, "", false, q)
		restarted := !stop()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if restarted && err != nil {
			index, first, failed = 0, true, false
			continue
		}
		if err != nil || meta == nil {
			if err == nil {
				err = errNoMeta
			}
			n.health.fail(activity, err)
			failed = true
			if !sleepCtx(ctx, b.next()) {
				return
			}
			continue
		}
		failed = false
		n.health.ok(activity)
		b.reset()
		next, changed := nextIndex(index, meta.LastIndex, first)
		index, first = next, false
		if changed {
			for _, node := range criticalNodes(entries) {
				n.probe(node, "consul health check critical")
			}
		}
		if d := watchMinInterval - time.Since(start); d > 0 && changed {
			if !sleepCtx(ctx, d) {
				return
			}
		}
	}
}

// criticalNodes returns the nodes whose confab health check is critical.
func criticalNodes(entries []*api.ServiceEntry) []string {
	var out []string
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		node := e.Service.Meta["node"]
		if node == "" {
			continue
		}
		for _, c := range e.Checks {
			if c.CheckID == "service:"+serviceID(node) && c.Status == api.HealthCritical {
				out = append(out, node)
				break
			}
		}
	}
	return out
}
