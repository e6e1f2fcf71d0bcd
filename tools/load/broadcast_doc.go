package load

import (
	"fmt"
	"math"
	"strings"
)

// Targets of the broadcast goals (issue 13).
const (
	goalBroadcastCost  = 1.2  // per-node µs per datagram ÷ the single node's
	goalHopDelayMS     = 2.0  // hop's added one-way delay, p95
	goalPullsTolerance = 0.02 // |pulls − 1| per pulling node
)

// KindBroadcast starts the kinds of broadcast runs: "broadcast-abc" for a
// broadcast over nodes A, B and C (tools/bench.sh names them so).
const KindBroadcast = "broadcast"

// broadcastRuns returns the unprofiled broadcast runs in document order.
func (d *BenchData) broadcastRuns() []BenchRun {
	var out []BenchRun
	for _, r := range d.Runs {
		if !r.Profiled && r.Report.Broadcast != nil && len(r.Report.Broadcast.Nodes) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// broadcastPair returns the single-node broadcast with the most viewers
// (the baseline) and the broadcast over the most nodes (the one the goals
// judge; of those, the one with the most viewers).
func (d *BenchData) broadcastPair() (single, multi *BenchRun) {
	for _, r := range d.broadcastRuns() {
		n := len(r.Report.Broadcast.Nodes)
		if n == 1 && (single == nil || r.size() > single.size()) {
			single = &r
		}
		if n > 1 && (multi == nil || n > len(multi.Report.Broadcast.Nodes) ||
			(n == len(multi.Report.Broadcast.Nodes) && r.size() > multi.size())) {
			multi = &r
		}
	}
	return single, multi
}

// singleUS is the single-node broadcast's µs per datagram; false when it
// was not measured.
func singleUS(single *BenchRun) (float64, bool) {
	if single == nil {
		return 0, false
	}
	n := single.Report.Broadcast.Nodes[0]
	return n.USPerDatagram, n.CPUMeasured && n.Datagrams > 0 && n.USPerDatagram > 0
}

// goalBroadcastCPU: every node of the widest broadcast within
// goalBroadcastCost of the single node's CPU per outgoing datagram.
func goalBroadcastCPU(single, multi *BenchRun) Goal {
	g := Goal{Name: "broadcast: per-node CPU per outgoing datagram ÷ single node's",
		Target: fmt.Sprintf("≤ %g on every node", goalBroadcastCost), Measured: notMeasured}
	base, ok := singleUS(single)
	if multi == nil || !ok {
		return g
	}
	b := multi.Report.Broadcast
	g.Name = fmt.Sprintf("broadcast N=%d on %s: per-node CPU per outgoing datagram ÷ on A alone (N=%d)",
		multi.size(), b.nodeNames(), single.size())
	worst := 0.0
	var parts []string
	for _, n := range b.Nodes {
		if !n.CPUMeasured || n.Datagrams == 0 {
			return g
		}
		ratio := n.USPerDatagram / base
		worst = math.Max(worst, ratio)
		parts = append(parts, fmt.Sprintf("%s %.2f", n.Name, ratio))
	}
	g.Measured = fmt.Sprintf("worst %.2f (%s; %.2f µs on A alone%s%s)", worst, strings.Join(parts, ", "), base,
		errNote(multi), errNote(single))
	g.Met = worst <= goalBroadcastCost
	return g
}

// goalHopDelay: what the node-to-node hop adds to the viewers' delay.
func goalHopDelay(multi *BenchRun) Goal {
	g := Goal{Name: "broadcast: delay the hop adds (viewers on other nodes − on A), p95",
		Target: fmt.Sprintf("≤ %g ms", goalHopDelayMS), Measured: notMeasured}
	if multi == nil || multi.Report.Broadcast.HopMS == nil {
		return g
	}
	b := multi.Report.Broadcast
	a := b.Nodes[0].DelayMS
	g.Name = fmt.Sprintf("broadcast N=%d on %s: delay the hop adds (viewers on B.. − on A), p95", multi.size(), b.nodeNames())
	g.Measured = fmt.Sprintf("p95 %+.2f ms (%.2f − %.2f), p50 %+.2f ms%s",
		b.HopMS.P95, b.RemoteDelayMS.P95, a.P95, b.HopMS.P50, errNote(multi))
	g.Met = b.HopMS.P95 <= goalHopDelayMS
	return g
}

// goalPulls: each pulling node receives the stream over its link once.
func goalPulls(multi *BenchRun) Goal {
	g := Goal{Name: "broadcast: each node pulls the stream once (remote packets in ÷ packets published into A)",
		Target: fmt.Sprintf("1 ± %g on every node but A", goalPullsTolerance), Measured: notMeasured}
	if multi == nil {
		return g
	}
	b := multi.Report.Broadcast
	var parts []string
	met := true
	for _, n := range b.Nodes[1:] {
		if n.Metrics == nil {
			return g
		}
		parts = append(parts, fmt.Sprintf("%s %.3f (%d viewers, %d pipes in)", n.Name, n.Pulls, n.Viewers, n.Metrics.PipesIn))
		met = met && math.Abs(n.Pulls-1) <= goalPullsTolerance
	}
	g.Name = fmt.Sprintf("broadcast N=%d on %s: each node pulls the stream once (remote packets in ÷ packets published into A)",
		multi.size(), b.nodeNames())
	g.Measured = strings.Join(parts, "; ") + errNote(multi)
	g.Met = met
	return g
}

// writeBroadcast writes the per-node table of the broadcast runs.
func writeBroadcast(b *strings.Builder, d *BenchData) {
	runs := d.broadcastRuns()
	if len(runs) == 0 {
		return
	}
	b.WriteString("### Broadcast across nodes\n\n")
	b.WriteString("One publisher (the clip, video and audio) on node A; the viewers spread evenly over the nodes. " +
		"A node's outgoing datagrams are the RTP datagrams it sent its own viewers (received + lost at them) " +
		"plus, for A, those it sent over the node-to-node links, measured as the RTP packets the other nodes " +
		"received from their links (confab_rtp_packets_received_total{origin=\"remote\"}, from /metrics at both " +
		"ends of the window; the links are loopback and lose nothing). µs/datagram is the node's CPU time over " +
		"them. Pulls is a node's RTP packets per second received over its links ÷ the packets per second A received " +
		"from the publisher, each over its node's two scrapes: 1.00 means the node pulled the stream once, however many viewers it has; " +
		"A's link datagrams in the window are the sum of the pulls × the stream's packets in the window. Every node runs on the same CPU (see *CPU pinning*).\n\n")
	single, _ := d.broadcastPair()
	base, haveBase := singleUS(single)
	b.WriteString(mdHeader([]string{"run", "node", "viewers", "datagrams/s out (viewers + links)", "CPU s",
		"µs/datagram", "÷ A alone", "loss %", "delay p50/p95/p99 ms", "pulls", "pipes in/out", "link Mbit/s out"}))
	for _, r := range runs {
		br := r.Report.Broadcast
		win := r.Report.DurationS
		for _, n := range br.Nodes {
			rate := "-"
			if win > 0 {
				rate = fmt.Sprintf("%.0f (%.0f + %.0f)", float64(n.Datagrams)/win,
					float64(n.ViewerDatagrams)/win, float64(n.LinkDatagrams)/win)
			}
			cpu, us, ratio := "-", "-", "-"
			if n.CPUMeasured {
				cpu = fmt.Sprintf("%.2f", n.CPUSeconds)
				if n.Datagrams > 0 {
					us = fmt.Sprintf("%.2f", n.USPerDatagram)
					if haveBase {
						ratio = fmt.Sprintf("%.2f", n.USPerDatagram/base)
					}
				}
			}
			pulls, pipes, link := "-", "-", "-"
			if m := n.Metrics; m != nil {
				if n.Name != br.Nodes[0].Name {
					pulls = fmt.Sprintf("%.3f", n.Pulls)
				}
				pipes = fmt.Sprintf("%d / %d", m.PipesIn, m.PipesOut)
				link = fmt.Sprintf("%.2f", m.LinkMbpsOut)
			}
			b.WriteString(mdRow([]string{r.Name, n.Name, fmt.Sprint(n.Viewers), rate, cpu, us, ratio,
				fmt.Sprintf("%.3f", n.LossPercent),
				fmt.Sprintf("%.1f / %.1f / %.1f", n.DelayMS.P50, n.DelayMS.P95, n.DelayMS.P99), pulls, pipes, link}))
		}
	}
	b.WriteString("\n")
	for _, r := range runs {
		br := r.Report.Broadcast
		line := fmt.Sprintf("- %s: stream %.0f pkts/s", r.Name, br.StreamPPS)
		if len(br.Nodes) > 1 {
			line += "; pulls " + br.pullsCell()
		}
		if br.HopMS != nil {
			line += fmt.Sprintf("; hop's added delay p50 %+.2f ms, p95 %+.2f ms (viewers on the other nodes: %.2f / %.2f ms; on A: %.2f / %.2f ms)",
				br.HopMS.P50, br.HopMS.P95, br.RemoteDelayMS.P50, br.RemoteDelayMS.P95, br.Nodes[0].DelayMS.P50, br.Nodes[0].DelayMS.P95)
		}
		if br.LinksAssumed {
			line += "; link datagrams assumed (a node's /metrics was missing)"
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\n")
}
