package app

import (
	"context"
	"fmt"
	"github.com/confab/confab/internal/consultest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/confab/confab/tools/load"
)

// testClip is the committed test clip the load generator's clients publish.
const testClip = "../tools/clip/testdata/small"

// TestMetricsCrossNodeCall runs a real two-node cluster (a Consul agent,
// two Runs), publishes on node a and subscribes on node b, so that the
// media crosses the a-b link, and scrapes both nodes' --metrics-addr
// twice: the RTP and link counters move between the scrapes, the link
// metrics name the peer node, and no series names the room or a
// participant.
func TestMetricsCrossNodeCall(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	consul := consultest.Start(t, "confab-app-test").Addr
	const room = "metrics-call-room"
	nodes := map[string]*node{}
	metricsURL := map[string]string{}
	secret, _ := testSecret(t)
	for _, id := range []string{"metrics-a", "metrics-b"} {
		cfg := testConfig(t)
		cfg.NodeID = id
		cfg.ConsulAddr = consul
		cfg.ClusterSecret = secret
		cfg.MetricsAddr = metricsAddr(t)
		cfg.DrainTimeout = time.Second
		cfg.Placement = PlacementOff // the call must span the two nodes
		nodes[id] = startNode(t, cfg)
		metricsURL[id] = "http://" + cfg.MetricsAddr + "/metrics"
	}

	env, err := load.NewEnv(true, nil)
	if err != nil {
		t.Fatalf("load.NewEnv: %v", err)
	}
	media, err := load.LoadMedia(testClip)
	if err != nil {
		t.Fatalf("load.LoadMedia: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	pub, err := load.Join(ctx, env, load.ClientConfig{URL: nodes["metrics-a"].base, Room: room, Name: "alice"})
	if err != nil {
		t.Fatalf("join a: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	if err := pub.Publish(ctx, media); err != nil {
		t.Fatalf("publish on a: %v", err)
	}
	sub, err := load.Join(ctx, env, load.ClientConfig{URL: nodes["metrics-b"].base, Room: room, Name: "bob"})
	if err != nil {
		t.Fatalf("join b: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	waitCond(t, "media from a at the subscriber on b", func() bool { return sub.Received() >= 30 })

	local := map[string]string{"origin": "local"}
	remote := map[string]string{"origin": "remote"}
	toB := map[string]string{"peer": "metrics-b"}
	toA := map[string]string{"peer": "metrics-a"}
	// moving are the counters that must grow between two scrapes while
	// media flows: a receives from its publisher and sends over the link,
	// b receives from the link and sends to its subscriber.
	moving := []struct {
		node, family string
		labels       map[string]string
	}{
		{"metrics-a", "confab_rtp_packets_received_total", local},
		{"metrics-a", "confab_rtp_bytes_received_total", local},
		{"metrics-a", "confab_rtp_packets_sent_total", local},
		{"metrics-a", "confab_rtp_bytes_sent_total", local},
		{"metrics-a", "confab_link_bytes_sent_total", toB},
		{"metrics-b", "confab_rtp_packets_received_total", remote},
		{"metrics-b", "confab_rtp_bytes_received_total", remote},
		{"metrics-b", "confab_rtp_packets_sent_total", remote},
		{"metrics-b", "confab_rtp_bytes_sent_total", remote},
		{"metrics-b", "confab_link_bytes_received_total", toA},
	}
	// present are series that must exist, with a minimum value.
	present := []struct {
		node, family string
		labels       map[string]string
		min          float64
	}{
		{"metrics-a", "confab_participants", nil, 1},
		{"metrics-a", "confab_producers", local, 2}, // audio and video
		{"metrics-a", "confab_link_up", toB, 1},
		{"metrics-a", "confab_link_pipes", map[string]string{"peer": "metrics-b", "direction": "out"}, 2},
		{"metrics-a", "confab_join_duration_seconds", nil, 1},
		{"metrics-a", "confab_consul_requests_total", nil, 0},
		{"metrics-a", "confab_build_info", nil, 1},
		{"metrics-b", "confab_participants", nil, 1},
		{"metrics-b", "confab_producers", remote, 2},
		{"metrics-b", "confab_consumers", nil, 2},
		{"metrics-b", "confab_link_up", toA, 1},
		{"metrics-b", "confab_link_pipes", map[string]string{"peer": "metrics-a", "direction": "in"}, 2},
		{"metrics-b", "confab_link_rtt_seconds", toA, 0},
		{"metrics-b", "confab_link_loss_ratio", toA, 0},
		{"metrics-b", "confab_link_packets_lost", toA, 0},
		{"metrics-b", "confab_join_duration_seconds", nil, 1},
		{"metrics-b", "confab_consul_errors_total", nil, 0},
		{"metrics-b", "confab_consul_open_connections", nil, 0},
		{"metrics-b", "confab_cluster_sync_latency_seconds", nil, 0},
	}
	scrapeAll := func() map[string]map[string]*dto.MetricFamily {
		return map[string]map[string]*dto.MetricFamily{
			"metrics-a": scrape(t, metricsURL["metrics-a"]),
			"metrics-b": scrape(t, metricsURL["metrics-b"]),
		}
	}

	var first map[string]map[string]*dto.MetricFamily
	var missing []string
	waitCondf(t, func() bool {
		first = scrapeAll()
		missing = missing[:0]
		for _, p := range present {
			if v, ok := sumValues(first[p.node][p.family], p.labels); !ok || v < p.min {
				missing = append(missing, fmt.Sprintf("%s %s%v = %v (found %v), want >= %v", p.node, p.family, p.labels, v, ok, p.min))
			}
		}
		return len(missing) == 0
	}, func() string { return "series in the first scrape:\n" + strings.Join(missing, "\n") })

	var stuck []string
	waitCondf(t, func() bool {
		second := scrapeAll()
		stuck = stuck[:0]
		for _, m := range moving {
			before, _ := sumValues(first[m.node][m.family], m.labels)
			after, ok := sumValues(second[m.node][m.family], m.labels)
			if !ok || after <= before {
				stuck = append(stuck, fmt.Sprintf("%s %s%v: %v then %v", m.node, m.family, m.labels, before, after))
			}
		}
		return len(stuck) == 0
	}, func() string { return "counters that did not move:\n" + strings.Join(stuck, "\n") })

	// No series names the room or a participant.
	secrets := []string{room, "alice", "bob", pub.ID(), sub.ID()}
	for id, families := range first {
		for name, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					for _, s := range secrets {
						if strings.Contains(l.GetValue(), s) {
							t.Errorf("%s: %s has label %s=%q naming %q", id, name, l.GetName(), l.GetValue(), s)
						}
					}
				}
			}
		}
	}
}

// waitCond polls cond until it holds, failing after waitBound.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitCondf(t, cond, func() string { return what })
}

// waitCondf polls cond every 200ms until it holds; after waitBound it fails
// the test with what().
func waitCondf(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitBound, what())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// sumValues adds up the values of f's series whose labels include labels
// (sampleValue's rules per series); ok is false when none matches.
func sumValues(f *dto.MetricFamily, labels map[string]string) (sum float64, ok bool) {
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		one := &dto.MetricFamily{Metric: []*dto.Metric{m}}
		if v, found := sampleValue(one, nil); found {
			sum += v
			ok = true
		}
	}
	return sum, ok
}
