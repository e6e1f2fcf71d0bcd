package cluster

import (
	"context"
	"encoding/json"
	"math"
	"time"
)

// nodeLoad is what the node record says of the node's load.
type nodeLoad struct {
	participants int     // local participants
	tracks       int     // local producers
	cpu          float64 // share of the machine's CPU used by the process, in steps of cpuStep
}

// cpuStep quantises the CPU share in the node record, so that the record is
// not rewritten for noise.
const cpuStep = 0.05

// refreshRecord recounts the local load and rewrites the node record when
// force is set, the participants or tracks changed, the CPU share moved by
// cpuRewrite or more, or it was never written. It returns the record's
// value.
func (n *Node) refreshRecord(force bool) []byte {
	participants, tracks := n.engine.Load()
	cpu := n.cpu.share()
	_, written := n.kv.get(nodeKey(n.cfg.NodeID))
	n.mu.Lock()
	old := n.load
	now := time.Now()
	cpuMoved := math.Abs(cpu-old.cpu) >= cpuRewrite && now.Sub(n.loadCPUAt) >= cpuRewriteInterval
	changed := force || !written || participants != old.participants || tracks != old.tracks || cpuMoved
	if changed {
		n.load = nodeLoad{participants: participants, tracks: tracks, cpu: cpu}
		n.loadCPUAt = now
	}
	rec := n.selfRecordLocked()
	n.mu.Unlock()
	b, err := json.Marshal(rec)
	if err != nil {
		n.log.Error("cluster: encode node record", "err", err)
		return nil
	}
	if changed {
		n.kv.set(nodeKey(n.cfg.NodeID), b)
	}
	return b
}

// cpuRewrite is the change of the CPU share that rewrites the node record
// on its own: every rewrite wakes every node's directory watch, so noise
// must not cause one.
const cpuRewrite = 0.10

// cpuRewriteInterval is the least time between two rewrites for the CPU
// share alone.
const cpuRewriteInterval = 10 * time.Second

// runLoad rewrites the node record when the load changed, at most once per
// LoadInterval, so that placement on other nodes sees it within about that
// time. Owned by Node; started by Start.
func (n *Node) runLoad(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.refreshRecord(false)
		}
	}
}
