package app

import (
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/confab/confab/cluster"
	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

// This file wires confab's Prometheus metrics (docs/metrics.md lists them).
// Every node has its own registry (no global state). Gauges and counters are
// read from the engine and the membership when /metrics is scraped (custom
// collectors), so nothing on the media path knows about Prometheus; only the
// join latency histogram is fed as joins happen (web.Deps.ObserveJoin).
//
// Labels are bounded: media kind, origin (local/remote), direction, the
// reason of a refused signaling request (node/address) and the peer node id
// of a link (at most one link per node of the cluster). No
// metric is labelled by room, participant or producer.

// metricsNamespace prefixes every confab metric.
const metricsNamespace = "confab"

// Label values of the origin label: producers published on this node, or
// piped in from another node.
const (
	originLocal  = "local"
	originRemote = "remote"
)

// joinBuckets are the join latency histogram's buckets, in seconds.
var joinBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics is one node's registry and the instruments app feeds itself.
type metrics struct {
	reg  *prometheus.Registry
	join prometheus.Histogram
}

// newMetrics builds the registry of a node: Go runtime and process
// collectors, build info, the engine's and the membership's collectors and
// the join latency histogram.
func newMetrics(engine *sfu.Engine, membership cluster.Membership, version string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		join: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "join_duration_seconds",
			Help:      "Time from a signaling join request to the joined reply written to the WebSocket, for successful joins.",
			Buckets:   joinBuckets,
		}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   metricsNamespace,
		Name:        "build_info",
		Help:        "Always 1; the labels name the confab version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		build,
		m.join,
		newEngineCollector(engine),
		newClusterCollector(membership),
	)
	return m
}

// observeJoin records one join latency (web.Deps.ObserveJoin).
func (m *metrics) observeJoin(d time.Duration) { m.join.Observe(d.Seconds()) }

// handler serves the registry in the Prometheus exposition formats.
func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// startMetrics serves m at /metrics on its own listener at addr
// (--metrics-addr), apart from the public HTTP server. The returned stop
// function shuts it down and waits for its goroutine.
func startMetrics(addr string, m *metrics, log *slog.Logger) (stop func() error, err error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler(log))
	return startSideServer("metrics-addr", addr, mux, log)
}

// newDesc returns the Desc of a confab metric.
func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
}

// engineCollector exports sfu.Engine.Stats at scrape time.
type engineCollector struct {
	engine *sfu.Engine

	rooms, participants, producers, consumers                  *prometheus.Desc
	packetsIn, bytesIn, packetsOut, bytesOut                   *prometheus.Desc
	nacks, retransmissions, keyframeRequests, keyframesRequest *prometheus.Desc
	publishDropped, publishDroppedBytes, unhandledDatagrams    *prometheus.Desc
}

func newEngineCollector(engine *sfu.Engine) *engineCollector {
	return &engineCollector{
		engine:       engine,
		rooms:        newDesc("rooms", "Open rooms on this node."),
		participants: newDesc("participants", "Participants connected to this node."),
		producers:    newDesc("producers", "Open producers (published tracks): origin local were published on this node, remote are piped in from another node.", "origin"),
		consumers:    newDesc("consumers", "Open consumers: tracks sent to subscribers and over links to other nodes."),
		packetsIn:    newDesc("rtp_packets_received_total", "RTP packets received by producers (from publishers, or from links for origin remote).", "kind", "origin"),
		bytesIn:      newDesc("rtp_bytes_received_total", "RTP payload bytes received by producers.", "kind", "origin"),
		packetsOut:   newDesc("rtp_packets_sent_total", "RTP packets forwarded to consumers (one per consumer), by the producer's kind and origin; retransmissions not included.", "kind", "origin"),
		bytesOut:     newDesc("rtp_bytes_sent_total", "RTP payload bytes forwarded to consumers.", "kind", "origin"),
		nacks:        newDesc("nacks_received_total", "RTP sequence numbers NACKed by consumers."),
		retransmissions: newDesc("retransmissions_total",
			"RTP packets retransmitted from the producers' caches in answer to NACKs."),
		keyframeRequests: newDesc("keyframe_requests_received_total", "PLI and FIR packets received from consumers."),
		keyframesRequest: newDesc("keyframe_requests_sent_total",
			"Keyframe requests passed on to the sources (publishers or the origin node), after rate limiting."),
		publishDropped: newDesc("publish_dropped_packets_total",
			"RTP packets local publishers sent beyond the publish bitrate cap (--max-publish-bitrate), dropped."),
		publishDroppedBytes: newDesc("publish_dropped_bytes_total", "Bytes (RTP headers included) of those dropped packets."),
		unhandledDatagrams: newDesc("udp_unhandled_datagrams_total",
			"Datagrams on the media UDP port that belong to no session (scans, garbage, stale peers), dropped."),
	}
}

