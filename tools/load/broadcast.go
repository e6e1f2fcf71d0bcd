package load

import (
	"context"
	"fmt"
	"math"
)

// broadcast: one publisher on node A, then Subscribers viewers spread
// evenly over the nodes (viewer i on node i mod nodes, so the joins
// alternate between them). With one node it is fanout, reported per node.
func (r *runner) broadcast(ctx context.Context) error {
	var all []*Client
	defer func() { r.closeAll(all) }()
	pub := r.join(ctx, r.cfg.URL, "publisher")
	if pub == nil {
		return r.fatal(ctx, "the publisher could not join node A")
	}
	all = append(all, pub)
	if err := pub.Publish(ctx, r.media); err != nil {
		return err
	}
	viewers, nodeOf := r.joinSpread(ctx, "viewer", r.cfg.Subscribers)
	all = append(all, viewers...)
	if err := r.settle(ctx, viewers); err != nil {
		return err
	}
	err := r.measure(ctx)
	r.closeAll(all)
	r.finish(result{receivers: viewers, joiners: viewers, publishers: []*Client{pub}})
	r.finishBroadcast(viewers, nodeOf)
	return err
}

// nodeURLs are the base URLs of the run's nodes: A, then the peers.
func (r *runner) nodeURLs() []string {
	return append([]string{r.cfg.URL}, r.cfg.URLPeers...)
}

// joinSpread joins n viewers named prefix-0001... at the join rate, the
// i-th on node i mod nodes; it returns them and each one's node index.
func (r *runner) joinSpread(ctx context.Context, prefix string, n int) ([]*Client, []int) {
	urls := r.nodeURLs()
	p := newPacer(r.cfg.JoinRate)
	clients := make([]*Client, 0, n)
	nodeOf := make([]int, 0, n)
	for i := range n {
		if p.wait(ctx, i) != nil {
			break
		}
		node := i % len(urls)
		c := r.join(ctx, urls[node], fmt.Sprintf("%s-%s-%04d", prefix, nodeName(node), i+1))
		if c == nil {
			continue
		}
		clients = append(clients, c)
		nodeOf = append(nodeOf, node)
	}
	return clients, nodeOf
}

// viewerTotals are the counts of one node's viewers.
type viewerTotals struct {
	viewers       int
	packets, lost uint64
	delay         Histogram
}

// finishBroadcast adds the per-node figures to the report (after finish):
// each node's viewers, loss and delay, its own outgoing datagrams and CPU
// per datagram, the link figures from its /metrics, and the hop's added
// delay (viewers on the other nodes against those on A).
func (r *runner) finishBroadcast(viewers []*Client, nodeOf []int) {
	per := make([]viewerTotals, len(r.servers))
	var remote Histogram
	var stream uint64
	for i, c := range viewers {
		v := &per[nodeOf[i]]
		v.viewers++
		var out uint64
		for _, t := range c.tracks {
			v.packets += t.seq.received
			v.lost += t.seq.lost()
			out += t.seq.received + t.seq.lost()
			v.delay.Merge(&t.delay)
			if nodeOf[i] > 0 {
				remote.Merge(&t.delay)
			}
		}
		stream = max(stream, out)
	}
	b := &BroadcastReport{StreamPackets: stream}
	window := r.env.Window.Length().Seconds()
	if window > 0 {
		b.StreamPPS = float64(stream) / window
	}
	for i, s := range r.servers {
		b.Nodes = append(b.Nodes, nodeReport(s, &per[i], window))
	}
	b.countLinks()
	if len(per) > 1 && per[0].delay.Count() > 0 && remote.Count() > 0 {
		a := histQuantiles(&per[0].delay)
		rem := histQuantiles(&remote)
		b.RemoteDelayMS = rem
		b.HopMS = &HopDelay{P50: rem.P50 - a.P50, P95: rem.P95 - a.P95, P99: rem.P99 - a.P99}
	}
	r.rep.Broadcast = b

	// RSS growth per viewer over every node (finish divides A's by all).
	var grown int64
	measured := true
	for _, s := range r.servers {
		measured = measured && s.err == nil
		grown += s.rssJoined - s.rssBefore
	}
	if measured && len(viewers) > 0 {
		r.rep.RSSPerSubscriberKiB = float64(grown) / 1024 / float64(len(viewers))
	}
}

