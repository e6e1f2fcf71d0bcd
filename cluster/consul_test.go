package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/confab/confab/internal/consultest"
	"github.com/confab/confab/tools/host"
	"go.uber.org/goleak"
)

// This file is the Consul test harness: it runs real `consul agent -dev`
// processes on free loopback ports. One agent is shared by the whole test
// binary (started in TestMain); tests that need to restart Consul start
// their own with startConsulAgent.
//
// The binary is $CONFAB_CONSUL_BIN or <repo>/bin/consul. When it is missing
// every test that needs Consul fails with a clear message (never skips).

// testTimeout bounds every wait of a test; generous for a loaded 2-core box.
const testTimeout = 90 * time.Second

// sharedConsul is the agent shared by the test binary, started by TestMain.
// Written once before m.Run, read-only afterwards.
var sharedConsul struct {
	agent *consulAgent
	err   error
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec)) // this process is a child node (child_test.go)
	}
	dir, err := os.MkdirTemp("", "confab-consul-")
	if err == nil {
		sharedConsul.agent, sharedConsul.err = startConsulAgent(dir)
	} else {
		sharedConsul.err = err
	}
	code := m.Run()
	if sharedConsul.agent != nil {
		sharedConsul.agent.stop()
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// consulForTest returns the shared agent, failing the test when it could not
// be started, and deletes the confab/ KV tree and every session so each test
// starts from an empty store.
func consulForTest(t testing.TB) *consulAgent {
	t.Helper()
	if sharedConsul.err != nil {
		t.Fatalf("consul agent unavailable: %v", sharedConsul.err)
	}
	a := sharedConsul.agent
	a.reset(t)
	return a
}

// consulAgent is one running `consul agent -dev`.
type consulAgent struct {
	bin     string
	dir     string
	ports   consulPorts
	cmd     *exec.Cmd
	waitErr chan error // receives cmd.Wait's result
	logPath string
	client  *api.Client
	httpc   *http.Client
}

type consulPorts struct{ http, serfLAN, serfWAN, server int }

// Addr is the agent's HTTP address (host:port).
func (a *consulAgent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.ports.http) }

// startConsulAgent starts an agent on free ports with its log in dir and
// waits until it has a leader and accepts sessions.
func startConsulAgent(dir string) (*consulAgent, error) {
	bin, err := consultest.Binary()
	if err != nil {
		return nil, err
	}
	ports, err := freeConsulPorts()
	if err != nil {
		return nil, err
	}
	return startConsulAgentOn(bin, dir, ports)
}

// startConsulAgentOn starts an agent on the given ports (used to restart an
// agent on the same address).
func startConsulAgentOn(bin, dir string, ports consulPorts) (*consulAgent, error) {
	transport := &http.Transport{}
	a := &consulAgent{
		bin:     bin,
		dir:     dir,
		ports:   ports,
		waitErr: make(chan error, 1),
		logPath: filepath.Join(dir, fmt.Sprintf("consul-%d-%d.log", ports.http, time.Now().UnixNano())),
		httpc:   &http.Client{Transport: transport, Timeout: 10 * time.Second},
	}
	logf, err := os.Create(a.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	a.cmd = exec.Command(bin, "agent", "-dev",
		"-node", fmt.Sprintf("confab-test-%d", ports.http),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports.http),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports.serfLAN),
		"-serf-wan-port", strconv.Itoa(ports.serfWAN),
		"-server-port", strconv.Itoa(ports.server),
		"-log-level", "warn",
	)
	a.cmd.Stdout = logf
	a.cmd.Stderr = logf
	consultest.TieToTest(a.cmd)
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { a.waitErr <- a.cmd.Wait() }()
	client, err := api.NewClient(&api.Config{Address: a.Addr(), HttpClient: a.httpc})
	if err != nil {
		a.stop()
		return nil, err
	}
	a.client = client
	if err := a.waitReady(60 * time.Second); err != nil {
		a.stop()
		return nil, fmt.Errorf("consul agent on %s not ready: %w; log:\n%s", a.Addr(), err, a.logTail())
	}
	return a, nil
}

// waitReady polls until the agent has a leader and can create a session.
func (a *consulAgent) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-a.waitErr:
			a.waitErr <- err
			return fmt.Errorf("agent exited: %v", err)
		default:
		}
		leader, err := a.client.Status().Leader()
		if err == nil && leader != "" {
			id, _, err := a.client.Session().Create(&api.SessionEntry{TTL: "10s"}, nil)
			if err == nil {
				_, _ = a.client.Session().Destroy(id, nil)
				return nil
			}
			last = err
		} else if err != nil {
			last = err
		} else {
			last = errors.New("no leader yet")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("timed out: %v", last)
}