// Describe implements prometheus.Collector.
func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rooms, c.participants, c.producers, c.consumers,
		c.packetsIn, c.bytesIn, c.packetsOut, c.bytesOut,
		c.nacks, c.retransmissions, c.keyframeRequests, c.keyframesRequest,
		c.publishDropped, c.publishDroppedBytes, c.unhandledDatagrams} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.engine.Stats()
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.rooms, st.Rooms)
	gauge(c.participants, st.Participants)
	gauge(c.producers, st.LocalProducers, originLocal)
	gauge(c.producers, st.RemoteProducers, originRemote)
	gauge(c.consumers, st.Consumers)
	for _, t := range st.Traffic {
		origin := originLocal
		if t.Remote {
			origin = originRemote
		}
		kind := string(t.Kind)
		counter(c.packetsIn, t.PacketsIn, kind, origin)
		counter(c.bytesIn, t.BytesIn, kind, origin)
		counter(c.packetsOut, t.PacketsOut, kind, origin)
		counter(c.bytesOut, t.BytesOut, kind, origin)
	}
	counter(c.nacks, st.NACKs)
	counter(c.retransmissions, st.Retransmissions)
	counter(c.keyframeRequests, st.KeyframeRequests)
	counter(c.keyframesRequest, st.KeyframesRequested)
	counter(c.publishDropped, st.PublishDropped)
	counter(c.publishDroppedBytes, st.PublishDroppedBytes)
	counter(c.unhandledDatagrams, st.UnhandledDatagrams)
}

// linkStatser is implemented by memberships with links to other nodes
// (*cluster.Node).
type linkStatser interface {
	LinkStats() []pipe.LinkStats
}

// consulStatser is implemented by memberships backed by Consul
// (*cluster.Node).
type consulStatser interface {
	ConsulStats() cluster.ConsulStats
}

// clusterCollector exports the links and Consul figures of a membership at
// scrape time; a single-node membership has neither and exports nothing.
type clusterCollector struct {
	links  linkStatser   // nil when the membership has no links
	consul consulStatser // nil when it has no Consul

	linkCount, linkUp, linkPipes, linkBytesSent, linkBytesReceived *prometheus.Desc
	linkLost, linkLoss, linkRTT                                    *prometheus.Desc
	consulRequests, consulErrors, consulOpen, consulMaxOpen        *prometheus.Desc
	consulSyncLatency                                              *prometheus.Desc
}

