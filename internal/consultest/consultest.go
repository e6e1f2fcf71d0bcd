// Package consultest starts a real Consul agent (`consul agent -dev`) on
// free loopback ports for tests of packages that cannot share test code
// (app, cmd). The binary is $CONFAB_CONSUL_BIN, or bin/consul at the root
// of the module (make consul builds it).
package consultest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/confab/confab/internal/buffer"
)

// leaderBound bounds the wait for the agent's leader.
const leaderBound = 30 * time.Second

// Agent is a running Consul dev agent.
type Agent struct {
	// Addr is the agent's plain HTTP address (host:port). It is served
	// with every Options, so tests can set up ACLs over it.
	Addr string
	// HTTPSAddr is the agent's HTTPS address (host:port) when started with
	// Options.TLS; empty otherwise.
	HTTPSAddr string
	// ManagementToken is the initial management token when started with
	// Options.ACL; empty otherwise.
	ManagementToken string
	// CA signed the agent's HTTPS certificate (and, with
	// Options.VerifyIncoming, is the only authority whose client
	// certificates the HTTPS API accepts); nil without Options.TLS.
	CA  *CA
	cmd *exec.Cmd
	out *buffer.Sync
}

// Options selects the security features of an agent started by StartWith.
// The zero value is a plain dev agent, as Start starts.
type Options struct {
	// ACL enables ACLs with default policy deny; the agent's initial
	// management token (also its own agent token) is Agent.ManagementToken.
	ACL bool
	// TLS serves the HTTP API over HTTPS too, on Agent.HTTPSAddr, with a
	// certificate for 127.0.0.1 signed by Agent.CA, a CA made for the test.
	TLS bool
	// VerifyIncoming makes the HTTPS API require a client certificate
	// signed by Agent.CA (Consul's tls.https.verify_incoming). Implies TLS.
	VerifyIncoming bool
}

// PID returns the agent's process id.
func (a *Agent) PID() int { return a.cmd.Process.Pid }

// Log returns what the agent printed so far.
func (a *Agent) Log() string { return a.out.String() }

// Start starts a plain dev agent named name (plus its HTTP port) and waits
// until it has a leader; the test fails if it cannot. t's cleanup kills it.
func Start(t testing.TB, name string) *Agent {
	t.Helper()
	return StartWith(t, name, Options{})
}

// StartWith is Start with ACLs and/or TLS as opts asks. Its configuration
// file, certificates and keys live in a temporary directory of t. It
// returns once the agent has a leader and, with ACLs, accepts its
// management token.
func StartWith(t testing.TB, name string, opts Options) *Agent {
	t.Helper()
	opts.TLS = opts.TLS || opts.VerifyIncoming
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := Ports(5)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), out: &buffer.Sync{}}
	args := []string{"agent", "-dev",
		"-node", name + "-" + strconv.Itoa(ports[0]),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(ports[0]),
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-serf-lan-port", strconv.Itoa(ports[1]),
		"-serf-wan-port", strconv.Itoa(ports[2]),
		"-server-port", strconv.Itoa(ports[3]),
		"-log-level", "warn",
	}
	if opts.ACL || opts.TLS {
		conf := a.configure(t, opts, ports[4])
		args = append(args, "-config-file", conf)
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	TieToTest(a.cmd)
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("consultest: start %s: %v", bin, err)
	}
	// exited is closed once the agent has exited, with its error in
	// exitErr: both the readiness wait and the cleanup wait for it (a
	// channel holding the error once would let the second wait forever
	// after an agent that died at start).
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = a.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = Kill(a.cmd.Process)
		<-exited
	})
	if err := waitReady(a.Addr, a.ManagementToken, exited, func() error { return exitErr }); err != nil {
		t.Fatalf("consultest: agent on %s: %v; log:\n%s", a.Addr, err, a.Log())
	}
	return a
}