// stop kills the agent (SIGKILL to its process group, as kill -9 would)
// and waits for it. Idempotent. A frozen agent is killed too.
func (a *consulAgent) stop() {
	if a.cmd != nil && a.cmd.Process != nil {
		_ = consultest.Kill(a.cmd.Process)
		<-a.waitErr
		a.waitErr <- nil
	}
	a.httpc.CloseIdleConnections()
}

// freeze stops the agent process (SIGSTOP) without killing it: its ports
// stay open, requests hang. Sessions survive a freeze shorter than their
// TTL.
func (a *consulAgent) freeze(t *testing.T) {
	t.Helper()
	if err := freezeProcess(a.cmd.Process); err != nil {
		t.Fatalf("freeze consul agent: %v", err)
	}
	a.httpc.CloseIdleConnections()
}

// thaw resumes a frozen agent.
func (a *consulAgent) thaw(t *testing.T) {
	t.Helper()
	if err := thawProcess(a.cmd.Process); err != nil {
		t.Fatalf("thaw consul agent: %v", err)
	}
}

// restart starts a fresh agent (no data: a dev agent keeps nothing) on the
// same ports as the stopped agent a; the test's cleanup stops it.
func (a *consulAgent) restart(t *testing.T) *consulAgent {
	t.Helper()
	a2, err := startConsulAgentOn(a.bin, a.dir, a.ports)
	if err != nil {
		t.Fatalf("restart consul agent on the same ports: %v", err)
	}
	t.Cleanup(a2.stop)
	return a2
}

// privateConsul starts an agent of the test's own (for tests that stop or
// restart Consul); the test's cleanup stops it.
func privateConsul(t *testing.T) *consulAgent {
	t.Helper()
	a, err := startConsulAgent(t.TempDir())
	if err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	t.Cleanup(a.stop)
	return a
}

func (a *consulAgent) logTail() string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// reset deletes the confab/ tree, every session and every confab service.
func (a *consulAgent) reset(t testing.TB) {
	t.Helper()
	if _, err := a.client.KV().DeleteTree(kvRoot, nil); err != nil {
		t.Fatalf("reset consul kv: %v", err)
	}
	sessions, _, err := a.client.Session().List(nil)
	if err != nil {
		t.Fatalf("reset consul sessions: %v", err)
	}
	for _, s := range sessions {
		if _, err := a.client.Session().Destroy(s.ID, nil); err != nil {
			t.Fatalf("reset consul sessions: %v", err)
		}
	}
	services, err := a.client.Agent().Services()
	if err != nil {
		t.Fatalf("reset consul services: %v", err)
	}
	for id := range services {
		if strings.HasPrefix(id, "confab-") {
			if err := a.client.Agent().ServiceDeregister(id); err != nil {
				t.Fatalf("reset consul services: %v", err)
			}
		}
	}
}

// freeConsulPorts picks four distinct loopback ports free for TCP and UDP.
func freeConsulPorts() (consulPorts, error) {
	p, err := consultest.Ports(4)
	if err != nil {
		return consulPorts{}, err
	}
	return consulPorts{http: p[0], serfLAN: p[1], serfWAN: p[2], server: p[3]}, nil
}

// testContext returns a context bounded by testTimeout.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 20ms until it holds, failing the test with what
// when ctx ends first.
func waitFor(ctx context.Context, t itT, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// checkLeaks registers a goroutine leak check that runs after every other
// cleanup of the test.
func checkLeaks(t *testing.T) {
	t.Helper()
	opts := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opts) })
}

// testLogger returns a debug logger on stderr with -v, else a discarding one.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// kvKeys lists the keys under prefix.
func kvKeys(t testing.TB, a *consulAgent, prefix string) []string {
	t.Helper()
	keys, _, err := a.client.KV().Keys(prefix, "", nil)
	if err != nil {
		t.Fatalf("list %s: %v", prefix, err)
	}
	return keys
}

// kvHas reports whether key exists.
func kvHas(t *testing.T, a *consulAgent, key string) bool {
	t.Helper()
	p, _, err := a.client.KV().Get(key, nil)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return p != nil
}

// cpu returns the CPU time (user + system) the agent process used so far.
func (a *consulAgent) cpu() (time.Duration, bool) {
	d, err := host.CPU(a.cmd.Process.Pid)
	return d, err == nil
}

// quietLogger discards everything (fleet nodes are many).
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
