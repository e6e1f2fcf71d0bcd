package app

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/confab/confab/cluster"
	"github.com/confab/confab/internal/consultest"
)

// policyFile is the shipped Consul ACL policy the tests give their token.
const policyFile = "../deploy/consul-acl-policy.hcl"

// writeFile writes b into a new file of t's temporary directory and
// returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestParseConfigConsulAuth: the Consul token and TLS flags are read from
// their files (the token also from $CONFAB_CONSUL_TOKEN) and every misuse
// is a one-line error naming the flag.
func TestParseConfigConsulAuth(t *testing.T) {
	ca := consultest.NewCA(t, "test CA")
	certPEM, keyPEM := ca.Issue(t, "node")
	const token = "6b1f39a4-3c1e-4f7e-9a55-0d2f0c1b7e21"
	tokenFile := writeFile(t, "token", []byte(token+"\n"))
	emptyFile := writeFile(t, "empty", nil)
	spacedToken := writeFile(t, "spaced", []byte("two words\n"))
	caFile := writeFile(t, "ca.pem", ca.CertPEM)
	certFile := writeFile(t, "cert.pem", certPEM)
	keyFile := writeFile(t, "key.pem", keyPEM)
	garbage := writeFile(t, "garbage.pem", []byte("not PEM"))
	missing := filepath.Join(t.TempDir(), "missing")
	secretFile := writeFile(t, "secret", []byte("consul-flags-test-secret-7f3a9c\n"))
	nodeArgs := func(args ...string) []string {
		return append([]string{"--node-id", "n1", "--cluster-secret-file", secretFile}, args...)
	}

	t.Run("valid", func(t *testing.T) {
		tests := []struct {
			name      string
			args      []string
			env       map[string]string
			wantToken string
			wantTLS   cluster.ConsulTLS
		}{
			{"plain, no token", nodeArgs("--consul", "127.0.0.1:8500"), nil, "", cluster.ConsulTLS{}},
			{"http scheme", nodeArgs("--consul", "http://127.0.0.1:8500"), nil, "", cluster.ConsulTLS{}},
			{"token file", nodeArgs("--consul", "127.0.0.1:8500", "--consul-token-file", tokenFile), nil, token, cluster.ConsulTLS{}},
			{"token file from env", nodeArgs("--consul", "127.0.0.1:8500"), map[string]string{"CONFAB_CONSUL_TOKEN_FILE": tokenFile}, token, cluster.ConsulTLS{}},
			{"token from env", nodeArgs("--consul", "127.0.0.1:8500"), map[string]string{"CONFAB_CONSUL_TOKEN": token}, token, cluster.ConsulTLS{}},
			{"https, system roots", nodeArgs("--consul", "https://127.0.0.1:8501"), nil, "", cluster.ConsulTLS{}},
			{"https with CA", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-ca-file", caFile), nil, "", cluster.ConsulTLS{CA: ca.CertPEM}},
			{"https with client certificate", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-ca-file", caFile,
				"--consul-cert-file", certFile, "--consul-key-file", keyFile, "--consul-token-file", tokenFile), nil,
				token, cluster.ConsulTLS{CA: ca.CertPEM, Cert: certPEM, Key: keyPEM}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cfg, err := ParseConfig(tt.args, env(tt.env))
				if err != nil {
					t.Fatalf("ParseConfig(%q): %v", tt.args, err)
				}
				gotToken, gotTLS, err := cfg.consulAuth()
				if err != nil {
					t.Fatalf("consulAuth: %v", err)
				}
				if gotToken != tt.wantToken || string(gotTLS.CA) != string(tt.wantTLS.CA) ||
					string(gotTLS.Cert) != string(tt.wantTLS.Cert) || string(gotTLS.Key) != string(tt.wantTLS.Key) {
					t.Errorf("consulAuth = %q, %+v; want %q, %+v", gotToken, gotTLS, tt.wantToken, tt.wantTLS)
				}
			})
		}
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			env  map[string]string
			want string // substring of the error
		}{
			{"token file without consul", []string{"--consul-token-file", tokenFile}, nil, "flag --consul-token-file: is only used with --consul"},
			{"token env without consul", nil, map[string]string{"CONFAB_CONSUL_TOKEN": token}, "$CONFAB_CONSUL_TOKEN: is only used with --consul"},
			{"CA without consul", []string{"--consul-ca-file", caFile}, nil, "flag --consul-ca-file: is only used with --consul"},
			{"unknown scheme", nodeArgs("--consul", "ftp://127.0.0.1:8500"), nil, `invalid value "ftp://127.0.0.1:8500" for flag --consul: must be host:port, http://host:port or https://host:port`},
			{"https without port", nodeArgs("--consul", "https://consul"), nil, `invalid value "https://consul" for flag --consul: `},
			{"missing token file", nodeArgs("--consul", "127.0.0.1:8500", "--consul-token-file", missing), nil, "flag --consul-token-file: open " + missing},
			{"empty token file", nodeArgs("--consul", "127.0.0.1:8500", "--consul-token-file", emptyFile), nil, "for flag --consul-token-file: the file is empty"},
			{"token with a space", nodeArgs("--consul", "127.0.0.1:8500", "--consul-token-file", spacedToken), nil, "for flag --consul-token-file: the token must be printable ASCII"},
			{"token file and env", nodeArgs("--consul", "127.0.0.1:8500", "--consul-token-file", tokenFile), map[string]string{"CONFAB_CONSUL_TOKEN": token}, "both give a Consul token"},
			{"CA with plain http", nodeArgs("--consul", "127.0.0.1:8500", "--consul-ca-file", caFile), nil, "flag --consul-ca-file: needs an https:// --consul address"},
			{"missing CA", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-ca-file", missing), nil, "flag --consul-ca-file: open " + missing},
			{"CA not PEM", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-ca-file", garbage), nil, "for flag --consul-ca-file: consul CA: no PEM certificate found"},
			{"empty CA", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-ca-file", emptyFile), nil, "for flag --consul-ca-file: the file is empty"},
			{"cert without key", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-cert-file", certFile), nil, "--consul-cert-file and --consul-key-file must be given together"},
			{"key without cert", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-key-file", keyFile), nil, "--consul-cert-file and --consul-key-file must be given together"},
			{"key is not the cert's", nodeArgs("--consul", "https://127.0.0.1:8501", "--consul-cert-file", certFile, "--consul-key-file", caFile), nil, "consul client certificate and key: "},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := ParseConfig(tt.args, env(tt.env))
				if err == nil {
					t.Fatalf("ParseConfig(%q) succeeded, want error containing %q", tt.args, tt.want)
				}
				if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
					t.Errorf("ParseConfig(%q) error = %q, want one line containing %q", tt.args, msg, tt.want)
				}
			})
		}
	})
}

