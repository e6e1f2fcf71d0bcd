package cluster

import (
	"context"

	"github.com/hashicorp/consul/api"
)

// runHealth watches the health of every node's Consul service (one blocking
// query for the whole cluster) until ctx is done. A node whose HTTP check
// (its /healthz, run by the Consul agent every HealthCheckInterval) turns
// critical is probed (liveness.go) and, if it does not answer, marked
// unreachable and dropped by this node, within seconds of its death and
// whether or not this node shares a room or a link with it. A draining
// node's maintenance check does not count: only the confab check does.
// The query follows the same rules as the directory watch (watch.go).
// Owned by Node; started by Start.
func (n *Node) runHealth(ctx context.Context) {
	defer n.wg.Done()
	health := n.reg.client.Health()
	watchLoop(ctx, n.newPrefixWatch(""), "health watch", func(q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error) {
		return health.Service(serviceName, "", false, q)
	}, func(entries []*api.ServiceEntry) {
		for _, node := range criticalNodes(entries) {
			n.probe(node, "consul health check critical")
		}
	})
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
