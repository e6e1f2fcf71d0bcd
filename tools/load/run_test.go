package load

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/confab/confab/app"
)

// TestMain fails the package if a test leaves a goroutine behind (clients,
// peer connections, track readers, the in-process node).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// smallClip is the committed test clip (320x180, 30 fps, 3 s).
const smallClip = "../clip/testdata/small"

// startNode runs a real single confab node in-process on loopback and
// returns its base URL; the node is stopped (and waited for) at cleanup.
func startNode(t *testing.T) string {
	t.Helper()
	return startNodeWith(t, nil)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNodeWith is startNode with mod applied to the node's configuration.
func startNodeWith(t *testing.T, mod func(*app.Config)) string {
	t.Helper()
	port := freePort(t)
	cfg := app.DefaultConfig()
	cfg.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.UDPIP = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.NodeID = "load-test"
	cfg.LogLevel = "error"
	cfg.DrainTimeout = 2 * time.Second
	// No embedded TURN server: the clients use host candidates, and its
	// fixed port may be taken by another node on this machine.
	cfg.TURNPort = 0
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("node did not stop")
		}
	})

	base := "http://" + cfg.HTTPAddr
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err // for the cleanup, which waits for it
			t.Fatalf("node stopped early: %v", err)
		default:
		}
		res, err := client.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not healthy after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testConfig is a short run against url with the small clip. The node runs
// in this process, so its "CPU" is this process's (generator included):
// that exercises the measurement, not its value.
func testConfig(url, scenario string) Config {
	return Config{
		Scenario:      scenario,
		URL:           url,
		Subscribers:   3,
		Participants:  3,
		Clip:          smallClip,
		Duration:      2 * time.Second,
		Warmup:        500 * time.Millisecond,
		JoinRate:      50,
		ChurnRate:     2,
		ChurnLifetime: 1500 * time.Millisecond,
		ServerPID:     os.Getpid(),
		Timeout:       time.Minute,
	}
}

// TestRunScenarios runs fanout, meeting and churn against a real node and
// checks that every measurement produced data.
func TestRunScenarios(t *testing.T) {
	if _, err := os.Stat(smallClip + "/video.ivf"); err != nil {
		t.Fatalf("the committed test clip is missing: %v", err)
	}
	url := startNode(t)
	tests := []struct {
		scenario    string
		receivers   int
		tracks      int
		joins       uint64 // at least
		propagation uint64 // at least
	}{
		// 3 subscribers x (video, audio).
		{ScenarioFanout, 3, 6, 3, 0},
		// 3 participants x 2 others x 2 kinds; the first one's join does
		// not count; earlier joiners see later ones publish (3 pairs).
		{ScenarioMeeting, 3, 12, 2, 3},
		// Steady subscribers as fanout, plus the churners' joins.
		{ScenarioChurn, 3, 6, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			rep, err := Run(context.Background(), testConfig(url, tt.scenario), nil)
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
			if rep.Receivers != tt.receivers || rep.Tracks != tt.tracks {
				t.Errorf("receivers %d, tracks %d; want %d, %d", rep.Receivers, rep.Tracks, tt.receivers, tt.tracks)
			}
			if rep.Packets == 0 || rep.Bytes == 0 || rep.PPS <= 0 || rep.Mbps <= 0 {
				t.Errorf("no traffic counted: packets %d, bytes %d, %v pkts/s, %v Mbit/s", rep.Packets, rep.Bytes, rep.PPS, rep.Mbps)
			}
			if rep.LossPercent < 0 || rep.LossPercent > 100 {
				t.Errorf("loss %v%% out of range", rep.LossPercent)
			}
			if rep.DelayMS.N == 0 || rep.DelayMS.P50 <= 0 || rep.DelayMS.P99 < rep.DelayMS.P50 {
				t.Errorf("delays not measured: %+v", rep.DelayMS)
			}
			if rep.JoinMS.N < tt.joins || rep.JoinMS.P50 <= 0 {
				t.Errorf("joins %+v, want at least %d samples", rep.JoinMS, tt.joins)
			}
			if rep.PropagationMS.N < tt.propagation || (tt.propagation > 0 && rep.PropagationMS.P50 <= 0) {
				t.Errorf("propagation %+v, want at least %d samples", rep.PropagationMS, tt.propagation)
			}
			if !rep.CPUMeasured || rep.ServerCPUSeconds <= 0 || rep.USPerPacket <= 0 || rep.MSCPUPerMbit <= 0 {
				t.Errorf("CPU not measured: %v, %v s, %v µs/pkt, %v ms/Mbit", rep.CPUMeasured, rep.ServerCPUSeconds, rep.USPerPacket, rep.MSCPUPerMbit)
			}
			if len(rep.Servers) != 1 || rep.Servers[0].RSSJoinedKiB <= 0 {
				t.Errorf("servers %+v, want one with RSS", rep.Servers)
			}
			if rep.DurationS < 1.9 {
				t.Errorf("window %v s, want the 2 s asked for", rep.DurationS)
			}
			if tt.scenario == ScenarioChurn && rep.Params.Churned == 0 {
				t.Error("no churning subscriber started")
			}
		})
	}
}

// TestRunCancel stops a run in its measurement window, as Ctrl-C does: Run
// returns promptly with the context's error and a partial report, and every
// client has left (the goroutine leak check of TestMain covers the rest).
func TestRunCancel(t *testing.T) {
	url := startNode(t)
	cfg := testConfig(url, ScenarioFanout)
	cfg.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	start := time.Now()
	rep, err := Run(ctx, cfg, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Run took %v after a cancel at 3s", took)
	}
	if rep == nil || rep.Receivers != 3 {
		t.Fatalf("partial report %+v, want the 3 subscribers", rep)
	}
}

// TestRunTimeout checks the hard cap: a run longer than Timeout ends with
// an error naming --timeout.
func TestRunTimeout(t *testing.T) {
	url := startNode(t)
	cfg := testConfig(url, ScenarioFanout)
	cfg.Subscribers = 1
	cfg.Duration = time.Minute
	cfg.Timeout = 3 * time.Second
	rep, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Fatalf("Run error = %v, want one naming --timeout", err)
	}
	if rep == nil || len(rep.Errors) == 0 {
		t.Fatalf("report %+v, want the timeout among its errors", rep)
	}
}

// TestRunIdleCheck checks that a busy machine aborts the run before it
// starts: with a limit of 0.0001 % any machine is busy enough... unless it is
// perfectly idle, so the test keeps one CPU busy meanwhile.
func TestRunIdleCheck(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // spins until stop
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	defer func() { close(stop); <-done }()
	cfg := testConfig("http://127.0.0.1:1", ScenarioFanout)
	cfg.IdleMax = 0.000001
	rep, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "--idle-max") {
		t.Fatalf("Run error = %v, want the idle check to fail naming --idle-max", err)
	}
	if rep == nil || !rep.Idle.Checked || rep.Idle.Total <= cfg.IdleMax {
		t.Fatalf("report %+v, want the idle check's result", rep)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "--idle-max") || strings.Contains(table.String(), "packets") {
		t.Errorf("table of a run stopped before measuring:\n%s", table.String())
	}
}
