package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/confab/confab/cluster"
	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

// allowedLabels are the only label names confab_ metrics may carry: each
// has a small fixed set of values or (peer) one value per cluster node.
var allowedLabels = []string{"kind", "origin", "direction", "peer", "version", "goversion", "reason"}

// TestMetricsOffByDefault: no metrics listener unless --metrics-addr is
// given, and never /metrics on the public HTTP server.
func TestMetricsOffByDefault(t *testing.T) {
	defer goleak.VerifyNone(t)
	if got := DefaultConfig().MetricsAddr; got != "" {
		t.Errorf("DefaultConfig().MetricsAddr = %q, want empty", got)
	}
	cfg, err := ParseConfig([]string{"--node-id", "n1"}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.MetricsAddr != "" {
		t.Errorf("parsed MetricsAddr = %q without the flag, want empty", cfg.MetricsAddr)
	}
	n := startNode(t, testConfig(t))
	if status, _ := n.get("/metrics"); status != http.StatusNotFound {
		t.Errorf("GET /metrics on the public server = %d, want 404", status)
	}
	n.cancel()
	if err := n.wait(); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// linkMembership is a single-node membership that also reports links and
// Consul figures, standing in for a *cluster.Node's data.
type linkMembership struct {
	*cluster.Local
	links []pipe.LinkStats
}

// LinkStats returns the configured links.
func (m linkMembership) LinkStats() []pipe.LinkStats { return m.links }

// ConsulStats returns fixed Consul figures.
func (m linkMembership) ConsulStats() cluster.ConsulStats {
	return cluster.ConsulStats{Requests: 7, Errors: 1, OpenConns: 2, MaxOpenConns: 3, SyncLatency: 40 * time.Millisecond}
}

// newTestMetrics returns the metrics of a real engine with three rooms of
// two participants each and a membership with two links and Consul
// figures, after one join was observed: every confab metric has a series.
// secrets are the room names and participant names and ids.
func newTestMetrics(t *testing.T) (m *metrics, secrets []string) {
	t.Helper()
	engine, err := sfu.New(sfu.Config{NodeID: "n1", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	for i := range 3 {
		room := "room-" + strconv.Itoa(i) + "-unique"
		secrets = append(secrets, room)
		for j := range 2 {
			name := "person-" + strconv.Itoa(i) + strconv.Itoa(j)
			p, err := engine.Join(room, sfu.JoinParams{Name: name, Events: sfu.EventHandlerFunc(func(sfu.Event) {})})
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			t.Cleanup(p.Close)
			secrets = append(secrets, name, p.ID())
		}
	}
	membership := linkMembership{Local: cluster.NewLocal(engine), links: []pipe.LinkStats{
		{PeerNode: "n2", Connected: true, PipesIn: 2, PipesOut: 1, BytesSent: 100, BytesReceived: 200,
			PacketsReceived: 90, PacketsLost: 10, RTT: 3 * time.Millisecond},
		{PeerNode: "n3"},
	}}
	m = newMetrics(engine, membership, "test")
	m.observeJoin(20 * time.Millisecond)
	m.reg.MustRegister(newAdmissionCollector(func() web.AdmissionStats {
		return web.AdmissionStats{Open: 2, RefusedNode: 1, RefusedAddr: 3, JoinTimeouts: 4}
	}))
	return m, secrets
}

// TestMetricsLabelsBounded gathers the registry of an engine with several
// rooms and participants and two links, and checks that confab's metrics
// carry only bounded labels: no room, participant or producer label, no
// such value, and a series count that does not grow with rooms or
// participants.
func TestMetricsLabelsBounded(t *testing.T) {
	m, secrets := newTestMetrics(t)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range families {
		byName[f.GetName()] = f
		if !strings.HasPrefix(f.GetName(), metricsNamespace+"_") {
			continue
		}
		if n := len(f.GetMetric()); n > 8 {
			t.Errorf("%s has %d series, want at most 8", f.GetName(), n)
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if !slices.Contains(allowedLabels, l.GetName()) {
					t.Errorf("%s has label %s=%q, not one of the bounded labels %v", f.GetName(), l.GetName(), l.GetValue(), allowedLabels)
				}
				for _, secret := range secrets {
					if strings.Contains(l.GetValue(), secret) {
						t.Errorf("%s label %s=%q names room or participant %q", f.GetName(), l.GetName(), l.GetValue(), secret)
					}
				}
			}
		}
	}

	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"confab_rooms", nil, 3},
		{"confab_participants", nil, 6},
		{"confab_producers", map[string]string{"origin": "local"}, 0},
		{"confab_build_info", map[string]string{"version": "test"}, 1},
		{"confab_join_duration_seconds", nil, 1}, // sample count
		{"confab_links", nil, 2},
		{"confab_link_up", map[string]string{"peer": "n2"}, 1},
		{"confab_link_up", map[string]string{"peer": "n3"}, 0},
		{"confab_link_pipes", map[string]string{"peer": "n2", "direction": "in"}, 2},
		{"confab_link_pipes", map[string]string{"peer": "n2", "direction": "out"}, 1},
		{"confab_link_bytes_sent_total", map[string]string{"peer": "n2"}, 100},
		{"confab_link_bytes_received_total", map[string]string{"peer": "n2"}, 200},
		{"confab_link_packets_lost", map[string]string{"peer": "n2"}, 10},
		{"confab_link_loss_ratio", map[string]string{"peer": "n2"}, 0.1},
		{"confab_link_rtt_seconds", map[string]string{"peer": "n2"}, 0.003},
		{"confab_consul_requests_total", nil, 7},
		{"confab_consul_errors_total", nil, 1},
		{"confab_consul_open_connections", nil, 2},
		{"confab_consul_max_open_connections", nil, 3},
		{"confab_cluster_sync_latency_seconds", nil, 0.04},
		{"confab_rtp_packets_received_total", map[string]string{"kind": "video", "origin": "remote"}, 0},
	}
	for _, tt := range tests {
		got, ok := sampleValue(byName[tt.family], tt.labels)
		if !ok {
			t.Errorf("%s%v: no such series", tt.family, tt.labels)
			continue
		}
		if diff := got - tt.want; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, got, tt.want)
		}
	}
	if _, ok := sampleValue(byName["confab_link_rtt_seconds"], map[string]string{"peer": "n3"}); ok {
		t.Error("confab_link_rtt_seconds reported for a link without an RTT")
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if byName[name] == nil {
			t.Errorf("runtime metric %s missing", name)
		}
	}
}

