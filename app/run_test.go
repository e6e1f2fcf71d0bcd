package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

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

// TestRunSingleNode starts a whole node in single-node mode, checks the
// endpoints app wires (health, readiness, cluster status, pages), then
// cancels the context and expects a clean, leak-free shutdown.
func TestRunSingleNode(t *testing.T) {
	defer goleak.VerifyNone(t)

	cfg := DefaultConfig()
	cfg.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg.UDPIP = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.NodeID = "test-node"
	cfg.LogLevel = "warn"
	cfg.PprofAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg.TURNPort = freePort(t) // the TURN server starts and stops with the node
	cfg.MetricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()

	base := "http://" + cfg.HTTPAddr
	client := &http.Client{Timeout: 5 * time.Second}
	waitHealthy(t, client, base+"/healthz", done)

	pprofBase := "http://" + cfg.PprofAddr
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string // substring
	}{
		{"/healthz", http.StatusOK, ""},
		{"/debug/pprof/", http.StatusNotFound, ""}, // profiles only on --pprof-addr
		{pprofBase + "/debug/pprof/", http.StatusOK, "goroutine"},
		{pprofBase + "/debug/pprof/cmdline", http.StatusNotFound, ""}, // argv is not served
		{pprofBase + "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine"},
		{"/metrics", http.StatusNotFound, ""}, // metrics only on --metrics-addr
		{"http://" + cfg.MetricsAddr + "/metrics", http.StatusOK, "confab_build_info"},
		{"http://" + cfg.MetricsAddr + "/metrics", http.StatusOK, `confab_signaling_refused_total{reason="address"} 0`},
		{"/readyz", http.StatusOK, ""},
		{"/api/cluster", http.StatusOK, "test-node"},
		{"/", http.StatusOK, ""},
		{"/rooms/standup", http.StatusOK, "test-node"},
		{"/rooms/bad%20name!", http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			url := base + tt.path
			if strings.HasPrefix(tt.path, "http://") {
				url = tt.path
			}
			res, err := client.Get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("GET %s = %d, want %d; body:\n%s", tt.path, res.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("GET %s body does not contain %q:\n%s", tt.path, tt.wantBody, body)
			}
			if tt.path == "/api/cluster" && !json.Valid(body) {
				t.Errorf("GET /api/cluster is not JSON:\n%s", body)
			}
		})
	}
	client.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", err)
		}
	case <-time.After(2 * ShutdownTimeout):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// TestRunInvalidConfig checks that Run validates its Config before opening
// anything.
func TestRunInvalidConfig(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"bad udp ip", func(c *Config) { c.UDPIP = "nope" }, "--udp-ip"},
		{"consul without secret", func(c *Config) { c.ConsulAddr = "127.0.0.1:8500" }, "--cluster-secret"},
		{"bad log level", func(c *Config) { c.LogLevel = "chatty" }, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.NodeID = "n1"
			tt.mod(&cfg)
			err := Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// TestRunPortInUse checks that Run fails cleanly, closing what it opened,
// when the HTTP address is taken.
func TestRunPortInUse(t *testing.T) {
	defer goleak.VerifyNone(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	cfg := DefaultConfig()
	cfg.HTTPAddr = ln.Addr().String()
	cfg.UDPIP = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.NodeID = "n1"
	cfg.LogLevel = "error"
	cfg.TURNPort = 0
	err = Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("Run error = %v, want a listen error naming --http-addr", err)
	}
}

// waitHealthy polls url until it answers 200, failing early if Run returns.
func waitHealthy(t *testing.T, client *http.Client, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after 10s (last error %v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
