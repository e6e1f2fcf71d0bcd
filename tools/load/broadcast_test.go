package load

import (
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/confab/confab/app"
)

// exposition is a node's /metrics in the Prometheus text format, as the
// Go client writes it (HELP and TYPE comments, labels, exponents).
const exposition = `# HELP confab_rtp_packets_sent_total RTP packets forwarded.
# TYPE confab_rtp_packets_sent_total counter
confab_rtp_packets_sent_total{kind="audio",origin="local"} 1000
confab_rtp_packets_sent_total{kind="video",origin="local"} 4000
confab_rtp_packets_received_total{kind="audio",origin="remote"} 50
confab_rtp_packets_received_total{kind="video",origin="remote"} 200
confab_rtp_packets_received_total{kind="video",origin="local"} 7
confab_producers{origin="remote"} 2
confab_link_pipes{direction="in",peer="node-a"} 2
confab_link_pipes{direction="out",peer="node-a"} 0
confab_link_bytes_sent_total{peer="node-a"} 1.5e+06
confab_links 1
confab_build_info{goversion="go1.26",version="a\"b\\c"} 1

process_cpu_seconds_total 3.25
`

func TestParseMetrics(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("parseMetrics: %v", err)
	}
	tests := []struct {
		name  string
		match map[string]string
		want  float64
		found bool
	}{
		{metricPacketsSent, nil, 5000, true},
		{metricPacketsSent, map[string]string{"kind": "video"}, 4000, true},
		{metricPacketsReceived, map[string]string{"origin": "remote"}, 250, true},
		{metricProducers, map[string]string{"origin": "local"}, 0, false},
		{metricLinkPipes, map[string]string{"direction": "in"}, 2, true},
		{metricLinkBytesSent, nil, 1.5e6, true},
		{metricLinks, nil, 1, true},
		{"confab_build_info", map[string]string{"version": `a"b\c`}, 1, true},
		{"process_cpu_seconds_total", nil, 3.25, true},
		{"confab_missing", nil, 0, false},
	}
	for _, tt := range tests {
		got, found := m.sum(tt.name, tt.match)
		if got != tt.want || found != tt.found {
			t.Errorf("sum(%s, %v) = %v, %v; want %v, %v", tt.name, tt.match, got, found, tt.want, tt.found)
		}
	}
}

func TestParseMetricsErrors(t *testing.T) {
	for _, text := range []string{
		"confab_links\n",
		"confab_links{peer=\"a\" 1\n",
		"confab_links{peer=a} 1\n",
		"confab_links{peer=\"a} 1\n",
		"confab_links one\n",
	} {
		if _, err := parseMetrics(strings.NewReader(text)); err == nil {
			t.Errorf("parseMetrics(%q) succeeded", text)
		}
	}
}

func TestLinkMetrics(t *testing.T) {
	start, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	end, err := parseMetrics(strings.NewReader(strings.NewReplacer(
		"} 4000", "} 9000", "} 200", "} 1200", "} 7\n", "} 507\n", "} 1.5e+06", "} 4e+06").Replace(exposition)))
	if err != nil {
		t.Fatal(err)
	}
	got := linkMetrics(start, end, 2)
	want := NodeMetrics{PacketsSent: 5000, RemotePacketsIn: 1000, LocalPacketsIn: 500, RemoteProducers: 2, Links: 1, PipesIn: 2,
		LinkBytesSent: 2500000, LinkMbpsOut: 10}
	if *got != want {
		t.Errorf("linkMetrics = %+v, want %+v", *got, want)
	}
}

func TestCountLinks(t *testing.T) {
	withMetrics := func(remoteIn uint64) *NodeMetrics { return &NodeMetrics{RemotePacketsIn: remoteIn} }
	tests := []struct {
		name     string
		nodes    []NodeReport
		stream   uint64
		assumed  bool
		linkA    uint64
		us       []float64
		pulls    []float64
		datagram []uint64
	}{
		{
			name:     "one node",
			nodes:    []NodeReport{{Name: "A", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.005}},
			stream:   10,
			linkA:    0,
			us:       []float64{5},
			pulls:    []float64{0},
			datagram: []uint64{1000},
		},
		{
			name: "three nodes, pulled once each",
			nodes: []NodeReport{
				{Name: "A", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.0051},
				{Name: "B", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.004, Metrics: withMetrics(10)},
				{Name: "C", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.006, Metrics: withMetrics(10)},
			},
			stream:   10,
			linkA:    20,
			us:       []float64{5, 4, 6},
			pulls:    []float64{0, 1, 1},
			datagram: []uint64{1020, 1000, 1000},
		},
		{
			name: "a node pulled twice",
			nodes: []NodeReport{
				{Name: "A", ViewerDatagrams: 970, CPUMeasured: true, CPUSeconds: 0.001},
				{Name: "B", ViewerDatagrams: 1000, Metrics: withMetrics(20)},
				{Name: "C", ViewerDatagrams: 1000, Metrics: withMetrics(10)},
			},
			stream:   10,
			linkA:    30,
			us:       []float64{1, 0, 0},
			pulls:    []float64{0, 2, 1},
			datagram: []uint64{1000, 1000, 1000},
		},
		{
			name: "pulls against the packets published into A",
			nodes: []NodeReport{
				{Name: "A", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.00102, Metrics: &NodeMetrics{LocalPacketsIn: 12}},
				{Name: "B", ViewerDatagrams: 1000, Metrics: withMetrics(12)},
				{Name: "C", ViewerDatagrams: 1000, Metrics: withMetrics(6)},
			},
			stream:   20,
			linkA:    30,
			us:       []float64{1.02 / 1.03, 0, 0},
			pulls:    []float64{0, 1, 0.5},
			datagram: []uint64{1030, 1000, 1000},
		},
		{
			name: "pulls as rates over each node's scrape interval",
			nodes: []NodeReport{
				{Name: "A", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.00102, Metrics: &NodeMetrics{LocalPacketsIn: 10, IntervalS: 2}},
				{Name: "B", ViewerDatagrams: 1000, Metrics: &NodeMetrics{RemotePacketsIn: 9, IntervalS: 1.8}},
			},
			stream:   20,
			linkA:    20,
			us:       []float64{1, 0},
			pulls:    []float64{0, 1},
			datagram: []uint64{1020, 1000},
		},
		{
			name: "a peer without metrics: assumed one copy",
			nodes: []NodeReport{
				{Name: "A", ViewerDatagrams: 1000, CPUMeasured: true, CPUSeconds: 0.00102},
				{Name: "B", ViewerDatagrams: 1000},
			},
			stream:   20,
			assumed:  true,
			linkA:    20,
			us:       []float64{1, 0},
			pulls:    []float64{0, 0},
			datagram: []uint64{1020, 1000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &BroadcastReport{Nodes: tt.nodes, StreamPackets: tt.stream}
			b.countLinks()
			if b.LinksAssumed != tt.assumed || b.Nodes[0].LinkDatagrams != tt.linkA {
				t.Errorf("assumed %v, A's link datagrams %d; want %v, %d", b.LinksAssumed, b.Nodes[0].LinkDatagrams, tt.assumed, tt.linkA)
			}
			for i, n := range b.Nodes {
				if math.Abs(n.USPerDatagram-tt.us[i]) > 1e-9 || n.Pulls != tt.pulls[i] || n.Datagrams != tt.datagram[i] {
					t.Errorf("node %s: %.3f µs/datagram, pulls %v, %d datagrams; want %.3f, %v, %d",
						n.Name, n.USPerDatagram, n.Pulls, n.Datagrams, tt.us[i], tt.pulls[i], tt.datagram[i])
				}
			}
		})
	}
}