// configure writes the agent's configuration file for opts (and, with TLS,
// its CA, certificate and key) into a temporary directory and returns the
// file's path. httpsPort is the HTTPS API's port.
func (a *Agent) configure(t testing.TB, opts Options, httpsPort int) string {
	t.Helper()
	dir := t.TempDir()
	conf := map[string]any{}
	if opts.ACL {
		a.ManagementToken = newUUID(t)
		conf["acl"] = map[string]any{
			"enabled":        true,
			"default_policy": "deny",
			"tokens":         map[string]string{"initial_management": a.ManagementToken, "agent": a.ManagementToken},
		}
	}
	if opts.TLS {
		a.CA = NewCA(t, "consultest CA")
		cert, key := a.CA.Issue(t, "consultest agent")
		files := map[string][]byte{"ca.pem": a.CA.CertPEM, "agent.pem": cert, "agent-key.pem": key}
		for file, b := range files {
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o600); err != nil {
				t.Fatalf("consultest: %v", err)
			}
		}
		a.HTTPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpsPort))
		conf["ports"] = map[string]int{"https": httpsPort}
		conf["tls"] = map[string]any{
			"defaults": map[string]any{
				"ca_file":   filepath.Join(dir, "ca.pem"),
				"cert_file": filepath.Join(dir, "agent.pem"),
				"key_file":  filepath.Join(dir, "agent-key.pem"),
			},
			"https": map[string]any{"verify_incoming": opts.VerifyIncoming},
		}
	}
	b, err := json.Marshal(conf)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	path := filepath.Join(dir, "agent.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return path
}

// newUUID returns a random version 4 UUID, the form of Consul's tokens.
func newUUID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("consultest: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
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

// waitReady polls the agent until it reports a leader and, when token is
// not empty, accepts token (the ACL system is up), bounded by leaderBound.
func waitReady(addr, token string, exited <-chan struct{}, exitErr func() error) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), leaderBound)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		b, status := get(client, "http://"+addr+"/v1/status/leader", "")
		if status == http.StatusOK && strings.Trim(strings.TrimSpace(b), `"`) != "" {
			if token == "" {
				return nil
			}
			if _, status := get(client, "http://"+addr+"/v1/acl/token/self", token); status == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("agent exited: %v", exitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v", leaderBound)
		case <-tick.C:
		}
	}
}

// get returns the body and status of a GET of url with token (if not
// empty); status 0 when the request failed.
func get(client *http.Client, url, token string) (string, int) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", 0
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	res, err := client.Do(req)
	if err != nil {
		return "", 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b), res.StatusCode
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

// CreateToken creates an ACL policy named name with rules (Consul's HCL
// policy language) and a token holding only that policy, using the
// management token over the plain HTTP API, and returns the token's secret.
// The agent must have been started with Options.ACL.
func (a *Agent) CreateToken(t testing.TB, name, rules string) string {
	t.Helper()
	if a.ManagementToken == "" {
		t.Fatal("consultest: CreateToken needs an agent started with Options.ACL")
	}
	var policy struct{ ID string }
	a.put(t, "/v1/acl/policy", map[string]any{"Name": name, "Rules": rules}, &policy)
	var token struct{ SecretID string }
	a.put(t, "/v1/acl/token", map[string]any{
		"Description": name,
		"Policies":    []map[string]string{{"ID": policy.ID}},
	}, &token)
	if token.SecretID == "" {
		t.Fatalf("consultest: token for policy %s: no secret in the answer", name)
	}
	return token.SecretID
}

// DeleteToken deletes the token whose secret is secret (made by
// CreateToken), using the management token.
func (a *Agent) DeleteToken(t testing.TB, secret string) {
	t.Helper()
	var self struct{ AccessorID string }
	a.do(t, http.MethodGet, "/v1/acl/token/self", secret, nil, &self)
	var deleted bool
	a.do(t, http.MethodDelete, "/v1/acl/token/"+self.AccessorID, a.ManagementToken, nil, &deleted)
	if !deleted {
		t.Fatalf("consultest: token %s not deleted", self.AccessorID)
	}
}

// put sends body as JSON to path with the management token and decodes the
// answer into out; the test fails unless the agent answers 200.
func (a *Agent) put(t testing.TB, path string, body, out any) {
	t.Helper()
	a.do(t, http.MethodPut, path, a.ManagementToken, body, out)
}

// do sends a request with token and body (JSON; none if nil) to path and
// decodes the answer into out; the test fails unless the agent answers 200.
func (a *Agent) do(t testing.TB, method, path, token string, body, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("consultest: %v", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+a.Addr+path, r)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	req.Header.Set("X-Consul-Token", token)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("consultest: %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	answer, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("consultest: %s %s: %d %s", method, path, res.StatusCode, answer)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		t.Fatalf("consultest: %s %s: %v in %s", method, path, err, answer)
	}
}
