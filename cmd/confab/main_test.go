package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/confab/confab/internal/buffer"
)

// childEnv makes the test binary run main() instead of the tests, so the
// signal handling is tested on a real process.
const childEnv = "GO_CONFAB_MAIN_TEST_CHILD"

// waitBound turns a hang into a failure; nothing here passes or fails on
// how fast it happens within it.
const waitBound = 60 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// proc is a confab process started from the test binary.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	out  *buffer.Sync
	done chan struct{}
	err  error // set before done is closed
}

func startConfab(t *testing.T, extra ...string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{"--http-addr", addr, "--udp-ip", "127.0.0.1", "--udp-port", "0",
		"--node-id", "sig-test", "--log-level", "info", "--turn-port", "0"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = []string{childEnv + "=1", "PATH=" + os.Getenv("PATH")} // no CONFAB_* from outside
	p := &proc{t: t, cmd: cmd, base: "http://" + addr, out: &buffer.Sync{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("confab output:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(waitBound)
	for {
		if status, _ := p.get("/healthz"); status == http.StatusOK {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("confab exited early: %v\n%s", p.err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("confab not healthy:\n%s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get returns the status and body of a GET (0 when unreachable).
func (p *proc) get(path string) (int, string) {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Get(p.base + path)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal: %v", err)
	}
}

// exitCode waits for the process to exit and returns its status.
func (p *proc) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitBound):
		p.t.Fatalf("confab did not exit:\n%s", p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// joinRoom connects a participant so that draining has to wait for it.
func (p *proc) joinRoom(t *testing.T) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.base, "http")+"/rooms/sig/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"v":1,"type":"join","name":"Al"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := conn.Read(ctx); err != nil || !strings.Contains(string(b), `"joined"`) {
		t.Fatalf("join: %s %v", b, err)
	}
	return conn
}

// waitDraining polls /readyz until the node reports draining.
func (p *proc) waitDraining() {
	p.t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		if status, body := p.get("/readyz"); status == http.StatusServiceUnavailable && strings.Contains(body, "draining") {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("node never reported draining:\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSignals: SIGTERM drains (the node keeps running while a participant
// stays), a second signal exits at once with status 1; without
// participants SIGTERM stops the node cleanly with status 0.
func TestSignals(t *testing.T) {
	t.Run("second signal exits immediately", func(t *testing.T) {
		p := startConfab(t, "--drain-timeout", "10m")
		p.joinRoom(t)
		p.signal(syscall.SIGTERM)
		p.waitDraining() // still up: the participant has not left
		p.signal(syscall.SIGTERM)
		if code := p.exitCode(); code != 1 {
			t.Errorf("exit status %d after a second signal, want 1", code)
		}
		if out := p.out.String(); !strings.Contains(out, "second signal") {
			t.Errorf("output does not mention the second signal:\n%s", out)
		}
	})
	t.Run("drained node exits cleanly", func(t *testing.T) {
		p := startConfab(t, "--drain-timeout", "10m")
		conn := p.joinRoom(t)
		p.signal(syscall.SIGINT)
		p.waitDraining()
		// The participant follows the move: it leaves, and the node stops.
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		defer cancel()
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"v":1,"type":"leave"}`)); err != nil {
			t.Fatal(err)
		}
		for { // read the move, then the close
			if _, _, err := conn.Read(ctx); err != nil {
				break
			}
		}
		if code := p.exitCode(); code != 0 {
			t.Errorf("exit status %d after a drained shutdown, want 0", code)
		}
		if out := p.out.String(); !strings.Contains(out, "confab drained") {
			t.Errorf("output does not report the drain:\n%s", out)
		}
	})
	t.Run("bad flag", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "--drain-timeout", "soon")
		cmd.Env = []string{childEnv + "=1"}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--drain-timeout") {
			t.Errorf("bad --drain-timeout: %v, output %q; want status 2 naming the flag", err, out)
		}
	})
}