func TestBroadcastCells(t *testing.T) {
	b := &BroadcastReport{Nodes: []NodeReport{
		{Name: "A", CPUMeasured: true, Datagrams: 10, USPerDatagram: 5.123},
		{Name: "B", CPUMeasured: true, Datagrams: 10, USPerDatagram: 4.5, Pulls: 1, Metrics: &NodeMetrics{}},
		{Name: "C", Datagrams: 10, Pulls: 1.01, Metrics: &NodeMetrics{}},
	}}
	tests := []struct {
		name, got, want string
	}{
		{"names", b.nodeNames(), "A+B+C"},
		{"µs", b.usCell(), "A 5.12, B 4.50, C -"},
		{"pulls", b.pullsCell(), "B 1.00, C 1.01"},
		{"one node pulls", (&BroadcastReport{Nodes: []NodeReport{{Name: "A"}}}).pullsCell(), "-"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestRunBroadcast runs the broadcast scenario against a real node that
// serves /metrics, named twice (as nodes A and B: the same process), so
// that the viewers are spread, counted and reported per node and the
// metrics are scraped; no link exists, so B pulls nothing.
func TestRunBroadcast(t *testing.T) {
	metrics := "127.0.0.1:" + strconv.Itoa(freePort(t))
	url := startNodeWith(t, func(c *app.Config) { c.MetricsAddr = metrics })
	cfg := testConfig(url, ScenarioBroadcast)
	cfg.Subscribers = 4
	cfg.URLPeers = []string{url}
	cfg.ServerPIDPeers = []int{os.Getpid()}
	cfg.MetricsURLs = []string{"http://" + metrics + "/metrics", "http://" + metrics + "/metrics"}
	rep, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatalf("WriteTable: %v", err)
	}
	t.Logf("report:\n%s", table.String())
	if rep.ErrorCount != 0 {
		t.Errorf("errors: %d %v", rep.ErrorCount, rep.Errors)
	}
	b := rep.Broadcast
	if b == nil || len(b.Nodes) != 2 {
		t.Fatalf("broadcast report %+v, want two nodes", b)
	}
	if b.StreamPackets == 0 || b.LinksAssumed || b.HopMS == nil {
		t.Errorf("stream %d packets, links assumed %v, hop %+v", b.StreamPackets, b.LinksAssumed, b.HopMS)
	}
	var viewerPackets uint64
	for i, n := range b.Nodes {
		if n.Name != nodeName(i) || n.Viewers != 2 || n.Packets == 0 || n.DelayMS.N == 0 {
			t.Errorf("node %d: %+v, want %s with 2 viewers and packets", i, n, nodeName(i))
		}
		if !n.CPUMeasured || n.USPerDatagram <= 0 || n.Metrics == nil || n.Metrics.PacketsSent == 0 || n.Metrics.LocalPacketsIn == 0 {
			t.Errorf("node %s: CPU %v, %v µs/datagram, metrics %+v", n.Name, n.CPUMeasured, n.USPerDatagram, n.Metrics)
		}
		if n.LinkDatagrams != 0 || n.Datagrams != n.Packets+n.Lost || n.Pulls != 0 {
			t.Errorf("node %s: %d link datagrams, %d datagrams, pulls %v; want none over links", n.Name, n.LinkDatagrams, n.Datagrams, n.Pulls)
		}
		viewerPackets += n.Packets
	}
	if viewerPackets != rep.Packets || rep.Receivers != 4 {
		t.Errorf("per-node packets %d, report %d; receivers %d", viewerPackets, rep.Packets, rep.Receivers)
	}
	if !strings.Contains(rep.MarkdownRow(), "| N=4 on A+B |") {
		t.Errorf("markdown row %q lacks the nodes", rep.MarkdownRow())
	}
}
