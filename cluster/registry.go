package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul service registration.
const (
	serviceName       = "confab"
	serviceDeregister = "1m"
	healthPath        = "/healthz"
)

// registry wraps the Consul API calls of one node: sessions (session.go),
// KV (this file and kv.go), blocking queries (watch.go) and the service
// registration. Every call is bounded by ctx and the configured timeout.
// It holds no mutable state besides the HTTP transport and is safe for
// concurrent use.
type registry struct {
	client    *api.Client
	kv        *api.KV
	transport *http.Transport
	counters  consulCounters
	nodeID    string
	timeout   time.Duration
	ttl       time.Duration
	// reads bounds concurrent one-shot reads (room reads), so that they
	// never take every connection from the writer and the watches.
	reads chan struct{}
	// checkInterval is the interval of the service's HTTP check.
	checkInterval time.Duration
}

// newRegistry creates the Consul client of node nodeID. It performs no I/O.
func newRegistry(cfg Config) (*registry, error) {
	maxConns := cfg.ConsulMaxConns
	if maxConns <= 0 {
		maxConns = DefaultConsulMaxConns
	}
	r := &registry{nodeID: cfg.NodeID, timeout: cfg.ConsulTimeout, ttl: cfg.SessionTTL,
		reads: make(chan struct{}, max(1, maxConns/2)), checkInterval: cfg.HealthCheckInterval}
	if r.checkInterval <= 0 {
		r.checkInterval = DefaultHealthCheckInterval
	}
	transport := &http.Transport{
		Proxy:                 nil,
		DialContext:           r.counters.dialer(cfg.ConsulTimeout),
		MaxConnsPerHost:       maxConns, // the hard bound: requests beyond it wait for a free connection
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // blocking queries legitimately wait; contexts bound every call
		ForceAttemptHTTP2:     false,
	}
	addr := cfg.ConsulAddr
	scheme := "http"
	if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		addr = rest
	} else if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		addr, scheme = rest, "https"
		tlsCfg, err := cfg.ConsulTLS.config()
		if err != nil {
			return nil, fmt.Errorf("cluster: consul client: %w", err)
		}
		transport.TLSClientConfig = tlsCfg
	}
	client, err := api.NewClient(&api.Config{
		Address:    addr,
		Scheme:     scheme,
		Token:      cfg.ConsulToken,
		Transport:  transport,
		HttpClient: &http.Client{Transport: &countingTransport{next: transport, c: &r.counters, token: cfg.ConsulToken}},
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: consul client: %w", err)
	}
	r.client, r.kv, r.transport = client, client.KV(), transport
	return r, nil
}

// close releases idle connections. Calls in flight are not affected.
func (r *registry) close() { r.transport.CloseIdleConnections() }

// bound returns ctx limited to the registry's request timeout.
func (r *registry) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *registry) writeOpts(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// acquire writes value at key held by session. It returns an error wrapping
// ErrKeyHeld when another session holds the key (or the key is in its lock
// delay), and ErrSessionLost when Consul reports the session invalid.
func (r *registry) acquire(ctx context.Context, key string, value []byte, session string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	ok, _, err := r.kv.Acquire(&api.KVPair{Key: key, Value: value, Session: session}, r.writeOpts(ctx))
	if err != nil {
		if isInvalidSession(err) {
			return fmt.Errorf("cluster: acquire %s: %w", key, ErrSessionLost)
		}
		return fmt.Errorf("cluster: acquire %s: %w", key, err)
	}
	if !ok {
		return fmt.Errorf("cluster: acquire %s: %w", key, ErrKeyHeld)
	}
	return nil
}

// isInvalidSession recognises Consul's answer to a write with a session that
// does not exist (HTTP 500 "invalid session ...").
func isInvalidSession(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "invalid session")
}

// delete removes key (whoever holds it).
func (r *registry) delete(ctx context.Context, key string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if _, err := r.kv.Delete(key, r.writeOpts(ctx)); err != nil {
		return fmt.Errorf("cluster: delete %s: %w", key, err)
	}
	return nil
}

// maxTxnOps is the most operations one Consul transaction may carry.
const maxTxnOps = 64

// errTxnRefused: Consul refused a transaction (one of its operations
// failed, so none was applied); the caller retries the operations one by
// one to find out which.
var errTxnRefused = errors.New("cluster: consul refused the transaction")

// applyTxn applies up to maxTxnOps writes in one Consul transaction: a
// value is acquired with session, a nil value deleted. All or nothing.
func (r *registry) applyTxn(ctx context.Context, ops []kvOp, session string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	txn := make(api.TxnOps, 0, len(ops))
	for _, op := range ops {
		if op.Value == nil {
			txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: op.Key}})
			continue
		}
		txn = append(txn, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVLock, Key: op.Key, Value: op.Value, Session: session}})
	}
	ok, resp, _, err := r.client.Txn().Txn(txn, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if isInvalidSession(err) {
			return fmt.Errorf("cluster: transaction: %w", ErrSessionLost)
		}
		return fmt.Errorf("cluster: transaction: %w", err)
	}
	if !ok {
		why := ""
		if resp != nil && len(resp.Errors) > 0 {
			why = resp.Errors[0].What
		}
		return fmt.Errorf("%w: %s", errTxnRefused, why)
	}
	return nil
}

// listBounded is list for one-shot reads that may come in bulk (room
// reads): at most cap(r.reads) run at once.
func (r *registry) listBounded(ctx context.Context, prefix string) (api.KVPairs, error) {
	select {
	case r.reads <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.reads }()
	pairs, _, err := r.list(ctx, prefix)
	return pairs, err
}

// list reads every pair under prefix (not blocking).
func (r *registry) list(ctx context.Context, prefix string) (api.KVPairs, uint64, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	pairs, meta, err := r.kv.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: list %s: %w", prefix, err)
	}
	return pairs, meta.LastIndex, nil
}

