package consultest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStart: an agent starts, answers with a leader, and is gone after the
// test's cleanup.
func TestStart(t *testing.T) {
	var addr string
	t.Run("agent", func(t *testing.T) {
		a := Start(t, "consultest")
		addr = a.Addr
		res, err := http.Get("http://" + a.Addr + "/v1/status/leader")
		if err != nil {
			t.Fatalf("leader: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || len(b) < 3 {
			t.Fatalf("leader: %d %q", res.StatusCode, b)
		}
	})
	if res, err := http.Get("http://" + addr + "/v1/status/leader"); err == nil {
		res.Body.Close()
		t.Fatalf("the agent on %s still answers after the test", addr)
	}
}

// TestStartWith: each option gives the agent it promises: ACLs that deny
// the anonymous token and honour the management token and the tokens
// CreateToken makes; an HTTPS API trusting only the test's CA; client
// certificates required with VerifyIncoming.
func TestStartWith(t *testing.T) {
	t.Run("acl", func(t *testing.T) {
		a := StartWith(t, "consultest-acl", Options{ACL: true})
		if a.ManagementToken == "" || a.HTTPSAddr != "" || a.CA != nil {
			t.Fatalf("agent = %+v, want a management token and no TLS", a)
		}
		reader := a.CreateToken(t, "reader", `key_prefix "allowed/" { policy = "read" }`)
		client := &http.Client{Timeout: 5 * time.Second}
		defer client.CloseIdleConnections()
		tests := []struct {
			name, token, key string
			want             int
		}{
			{"anonymous", "", "allowed/x", http.StatusForbidden},
			{"unknown token", "00000000-0000-4000-8000-000000000000", "allowed/x", http.StatusForbidden},
			{"management", a.ManagementToken, "other/x", http.StatusNotFound},
			{"policy allows", reader, "allowed/x", http.StatusNotFound},
			{"policy denies", reader, "other/x", http.StatusForbidden},
		}
		for _, tt := range tests {
			if _, got := get(client, "http://"+a.Addr+"/v1/kv/"+tt.key, tt.token); got != tt.want {
				t.Errorf("%s: GET %s = %d, want %d", tt.name, tt.key, got, tt.want)
			}
		}
	})

	t.Run("tls", func(t *testing.T) {
		a := StartWith(t, "consultest-tls", Options{TLS: true})
		b := StartWith(t, "consultest-mtls", Options{VerifyIncoming: true})
		other := NewCA(t, "other CA")
		cert, key := b.CA.Issue(t, "client")
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name   string
			agent  *Agent
			ca     *CA
			client []tls.Certificate
			wantOK bool
		}{
			{"trusted CA", a, a.CA, nil, true},
			{"other CA", a, other, nil, false},
			{"client certificate", b, b.CA, []tls.Certificate{pair}, true},
			{"no client certificate", b, b.CA, nil, false},
		}
		for _, tt := range tests {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(tt.ca.CertPEM)
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: tt.client},
			}}
			_, status := get(client, "https://"+tt.agent.HTTPSAddr+"/v1/status/leader", "")
			client.CloseIdleConnections()
			if ok := status == http.StatusOK; ok != tt.wantOK {
				t.Errorf("%s: HTTPS status %d, want success %v", tt.name, status, tt.wantOK)
			}
		}
	})
}

// fatalTB records a fatal failure and the cleanups of a StartWith call
// run on its own goroutine (Fatalf ends that goroutine, as testing does).
type fatalTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// TestStartAgentDies: an agent that exits at once fails the start with
// that reason, and the cleanup returns (it used to wait forever for an
// exit the readiness wait had already consumed).
func TestStartAgentDies(t *testing.T) {
	t.Setenv("CONFAB_CONSUL_BIN", "/bin/false")
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartWith(f, "dies", Options{})
	}()
	<-done
	if !strings.Contains(f.fatal, "agent exited") {
		t.Fatalf("StartWith failed with %q, want the agent's exit", f.fatal)
	}
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		for i := len(f.cleanups) - 1; i >= 0; i-- {
			f.cleanups[i]()
		}
	}()
	select {
	case <-cleaned:
	case <-time.After(10 * time.Second):
		t.Fatal("the cleanup of a dead agent did not return")
	}
}
