package load

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// BroadcastReport is the per-node part of a broadcast run.
type BroadcastReport struct {
	// Nodes are A (the publisher's), then the peers in their order.
	Nodes []NodeReport `json:"nodes"`
	// StreamPackets are the stream's packets (video and audio) in the
	// window: the most any one viewer received plus lost; StreamPPS per
	// second.
	StreamPackets uint64  `json:"stream_packets"`
	StreamPPS     float64 `json:"stream_pkts_per_s"`
	// LinksAssumed is true when a peer's /metrics was missing, so that A's
	// link datagrams to it were taken as one copy of the stream.
	LinksAssumed bool `json:"links_assumed,omitempty"`
	// RemoteDelayMS is the delay at the viewers on the other nodes than A.
	RemoteDelayMS Quantiles `json:"remote_delay_ms"`
	// HopMS is what the hop adds: RemoteDelayMS minus node A's viewers'
	// delay, quantile by quantile; nil with one node or no samples.
	HopMS *HopDelay `json:"hop_ms,omitempty"`
}

// HopDelay is the delay the node-to-node hop adds, per quantile, in ms.
type HopDelay struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// NodeReport is one node of a broadcast.
type NodeReport struct {
	Name    string `json:"name"`
	Viewers int    `json:"viewers"`
	// Packets and Lost are those of its viewers in the window.
	Packets     uint64    `json:"packets"`
	Lost        uint64    `json:"lost"`
	LossPercent float64   `json:"loss_pct"`
	DelayMS     Quantiles `json:"delay_ms"`
	// ViewerDatagrams are the RTP datagrams the node sent its viewers
	// (Packets + Lost); LinkDatagrams those it sent over its links to the
	// other nodes (A only); Datagrams their sum.
	ViewerDatagrams uint64 `json:"viewer_datagrams"`
	LinkDatagrams   uint64 `json:"link_datagrams"`
	Datagrams       uint64 `json:"datagrams"`
	// CPUSeconds is the node's user+system CPU time in the window;
	// USPerDatagram is it per datagram of Datagrams.
	CPUMeasured   bool    `json:"cpu_measured"`
	CPUSeconds    float64 `json:"cpu_s"`
	USPerDatagram float64 `json:"us_per_datagram"`
	// Pulls is how many copies of the stream the node pulled over its
	// links: its remote RTP packets received per second ÷ the RTP packets
	// per second node A received from the publisher, each between its
	// node's two scrapes (÷ StreamPackets without A's metrics); 1.00:
	// pulled once. Zero for A and without the node's metrics.
	Pulls float64 `json:"pulls,omitempty"`
	// Metrics are the node's link figures from /metrics (nil: not scraped).
	Metrics *NodeMetrics `json:"metrics,omitempty"`
}

// NodeMetrics are a node's figures from its /metrics: counters as their
// growth over the window, gauges as read at its end.
type NodeMetrics struct {
	// PacketsSent is confab_rtp_packets_sent_total: RTP packets forwarded
	// to consumers, the link consumers included.
	PacketsSent uint64 `json:"rtp_packets_sent"`
	// RemotePacketsIn is confab_rtp_packets_received_total{origin=remote}:
	// RTP packets received over links.
	RemotePacketsIn uint64 `json:"remote_packets_in"`
	// LocalPacketsIn is confab_rtp_packets_received_total{origin=local}:
	// RTP packets received from the node's own publishers.
	LocalPacketsIn uint64 `json:"local_packets_in"`
	// RemoteProducers is confab_producers{origin=remote}.
	RemoteProducers int `json:"remote_producers"`
	// Links is confab_links; PipesIn and PipesOut sum confab_link_pipes by
	// direction over the links.
	Links    int `json:"links"`
	PipesIn  int `json:"pipes_in"`
	PipesOut int `json:"pipes_out"`
	// LinkBytesSent is confab_link_bytes_sent_total summed over the links;
	// LinkMbpsOut per second of window.
	LinkBytesSent uint64  `json:"link_bytes_sent"`
	LinkMbpsOut   float64 `json:"link_mbit_per_s_out"`
	// IntervalS is the time between the node's two scrapes.
	IntervalS float64 `json:"interval_s"`
}

// nodeNames joins the node names: "A+B+C".
func (b *BroadcastReport) nodeNames() string {
	names := make([]string, len(b.Nodes))
	for i, n := range b.Nodes {
		names[i] = n.Name
	}
	return strings.Join(names, "+")
}

// usCell is every node's CPU per own outgoing datagram: "A 5.10, B 4.90".
func (b *BroadcastReport) usCell() string {
	parts := make([]string, len(b.Nodes))
	for i, n := range b.Nodes {
		v := "-"
		if n.CPUMeasured && n.Datagrams > 0 {
			v = fmt.Sprintf("%.2f", n.USPerDatagram)
		}
		parts[i] = n.Name + " " + v
	}
	return strings.Join(parts, ", ")
}

// pullsCell is the pulls of the nodes other than A: "B 1.00, C 1.00";
// "-" with one node or without metrics.
func (b *BroadcastReport) pullsCell() string {
	var parts []string
	for _, n := range b.Nodes[min(1, len(b.Nodes)):] {
		if n.Metrics == nil {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", n.Name, n.Pulls))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// writeRows adds the broadcast's per-node rows to a run's text table.
func (b *BroadcastReport) writeRows(tw *tabwriter.Writer) {
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("stream", "%d packets in the window (%.0f pkts/s)", b.StreamPackets, b.StreamPPS)
	for _, n := range b.Nodes {
		cpu := "CPU not measured"
		if n.CPUMeasured {
			cpu = fmt.Sprintf("CPU %.2f s, %.2f µs/datagram", n.CPUSeconds, n.USPerDatagram)
		}
		row("node "+n.Name, "%d viewers; %d datagrams out (%d to viewers, %d over links); %s",
			n.Viewers, n.Datagrams, n.ViewerDatagrams, n.LinkDatagrams, cpu)
		row("", "loss %.3f %% (%d of %d); delay p50 %.2f, p95 %.2f, p99 %.2f ms",
			n.LossPercent, n.Lost, n.Lost+n.Packets, n.DelayMS.P50, n.DelayMS.P95, n.DelayMS.P99)
		if m := n.Metrics; m != nil {
			pulls := ""
			if n.Name != b.Nodes[0].Name {
				pulls = fmt.Sprintf(", pulls %.3f (remote packets in %d ÷ published into A)", n.Pulls, m.RemotePacketsIn)
			}
			row("", "metrics: RTP in %d local + %d remote, sent %d; links %d, pipes in %d / out %d, remote producers %d, link out %.2f Mbit/s%s",
				m.LocalPacketsIn, m.RemotePacketsIn, m.PacketsSent, m.Links, m.PipesIn, m.PipesOut, m.RemoteProducers, m.LinkMbpsOut, pulls)
		}
	}
	if b.LinksAssumed {
		row("link datagrams", "assumed one stream copy per node without metrics (no --metrics-url)")
	}
	if b.HopMS != nil {
		row("hop added delay", "p50 %+.2f, p95 %+.2f, p99 %+.2f ms (viewers on %s vs on %s)",
			b.HopMS.P50, b.HopMS.P95, b.HopMS.P99, strings.TrimPrefix(b.nodeNames(), b.Nodes[0].Name+"+"), b.Nodes[0].Name)
	}
}