// TestLossRatio covers the edge cases of the link loss ratio.
func TestLossRatio(t *testing.T) {
	tests := []struct {
		lost, received int64
		want           float64
	}{
		{0, 0, 0},
		{0, 100, 0},
		{25, 75, 0.25},
		{-2, 100, 0}, // duplicates can make RTCP loss negative
		{5, 0, 1},
	}
	for _, tt := range tests {
		if got := lossRatio(tt.lost, tt.received); got != tt.want {
			t.Errorf("lossRatio(%d, %d) = %v, want %v", tt.lost, tt.received, got, tt.want)
		}
	}
}

// sampleValue returns the value of the series of f whose labels include
// labels: a counter's or gauge's value, a histogram's sample count.
func sampleValue(f *dto.MetricFamily, labels map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// hasLabels reports whether m carries every label of want.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// scrape GETs url (a /metrics endpoint) and parses the text exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("request %s: %v", url, err)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s = %d: %s", url, res.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// metricsAddr returns a free loopback address for --metrics-addr.
func metricsAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// TestMetricsDocumented keeps docs/metrics.md, the registry and the Grafana
// dashboard in step: every confab metric the registry exports is listed in
// the document and vice versa, and every confab metric a dashboard query
// uses exists.
func TestMetricsDocumented(t *testing.T) {
	m, _ := newTestMetrics(t)
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), metricsNamespace+"_") {
			exported[f.GetName()] = true
		}
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatalf("read docs/metrics.md: %v", err)
	}
	documented := map[string]bool{}
	for _, match := range regexp.MustCompile("(?m)^\\| `(confab_[a-z_]+)` \\|").FindAllSubmatch(doc, -1) {
		documented[string(match[1])] = true
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("%s is exported but not listed in docs/metrics.md", name)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("docs/metrics.md lists %s, which is not exported", name)
		}
	}

	raw, err := os.ReadFile(filepath.Join("..", "deploy", "grafana-dashboard.json"))
	if err != nil {
		t.Fatalf("read the dashboard: %v", err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana-dashboard.json: %v", err)
	}
	used := 0
	name := regexp.MustCompile(`confab_[a-z_]+`)
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, n := range name.FindAllString(target.Expr, -1) {
				used++
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
				if !exported[n] && !exported[base] {
					t.Errorf("dashboard panel %q uses %s, which is not exported", p.Title, n)
				}
			}
		}
	}
	if used == 0 {
		t.Error("the dashboard queries no confab metric")
	}
}
