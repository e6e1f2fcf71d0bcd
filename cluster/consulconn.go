package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// consulTokenHeader carries the ACL token of a Consul request.
const consulTokenHeader = "X-Consul-Token"

// ConsulTLS is the TLS material of a node's connection to an https://
// Consul address, in PEM form (package app reads it from files). The zero
// value verifies the agent's certificate against the system's roots and
// presents no client certificate.
type ConsulTLS struct {
	// CA holds the certificates of the authorities the agent's
	// certificate must chain to; empty: the system's roots.
	CA []byte
	// Cert and Key are the node's client certificate and its private key,
	// for agents configured with verify_incoming. Both or neither.
	Cert, Key []byte
}

// empty reports whether t holds no material.
func (t ConsulTLS) empty() bool { return len(t.CA) == 0 && len(t.Cert) == 0 && len(t.Key) == 0 }

// Validate reports the first unusable part of t as a short one-line
// error (Config.Validate wraps it in ErrInvalidConfig).
func (t ConsulTLS) Validate() error {
	_, err := t.config()
	return err
}

// config builds the client TLS configuration (TLS 1.2 or newer).
func (t ConsulTLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(t.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CA) {
			return nil, errors.New("consul CA: no PEM certificate found")
		}
		cfg.RootCAs = pool
	}
	switch {
	case len(t.Cert) > 0 && len(t.Key) > 0:
		pair, err := tls.X509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, errors.New("consul client certificate and key: " + err.Error())
		}
		cfg.Certificates = []tls.Certificate{pair}
	case len(t.Cert) > 0 || len(t.Key) > 0:
		return nil, errors.New("consul client certificate and key must be given together")
	}
	return cfg, nil
}

// validToken reports whether s can be sent as an HTTP header value: printable
// ASCII without spaces (Consul's tokens are UUIDs).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// isDenied reports whether err is Consul refusing a request for its ACL
// token: HTTP 403, "ACL not found" (unknown token) or "Permission denied"
// (the token's policies lack a rule).
func isDenied(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden
}

// DefaultConsulMaxConns bounds the TCP connections a node opens to its
// Consul agent, whatever the number of rooms, producers and nodes. Consul
// refuses more than limits.http_max_conns_per_client (200 by default) per
// client address; a node holds two long-lived blocking queries (directory
// and health), and the rest are short requests that queue for a free
// connection.
const DefaultConsulMaxConns = 8

// ConsulStats are counters of a node's traffic with Consul, for metrics and
// load reports.
type ConsulStats struct {
	// Requests is the number of HTTP requests sent to Consul.
	Requests uint64
	// Errors is the number of those that failed (transport error, or an
	// answer with status 429 or 5xx).
	Errors uint64
	// Writes, Reads and Watches split Requests: KV writes and
	// transactions; one-shot KV reads; blocking queries (a request with a
	// wait index). The rest (sessions, service registration) is
	// Requests - Writes - Reads - Watches.
	Writes, Reads, Watches uint64
	// OpenConns is the number of TCP connections to Consul now open.
	OpenConns int64
	// MaxOpenConns is the highest OpenConns seen since the node was created.
	MaxOpenConns int64
	// SyncLatency is how long the last room change announced by another
	// node took to reach this node (sender's clock to receiver's clock;
	// 0 before the first). It is the control plane's propagation delay.
	SyncLatency time.Duration
}

// consulCounters counts requests and connections of one registry. Safe for
// concurrent use.
type consulCounters struct {
	requests atomic.Uint64
	errors   atomic.Uint64
	writes   atomic.Uint64
	reads    atomic.Uint64
	watches  atomic.Uint64
	open     atomic.Int64
	maxOpen  atomic.Int64
}

func (c *consulCounters) connOpened() {
	n := c.open.Add(1)
	for {
		m := c.maxOpen.Load()
		if n <= m || c.maxOpen.CompareAndSwap(m, n) {
			return
		}
	}
}

// countingConn decrements the open count once when closed.
type countingConn struct {
	net.Conn
	once sync.Once
	c    *consulCounters
}

func (cc *countingConn) Close() error {
	cc.once.Do(func() { cc.c.open.Add(-1) })
	return cc.Conn.Close()
}

// dialer returns a DialContext that counts open connections.
func (c *consulCounters) dialer(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c.connOpened()
		return &countingConn{Conn: conn, c: c}, nil
	}
}

// countingTransport counts requests and failed answers. It also makes the
// node's token the only one sent: the Consul client falls back to
// CONSUL_HTTP_TOKEN when given none, and package cluster reads no
// environment.
type countingTransport struct {
	next  http.RoundTripper
	c     *consulCounters
	token string
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get(consulTokenHeader) != t.token {
		req = req.Clone(req.Context())
		if t.token == "" {
			req.Header.Del(consulTokenHeader)
		} else {
			req.Header.Set(consulTokenHeader, t.token)
		}
	}
	t.c.requests.Add(1)
	switch p := req.URL.Path; {
	case req.Method == http.MethodGet && req.URL.Query().Get("index") != "":
		t.c.watches.Add(1)
	case p == "/v1/txn" || (strings.HasPrefix(p, "/v1/kv/") && req.Method != http.MethodGet):
		t.c.writes.Add(1)
	case strings.HasPrefix(p, "/v1/kv/"):
		t.c.reads.Add(1)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		t.c.errors.Add(1)
	}
	return resp, err
}

// ConsulStats returns the node's Consul counters.
func (n *Node) ConsulStats() ConsulStats {
	c := &n.reg.counters
	return ConsulStats{
		Requests:     c.requests.Load(),
		Errors:       c.errors.Load(),
		Writes:       c.writes.Load(),
		Reads:        c.reads.Load(),
		Watches:      c.watches.Load(),
		OpenConns:    c.open.Load(),
		MaxOpenConns: c.maxOpen.Load(),
		SyncLatency:  time.Duration(n.syncLatency.Load()),
	}
}