func newClusterCollector(membership cluster.Membership) *clusterCollector {
	c := &clusterCollector{
		linkCount:         newDesc("links", "Open links (PeerConnections) to other nodes."),
		linkUp:            newDesc("link_up", "1 while the link to the peer node is connected, else 0.", "peer"),
		linkPipes:         newDesc("link_pipes", "Producers piped over the link: direction in are pulled from the peer, out are sent to it.", "peer", "direction"),
		linkBytesSent:     newDesc("link_bytes_sent_total", "Bytes sent on the link's transport since the link was set up (rate*8 is its bitrate out).", "peer"),
		linkBytesReceived: newDesc("link_bytes_received_total", "Bytes received on the link's transport since the link was set up (rate*8 is its bitrate in).", "peer"),
		linkLost:          newDesc("link_packets_lost", "RTP packets lost on the link's open inbound streams (from sequence number gaps).", "peer"),
		linkLoss:          newDesc("link_loss_ratio", "Lost / (lost + received) RTP packets on the link's open inbound streams; 0 when none.", "peer"),
		linkRTT:           newDesc("link_rtt_seconds", "Round-trip time of the link's selected ICE candidate pair (STUN); absent while unknown.", "peer"),
		consulRequests:    newDesc("consul_requests_total", "HTTP requests sent to Consul."),
		consulErrors:      newDesc("consul_errors_total", "Consul requests that failed (transport error, 5xx or 429)."),
		consulOpen:        newDesc("consul_open_connections", "TCP connections to Consul now open."),
		consulMaxOpen:     newDesc("consul_max_open_connections", "Highest number of TCP connections to Consul open at once."),
		consulSyncLatency: newDesc("cluster_sync_latency_seconds",
			"Time the last room change made on another node took to reach this node (pushed over the control channel; Consul is not on that path)."),
	}
	c.links, _ = membership.(linkStatser)
	c.consul, _ = membership.(consulStatser)
	return c
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.linkCount, c.linkUp, c.linkPipes, c.linkBytesSent, c.linkBytesReceived,
		c.linkLost, c.linkLoss, c.linkRTT,
		c.consulRequests, c.consulErrors, c.consulOpen, c.consulMaxOpen, c.consulSyncLatency} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	if c.links != nil {
		links := c.links.LinkStats()
		metric(c.linkCount, prometheus.GaugeValue, float64(len(links)))
		for _, l := range links {
			up := 0.0
			if l.Connected {
				up = 1
			}
			metric(c.linkUp, prometheus.GaugeValue, up, l.PeerNode)
			metric(c.linkPipes, prometheus.GaugeValue, float64(l.PipesIn), l.PeerNode, pipe.DirectionIn)
			metric(c.linkPipes, prometheus.GaugeValue, float64(l.PipesOut), l.PeerNode, pipe.DirectionOut)
			metric(c.linkBytesSent, prometheus.CounterValue, float64(l.BytesSent), l.PeerNode)
			metric(c.linkBytesReceived, prometheus.CounterValue, float64(l.BytesReceived), l.PeerNode)
			metric(c.linkLost, prometheus.GaugeValue, float64(l.PacketsLost), l.PeerNode)
			metric(c.linkLoss, prometheus.GaugeValue, lossRatio(l.PacketsLost, l.PacketsReceived), l.PeerNode)
			if l.RTT > 0 {
				metric(c.linkRTT, prometheus.GaugeValue, l.RTT.Seconds(), l.PeerNode)
			}
		}
	}
	if c.consul != nil {
		s := c.consul.ConsulStats()
		metric(c.consulRequests, prometheus.CounterValue, float64(s.Requests))
		metric(c.consulErrors, prometheus.CounterValue, float64(s.Errors))
		metric(c.consulOpen, prometheus.GaugeValue, float64(s.OpenConns))
		metric(c.consulMaxOpen, prometheus.GaugeValue, float64(s.MaxOpenConns))
		metric(c.consulSyncLatency, prometheus.GaugeValue, s.SyncLatency.Seconds())
	}
}

// lossRatio is lost / (lost + received), 0 when both are zero or negative
// (RTCP loss counts can go below zero with duplicates).
func lossRatio(lost, received int64) float64 {
	if lost <= 0 || received < 0 {
		return 0
	}
	return float64(lost) / float64(lost+received)
}

// admissionCollector exports web.Server.AdmissionStats at scrape time.
type admissionCollector struct {
	stats                      func() web.AdmissionStats
	open, refused, joinTimeout *prometheus.Desc
}

// Values of the reason label of confab_signaling_refused_total.
const (
	refusedNode = "node"
	refusedAddr = "address"
)

func newAdmissionCollector(stats func() web.AdmissionStats) *admissionCollector {
	return &admissionCollector{
		stats: stats,
		open:  newDesc("signaling_connections", "Signaling WebSocket connections holding an admission slot."),
		refused: newDesc("signaling_refused_total",
			"Signaling WebSocket requests refused before the upgrade: reason node (--max-conns reached, 503) or address (--max-conns-per-ip reached, 429).", "reason"),
		joinTimeout: newDesc("signaling_join_timeouts_total", "Signaling connections closed because they did not join within --join-timeout."),
	}
}

// Describe implements prometheus.Collector.
func (c *admissionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.refused
	ch <- c.joinTimeout
}

// Collect implements prometheus.Collector.
func (c *admissionCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedNode), refusedNode)
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.RefusedAddr), refusedAddr)
	ch <- prometheus.MustNewConstMetric(c.joinTimeout, prometheus.CounterValue, float64(st.JoinTimeouts))
}
