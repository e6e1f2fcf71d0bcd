package cluster

import "time"

// ConsulStats are counters of a node's traffic with Consul, for metrics.
type ConsulStats struct {
	// Requests is the number of HTTP requests sent to Consul.
	Requests uint64
	// Errors is the number of those that failed (transport error or a
	// 5xx/429 answer).
	Errors uint64
	// OpenConns is the number of TCP connections to Consul now open.
	OpenConns int64
	// MaxOpenConns is the highest OpenConns seen.
	MaxOpenConns int64
	// WatchLatency is the time from a change being written to Consul to
	// this node seeing it, for the last observed change (0 if none).
	WatchLatency time.Duration
}

// ConsulStats returns the node's Consul counters.
func (n *Node) ConsulStats() ConsulStats { return ConsulStats{} }