// clearNode deletes every record of node from an earlier life: its node
// record, its room records and its producer records. Keys still held by a
// stale session are deleted too (a delete ignores locks, and deleting does
// not start a lock delay). It returns the keys it deleted.
func (r *registry) clearNode(ctx context.Context, node string) ([]string, error) {
	pairs, _, err := r.list(ctx, kvRoot)
	if err != nil {
		return nil, fmt.Errorf("cluster: clear stale records: %w", err)
	}
	var stale []string
	for _, p := range pairs {
		if id, ok := parseNodeKey(p.Key); ok && id == node {
			stale = append(stale, p.Key)
		} else if k, ok := parseRoomKey(p.Key); ok && k.Node == node {
			stale = append(stale, p.Key)
		}
	}
	for i, k := range stale {
		if err := r.delete(ctx, k); err != nil {
			return stale[:i], fmt.Errorf("cluster: clear stale records: %w", err)
		}
	}
	return stale, nil
}

// registerService registers the node as Consul service "confab" with an HTTP
// check on advertiseURL+"/healthz". Idempotent.
func (r *registry) registerService(ctx context.Context, advertiseURL, version string) error {
	u, err := url.Parse(advertiseURL)
	if err != nil {
		return fmt.Errorf("cluster: register service: %w", err)
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return fmt.Errorf("cluster: register service: bad port in %q: %w", advertiseURL, err)
		}
	}
	ctx, cancel := r.bound(ctx)
	defer cancel()
	reg := &api.AgentServiceRegistration{
		ID:      serviceID(r.nodeID),
		Name:    serviceName,
		Address: u.Hostname(),
		Port:    port,
		Meta:    map[string]string{"node": r.nodeID, "url": advertiseURL, "version": version},
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + serviceID(r.nodeID),
			Name:                           "confab " + r.nodeID + " healthz",
			HTTP:                           advertiseURL + healthPath,
			Interval:                       r.checkInterval.String(),
			Timeout:                        min(r.checkInterval/2, 2*time.Second).String(),
			DeregisterCriticalServiceAfter: serviceDeregister,
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
	if err := r.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("cluster: register service: %w", err)
	}
	return nil
}

// deregisterService removes the node's service from the local agent.
func (r *registry) deregisterService(ctx context.Context) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if err := r.client.Agent().ServiceDeregisterOpts(serviceID(r.nodeID), (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("cluster: deregister service: %w", err)
	}
	return nil
}

func serviceID(node string) string { return "confab-" + node }

// setMaintenance puts the node's service into Consul maintenance mode
// (enable: its health becomes critical with reason, so service discovery
// and load balancers skip it) or takes it out again.
func (r *registry) setMaintenance(ctx context.Context, enable bool, reason string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	var err error
	if enable {
		err = r.client.Agent().EnableServiceMaintenanceOpts(serviceID(r.nodeID), reason, q)
	} else {
		err = r.client.Agent().DisableServiceMaintenanceOpts(serviceID(r.nodeID), q)
	}
	if err != nil {
		return fmt.Errorf("cluster: service maintenance %v: %w", enable, err)
	}
	return nil
}

// consulHealth tracks which background activities (writer, session renewal,
// each watch) currently fail, so that Ready and Status can report the
// connection's health, and so that the node logs once per state change of
// the whole connection — "consul unreachable" when the first activity
// starts failing, "consul reachable again" when the last one recovers —
// rather than once per retry or per activity (those go to debug).
type consulHealth struct {
	log     *slog.Logger
	mu      sync.Mutex
	failing map[string]error
	last    error
	since   time.Time // when the current failure period began
}

func newConsulHealth(log *slog.Logger) *consulHealth {
	return &consulHealth{log: log, failing: make(map[string]error)}
}

// fail records that activity failed with err.
func (h *consulHealth) fail(activity string, err error) {
	h.mu.Lock()
	_, was := h.failing[activity]
	first := len(h.failing) == 0
	h.failing[activity] = err
	h.last = err
	if first {
		h.since = time.Now()
	}
	h.mu.Unlock()
	switch {
	case first:
		h.log.Warn("consul trouble: serving existing rooms and links, retrying with backoff", "activity", activity, "err", err)
	case !was:
		h.log.Debug("consul trouble in another activity", "activity", activity, "err", err)
	}
}

// ok records that activity succeeded.
func (h *consulHealth) ok(activity string) {
	h.mu.Lock()
	_, was := h.failing[activity]
	delete(h.failing, activity)
	recovered := was && len(h.failing) == 0
	since := h.since
	h.mu.Unlock()
	switch {
	case recovered:
		h.log.Info("consul recovered", "activity", activity, "after", time.Since(since).Round(time.Millisecond))
	case was:
		h.log.Debug("consul activity recovered", "activity", activity)
	}
}

// forget drops activity (it ended) without logging.
func (h *consulHealth) forget(activity string) {
	h.mu.Lock()
	delete(h.failing, activity)
	h.mu.Unlock()
}

// state reports whether nothing fails and, if something does, the last error.
func (h *consulHealth) state() (healthy bool, lastErr error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return true, nil
	}
	return false, h.last
}

// backoff computes capped exponential delays with jitter.
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the delay before the next retry: min*2^attempt capped at max,
// jittered to a value in [d/2, d).
func (b *backoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.attempt && d < b.max; i++ {
		d *= 2
	}
	if d > b.max {
		d = b.max
	}
	b.attempt++
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half)
}

// reset starts the sequence again.
func (b *backoff) reset() { b.attempt = 0 }

// sleepCtx waits d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errIsContext reports whether err stems from a cancelled or expired context.
func errIsContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
