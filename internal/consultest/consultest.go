// Package consultest starts a real Consul agent (`consul agent -dev`) on
// free loopback ports for tests of packages that cannot share test code
// (app, cmd). The binary is $CONFAB_CONSUL_BIN, or bin/consul at the root
// of the module (make consul builds it).
package consultest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// leaderBound bounds the wait for the agent's leader.
const leaderBound = 30 * time.Second

// Agent is a running Consul dev agent.
type Agent struct {
	// Addr is the agent's HTTP address (host:port).
	Addr string
	cmd  *exec.Cmd
	out  *syncBuffer
}

// PID returns the agent's process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Log returns what the agent printed so far.
func (a *Agent) Log() string { return a.out.String() }

// Start starts an agent named name (plus its HTTP port) and waits until it
// has a leader; the test fails if it cannot. t's cleanup kills it.
func Start(t testing.TB, name string) *Agent {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := Ports(4)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), out: &syncBuffer{}}
	a.cmd = exec.Command(bin, "agent", "-dev",
		"-node", name+"-"+strconv.Itoa(ports[0]),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]),
		"-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]),
		"-log-level", "warn",
	)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	TieToTest(a.cmd)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("consultest: start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		_ = Kill(a.cmd.Process)
		<-exited
	})
	if err := waitLeader(a.Addr, exited); err != nil {
		t.Fatalf("consultest: agent on %s: %v; log:\n%s", a.Addr, err, a.Log())
	}
	return a
}

// Binary locates the consul binary.
func Binary() (string, error) {
	if p := os.Getenv("CONFAB_CONSUL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("consultest: CONFAB_CONSUL_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("consultest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "consul")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("consultest: consul binary not found at %s (set CONFAB_CONSUL_BIN or run make consul): %w", p, err)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("consultest: no go.mod above the working directory; set CONFAB_CONSUL_BIN")
		}
		dir = parent
	}
}

// waitLeader polls the agent until it reports a leader, bounded by
// leaderBound.
func waitLeader(addr string, exited <-chan error) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), leaderBound)
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
			return fmt.Errorf("no leader after %v", leaderBound)
		case <-tick.C:
		}
	}
}

// Ports returns n distinct loopback ports that were free for TCP and UDP
// (serf uses both) a moment ago.
func Ports(n int) ([]int, error) {
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	for attempts := 0; len(ports) < n && attempts < 100; attempts++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("consultest: listen: %w", err)
		}
		closers = append(closers, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		closers = append(closers, pc)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, errors.New("consultest: no free ports")
	}
	return ports, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