// nodeReport is one node's part of a broadcast report, its own outgoing
// datagrams not yet counted (countLinks does that).
func nodeReport(s *server, v *viewerTotals, window float64) NodeReport {
	n := NodeReport{Name: s.name, Viewers: v.viewers, Packets: v.packets, Lost: v.lost,
		DelayMS: histQuantiles(&v.delay), ViewerDatagrams: v.packets + v.lost}
	if total := v.packets + v.lost; total > 0 {
		n.LossPercent = 100 * float64(v.lost) / float64(total)
	}
	if s.err == nil {
		n.CPUMeasured = true
		n.CPUSeconds = (s.cpuEnd - s.cpuStart).Seconds()
	}
	if s.metStart != nil && s.metEnd != nil {
		n.Metrics = linkMetrics(s.metStart.set, s.metEnd.set, window)
		n.Metrics.IntervalS = s.metEnd.at.Sub(s.metStart.at).Seconds()
	}
	return n
}

// linkMetrics reads the link figures of a node from its scrapes at both
// ends of the window.
func linkMetrics(start, end metricSet, window float64) *NodeMetrics {
	delta := func(name string, match map[string]string) float64 {
		a, _ := start.sum(name, match)
		b, _ := end.sum(name, match)
		return b - a
	}
	gauge := func(name string, match map[string]string) float64 {
		v, _ := end.sum(name, match)
		return v
	}
	m := &NodeMetrics{
		PacketsSent:     uint64(delta(metricPacketsSent, nil)),
		RemotePacketsIn: uint64(delta(metricPacketsReceived, map[string]string{"origin": "remote"})),
		LocalPacketsIn:  uint64(delta(metricPacketsReceived, map[string]string{"origin": "local"})),
		RemoteProducers: int(gauge(metricProducers, map[string]string{"origin": "remote"})),
		Links:           int(gauge(metricLinks, nil)),
		PipesIn:         int(gauge(metricLinkPipes, map[string]string{"direction": "in"})),
		PipesOut:        int(gauge(metricLinkPipes, map[string]string{"direction": "out"})),
		LinkBytesSent:   uint64(delta(metricLinkBytesSent, nil)),
	}
	if window > 0 {
		m.LinkMbpsOut = float64(m.LinkBytesSent) * 8 / 1e6 / window
	}
	return m
}

// countLinks counts each node's outgoing datagrams: its viewers' packets
// (received + lost), and for node A also the datagrams it sent over the
// links to the other nodes. Those are measured by the other nodes' RTP
// packets received from links (confab_rtp_packets_received_total{origin=
// "remote"}; loopback links lose none), as a node's pulls: its remote
// packets in per second ÷ the packets per second A received from the
// publisher (origin="local" at A), each over its node's own two scrapes;
// 1.00 is one copy of the stream. A's link datagrams in the window are the
// sum of the pulls times the stream's packets in the window. Without A's
// metrics, pulls are taken against the stream's packets in the window;
// without a node's, one pull is assumed (LinksAssumed). Then CPU per
// datagram.
func (b *BroadcastReport) countLinks() {
	if len(b.Nodes) == 0 {
		return
	}
	// Rates over each node's own scrape interval: the scrapes of the nodes
	// are a request apart, which a slow answer on a busy node stretches.
	rate := func(count uint64, m *NodeMetrics) float64 {
		if m.IntervalS > 0 {
			return float64(count) / m.IntervalS
		}
		return float64(count)
	}
	var published float64
	if m := b.Nodes[0].Metrics; m != nil && m.LocalPacketsIn > 0 {
		published = rate(m.LocalPacketsIn, m)
	}
	var link float64
	b.LinksAssumed = false
	for i := range b.Nodes[1:] {
		n := &b.Nodes[i+1]
		if n.Metrics == nil {
			b.LinksAssumed = true
			link++
			continue
		}
		switch {
		case published > 0:
			n.Pulls = rate(n.Metrics.RemotePacketsIn, n.Metrics) / published
		case b.StreamPackets > 0:
			n.Pulls = float64(n.Metrics.RemotePacketsIn) / float64(b.StreamPackets)
		}
		link += n.Pulls
	}
	b.Nodes[0].LinkDatagrams = uint64(math.Round(link * float64(b.StreamPackets)))
	for i := range b.Nodes {
		n := &b.Nodes[i]
		n.Datagrams = n.ViewerDatagrams + n.LinkDatagrams
		if n.CPUMeasured && n.Datagrams > 0 {
			n.USPerDatagram = n.CPUSeconds * 1e6 / float64(n.Datagrams)
		}
	}
}