// clusterArgs are the flags of a cluster node id on free loopback ports
// using the Consul agent at consul, plus extra.
func clusterArgs(t *testing.T, id, consul string, extra ...string) []string {
	return append([]string{
		"--http-addr", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		"--udp-ip", "127.0.0.1", "--udp-port", "0", "--node-id", id, "--log-level", "error",
		"--consul", consul, "--cluster-secret-file", writeFile(t, "secret", []byte("consul-auth-test-secret-0123")),
		"--placement", "off", // the room must span the two nodes
		"--turn-port", "0", // nodes of a test run no TURN server on the shared default port
		"--drain-timeout", "1s",
	}, extra...)
}

// parse is ParseConfig that fails the test on error.
func parse(t *testing.T, args []string, environ map[string]string) Config {
	t.Helper()
	cfg, err := ParseConfig(args, env(environ))
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", args, err)
	}
	return cfg
}

// roomSpans starts a and b, has Alice join room on a and Bob on b, and
// waits until Alice hears of Bob as a participant of another node: the
// room record went through Consul and the nodes linked.
func roomSpans(t *testing.T, a, b Config) {
	t.Helper()
	na, nb := startNode(t, a), startNode(t, b)
	const room = "consul-auth-room"
	alice := na.dial(room)
	alice.join("Alice")
	nb.dial(room).join("Bob")
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitBound)
		_, raw, err := alice.conn.Read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for Bob on %s to reach Alice on %s: %v", b.NodeID, a.NodeID, err)
		}
		var m struct {
			Type        string `json:"type"`
			Participant struct {
				Name   string `json:"name"`
				Origin string `json:"origin"`
				Remote bool   `json:"remote"`
			} `json:"participant"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		if m.Type == "participant-joined" && m.Participant.Name == "Bob" {
			if m.Participant.Origin != b.NodeID || !m.Participant.Remote {
				t.Fatalf("Bob announced as %+v, want a remote participant of %s", m.Participant, b.NodeID)
			}
			break
		}
	}
	// Every background activity (session renewal, watches, writes) works
	// with the node's credentials: both nodes are ready.
	for _, n := range []*node{na, nb} {
		waitCond(t, n.base+"/readyz to answer 200", func() bool {
			status, _ := n.get("/readyz")
			return status == http.StatusOK
		})
	}
}

// runError runs cfg, which must fail to start, and returns Run's error.
func runError(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	err := Run(ctx, cfg)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run = %v (context: %v), want a start error", err, ctx.Err())
	}
	return err
}

// TestRunConsulACL runs nodes against a real Consul agent with ACLs on
// (default policy deny): with a token holding exactly the shipped policy
// (deploy/consul-acl-policy.hcl), given by file to one node and by
// $CONFAB_CONSUL_TOKEN to the other, two nodes form a cluster and a room
// spans them; with no token or an unknown one, Run fails at start with
// cluster.ErrConsulDenied and Consul's reason.
func TestRunConsulACL(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	agent := consultest.StartWith(t, "confab-acl", consultest.Options{ACL: true})
	token := agent.CreateToken(t, "confab", string(policy))

	t.Run("shipped policy", func(t *testing.T) {
		a := parse(t, clusterArgs(t, "acl-a", agent.Addr, "--consul-token-file", writeFile(t, "token", []byte(token+"\n"))), nil)
		b := parse(t, clusterArgs(t, "acl-b", agent.Addr), map[string]string{EnvConsulToken: token})
		roomSpans(t, a, b)
		// The health watch's query (every node's instance of the service,
		// with its checks) sees both nodes with this token: without the
		// node rule Consul would filter them out silently.
		req, err := http.NewRequest(http.MethodGet, "http://"+agent.Addr+"/v1/health/service/confab", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Consul-Token", token)
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var entries []struct{ Service struct{ ID string } }
		if err := json.NewDecoder(res.Body).Decode(&entries); err != nil || res.StatusCode != http.StatusOK || len(entries) != 2 {
			t.Fatalf("health of service confab with the token: %d, %+v (%v), want the two nodes", res.StatusCode, entries, err)
		}
	})

	t.Run("token revoked while running", func(t *testing.T) {
		revoked := agent.CreateToken(t, "confab-revoked", string(policy))
		n := startNode(t, parse(t, clusterArgs(t, "acl-revoked", agent.Addr), map[string]string{EnvConsulToken: revoked}))
		waitCond(t, "/readyz ready", func() bool {
			status, body := n.get("/readyz")
			return status == http.StatusOK && strings.Contains(body, `"ready"`)
		})
		agent.DeleteToken(t, revoked)
		// The next session renewal (every TTL/2, 5s) or watch is refused.
		var body string
		waitCondf(t, func() bool {
			_, body = n.get("/readyz")
			return strings.Contains(body, `"degraded"`) && strings.Contains(body, "ACL not found")
		}, func() string { return "/readyz degraded with Consul's reason, last " + body })
	})

	tests := []struct {
		name  string
		env   map[string]string
		extra []string
		want  string // Consul's reason, in the error
	}{
		{"anonymous", nil, nil, "Permission denied"},
		{"unknown token", map[string]string{EnvConsulToken: "00000000-0000-4000-8000-000000000000"}, nil, "ACL not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runError(t, parse(t, clusterArgs(t, "acl-denied", agent.Addr, tt.extra...), tt.env))
			if !errors.Is(err, cluster.ErrConsulDenied) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want cluster.ErrConsulDenied with %q", err, tt.want)
			}
		})
	}
}

// TestRunConsulTLS runs nodes against real Consul agents serving their API
// over HTTPS with a certificate of a CA made for the test: with the CA
// file (and, where the agent verifies incoming connections, a client
// certificate of that CA) two nodes form a cluster and a room spans them;
// without the CA, with another CA, or without the client certificate Run
// fails at start with the TLS reason.
func TestRunConsulTLS(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	server := consultest.StartWith(t, "confab-tls", consultest.Options{TLS: true})
	mutual := consultest.StartWith(t, "confab-mtls", consultest.Options{VerifyIncoming: true})
	other := consultest.NewCA(t, "other CA")
	certPEM, keyPEM := mutual.CA.Issue(t, "confab node")
	serverCA := writeFile(t, "server-ca.pem", server.CA.CertPEM)
	mutualCA := writeFile(t, "mutual-ca.pem", mutual.CA.CertPEM)
	otherCA := writeFile(t, "other-ca.pem", other.CertPEM)
	clientCert := []string{"--consul-cert-file", writeFile(t, "cert.pem", certPEM), "--consul-key-file", writeFile(t, "key.pem", keyPEM)}

	tests := []struct {
		name  string
		agent *consultest.Agent
		extra []string
		want  string // "": a room spans two nodes; else in Run's error
	}{
		{"trusted CA", server, []string{"--consul-ca-file", serverCA}, ""},
		{"client certificate", mutual, append([]string{"--consul-ca-file", mutualCA}, clientCert...), ""},
		{"system roots", server, nil, "certificate signed by unknown authority"},
		{"other CA", server, []string{"--consul-ca-file", otherCA}, "certificate signed by unknown authority"},
		{"no client certificate", mutual, []string{"--consul-ca-file", mutualCA}, "certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			consul := "https://" + tt.agent.HTTPSAddr
			if tt.want == "" {
				a := parse(t, clusterArgs(t, "tls-a", consul, tt.extra...), nil)
				b := parse(t, clusterArgs(t, "tls-b", consul, tt.extra...), nil)
				roomSpans(t, a, b)
				return
			}
			err := runError(t, parse(t, clusterArgs(t, "tls-refused", consul, tt.extra...), nil))
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
