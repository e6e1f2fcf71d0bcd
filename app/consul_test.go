package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startConsul runs a `consul agent -dev` on free loopback ports for the
// test and returns its HTTP address; the test's cleanup kills it. The
// binary is $CONFAB_CONSUL_BIN or <repo>/bin/consul (make consul builds
// it); when it is missing the test fails with a clear message.
func startConsul(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CONFAB_CONSUL_BIN")
	if bin == "" {
		bin = filepath.Join("..", "bin", "consul")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("consul binary: %v (set CONFAB_CONSUL_BIN or run make consul)", err)
	}
	ports := freeConsulPorts(t)
	logf, err := os.Create(filepath.Join(t.TempDir(), "consul.log"))
	if err != nil {
		t.Fatalf("consul log: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "-dev",
		"-node", "confab-app-test-"+strconv.Itoa(ports[0]),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]),
		"-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]),
		"-log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	tieToTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = killProcess(cmd.Process)
		<-exited
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	if err := waitConsulLeader(addr, exited); err != nil {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("consul agent on %s: %v; log:\n%s", addr, err, b)
	}
	return addr
}

// waitConsulLeader polls the agent until it reports a leader, bounded by
// waitBound.
func waitConsulLeader(addr string, exited <-chan error) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := client.Get("http://" + addr + "/v1/status/leader")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Trim(strings.TrimSpace(string(b)), `"`) != "" {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("agent exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("no leader after %v", waitBound)
		case <-tick.C:
		}
	}
}

// freeConsulPorts returns four loopback ports free for TCP and UDP (serf
// uses both) a moment ago.
func freeConsulPorts(t *testing.T) [4]int {
	t.Helper()
	var ports [4]int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	n := 0
	for attempts := 0; n < len(ports) && attempts < 100; attempts++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		closers = append(closers, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		closers = append(closers, pc)
		ports[n] = port
		n++
	}
	if n < len(ports) {
		t.Fatal("no free ports for consul")
	}
	return ports
}
