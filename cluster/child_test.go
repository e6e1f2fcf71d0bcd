package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/confab/confab/internal/consultest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// A child node is a confab node in a separate process — the test binary
// started again with childEnv set — so that a test can kill it with SIGKILL
// (kill -9) or freeze it with SIGSTOP: no deferred cleanup runs, the kernel
// closes its sockets (or, frozen, keeps them open and silent), exactly as
// in production. The child runs an sfu.Engine, a cluster.Node and an HTTP
// server (control channel, /healthz, /api/cluster), joins one client that
// publishes a VP8 track, prints one "READY {json}" line on stdout, and runs
// until killed or until its stdin closes (the parent died).

// childEnv carries the JSON childSpec; its presence turns the test binary
// into a child node (see TestMain).
const childEnv = "CONFAB_CLUSTER_TEST_CHILD"

// childSpec configures a child node.
type childSpec struct {
	NodeID     string        `json:"nodeId"`
	Consul     string        `json:"consul"`
	HTTPAddr   string        `json:"httpAddr"` // host:port to listen on
	SessionTTL time.Duration `json:"sessionTtl"`
	Room       string        `json:"room"`
	Publisher  string        `json:"publisher"` // display name of the publishing client
}

// childReady is what a child reports once it serves and publishes.
type childReady struct {
	URL           string `json:"url"`
	ProducerID    string `json:"producerId"`
	ParticipantID string `json:"participantId"`
	Session       string `json:"session"`
}

// childMain runs a child node from the JSON spec and returns the process
// exit code. It never returns while the node runs normally.
func childMain(specJSON string) int {
	var spec childSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "child: bad spec:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", spec.NodeID)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ct := &childT{}
	ready, err := runChildNode(ctx, ct, spec, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	b, _ := json.Marshal(ready)
	fmt.Printf("READY %s\n", b)
	// Serve until killed; exit when the parent goes away (stdin closes).
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// runChildNode starts the child's node and its publisher.
func runChildNode(ctx context.Context, ct *childT, spec childSpec, log *slog.Logger) (childReady, error) {
	engine, err := sfu.New(sfu.Config{NodeID: spec.NodeID, UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: log})
	if err != nil {
		return childReady{}, err
	}
	ln, err := net.Listen("tcp", spec.HTTPAddr)
	if err != nil {
		return childReady{}, err
	}
	url := "http://" + ln.Addr().String()
	node, err := New(Config{
		NodeID: spec.NodeID, ConsulAddr: spec.Consul, AdvertiseURL: url, Secret: testSecret, Version: "child",
		SessionTTL: spec.SessionTTL, Logger: log, WatchWait: 10 * time.Second, MaxBackoff: time.Second,
	}, engine)
	if err != nil {
		return childReady{}, err
	}
	engine.SetObserver(node)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/cluster/", node.Handler())
	mux.HandleFunc("/api/cluster", func(w http.ResponseWriter, r *http.Request) {
		st, err := node.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	go func() { _ = http.Serve(ln, mux) }() // lives until the process dies
	if err := node.Start(ctx); err != nil {
		return childReady{}, err
	}
	c := itJoinEngine(ct, engine, spec.Room, spec.Publisher)
	c.publishVP8(ctx, "cam")
	for ctx.Err() == nil {
		if r := engine.Room(spec.Room); r != nil {
			for _, p := range r.Producers() {
				if !p.Remote && p.ParticipantID == c.p.ID() {
					return childReady{URL: url, ProducerID: p.ID, ParticipantID: c.p.ID(), Session: node.sessionID()}, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return childReady{}, ctx.Err()
}

// childT is the itT of a child process: failures end the process.
type childT struct{}

func (*childT) Helper()                   {}
func (*childT) Cleanup(func())            {} // the process is killed, not cleaned up
func (*childT) Errorf(f string, a ...any) { fmt.Fprintf(os.Stderr, "child error: "+f+"\n", a...) }
func (*childT) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "child fatal: "+f+"\n", a...)
	os.Exit(3)
}
func (*childT) Fatal(a ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"child fatal:"}, a...)...)
	os.Exit(3)
}

// childNode is a running child node seen from the test.
type childNode struct {
	t       *testing.T
	spec    childSpec
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	logPath string
	done    chan struct{} // closed when the process has exited and its stdout is drained
	ready   childReady
}

// startChildNode starts a child node and waits for its READY line. The
// test's cleanup kills it (if the test did not) and waits for it.
func startChildNode(ctx context.Context, t *testing.T, spec childSpec) *childNode {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	c := &childNode{t: t, spec: spec, done: make(chan struct{}),
		logPath: filepath.Join(t.TempDir(), "child-"+spec.NodeID+".log")}
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	c.cmd.Stderr = logf
	consultest.TieToTest(c.cmd)
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start child node %s: %v", spec.NodeID, err)
	}
	readyCh := make(chan childReady, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				var r childReady
				if json.Unmarshal([]byte(rest), &r) == nil {
					readyCh <- r
				}
			}
		}
		_ = c.cmd.Wait()
	}()
	t.Cleanup(c.kill)
	select {
	case c.ready = <-readyCh:
	case <-c.done:
		t.Fatalf("child node %s exited before it was ready; log:\n%s", spec.NodeID, c.logTail())
	case <-ctx.Done():
		t.Fatalf("child node %s not ready; log:\n%s", spec.NodeID, c.logTail())
	}
	return c
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone.
// Idempotent.
func (c *childNode) kill() {
	if c.cmd.Process != nil {
		_ = consultest.Kill(c.cmd.Process)
	}
	_ = c.stdin.Close()
	<-c.done
}

// freeze stops the child (SIGSTOP); thaw resumes it.
func (c *childNode) freeze() {
	c.t.Helper()
	if err := freezeProcess(c.cmd.Process); err != nil {
		c.t.Fatalf("freeze child: %v", err)
	}
}

func (c *childNode) thaw() {
	c.t.Helper()
	if err := thawProcess(c.cmd.Process); err != nil {
		c.t.Fatalf("thaw child: %v", err)
	}
}

// status fetches the child's /api/cluster.
func (c *childNode) status(ctx context.Context) (Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.ready.URL+"/api/cluster", nil)
	if err != nil {
		return Status{}, err
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, errors.New(resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, err
	}
	return st, nil
}

func (c *childNode) logTail() string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// freeTCPAddr returns a loopback host:port that was free a moment ago.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
