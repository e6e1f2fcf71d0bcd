package cluster

import (
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"time"
)

// Defaults and limits of Config.
const (
	// DefaultSessionTTL is the TTL of the node's Consul session. Consul
	// invalidates a session between TTL and 2*TTL after its last renewal.
	DefaultSessionTTL = 10 * time.Second
	// MinSessionTTL and MaxSessionTTL are the bounds Consul accepts.
	MinSessionTTL = 10 * time.Second
	MaxSessionTTL = 24 * time.Hour
	// DefaultWatchWait bounds one Consul blocking query.
	DefaultWatchWait = 30 * time.Second
	// DefaultConsulTimeout bounds every non-blocking Consul request.
	DefaultConsulTimeout = 5 * time.Second
	// DefaultMaxBackoff caps the delay between retries of failed Consul
	// requests.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultReconcileInterval is how often each open room is compared
	// with Consul.
	DefaultReconcileInterval = 2 * time.Minute
	// DefaultReconcileRate bounds room reads per second.
	DefaultReconcileRate = 50
	// DefaultSyncInterval is the anti-entropy period between nodes.
	DefaultSyncInterval = 30 * time.Second
	// DefaultHealthCheckInterval is the Consul check interval of a node.
	DefaultHealthCheckInterval = 2 * time.Second
	// DefaultLoadInterval is the least time between load rewrites of the
	// node record.
	DefaultLoadInterval = time.Second
	// MinSecretLen is the minimum length of Config.Secret in bytes.
	MinSecretLen = 16
)

// nodeIDPattern is the alphabet of node ids (see ValidNodeID). Node ids appear in KV keys, Consul service ids and
// URLs.
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// ValidNodeID reports whether id is a valid node id: 1-63 letters, digits,
// '.', '_' or '-', starting with a letter or digit. Package app checks
// --node-id with it, so single-node and cluster mode accept the same ids.
func ValidNodeID(id string) bool { return nodeIDPattern.MatchString(id) }

// Config configures a Consul-backed Node. Fill it, then New applies
// SetDefaults and Validate.
type Config struct {
	// NodeID is this node's stable id; it must equal the engine's NodeID and
	// be unique in the cluster (two live processes with the same id fight
	// over the same KV records). Required.
	NodeID string
	// ConsulAddr is the host:port of a Consul agent's HTTP API, optionally
	// prefixed with http:// or https://; https:// selects TLS (see
	// ConsulTLS). Required.
	ConsulAddr string
	// AdvertiseURL is the base URL other nodes use for the control channel,
	// e.g. "http://10.0.0.5:8080"; the control routes live under
	// AdvertiseURL+"/cluster/", the health check is AdvertiseURL+"/healthz".
	// Required, http or https.
	AdvertiseURL string
	// Secret is the shared cluster secret (HMAC key of the control
	// channel). Required, at least MinSecretLen bytes.
	Secret string
	// SessionTTL is the Consul session TTL; default DefaultSessionTTL.
	SessionTTL time.Duration
	// Version is recorded in the node record (informational).
	Version string
	// Logger receives the package's logs; default slog.Default().
	Logger *slog.Logger

	// WatchWait bounds one blocking query; default DefaultWatchWait.
	WatchWait time.Duration
	// ConsulTimeout bounds every other Consul request; default
	// DefaultConsulTimeout.
	ConsulTimeout time.Duration
	// MaxBackoff caps retry delays; default DefaultMaxBackoff.
	MaxBackoff time.Duration

	// ConsulMaxConns bounds the node's TCP connections to Consul; default
	// DefaultConsulMaxConns. It must be at least 4 (two blocking queries,
	// the writer and the session renewal).
	ConsulMaxConns int
	// ReconcileInterval is how often each open room is compared with what
	// Consul holds (a one-shot read, spread over the interval and rate
	// limited by ReconcileRate); default DefaultReconcileInterval.
	ReconcileInterval time.Duration
	// ReconcileRate bounds the reconciliation reads per second (the first
	// read of an opening room does not wait for it); default
	// DefaultReconcileRate.
	ReconcileRate float64
	// SyncInterval is how often a node sends every other node it shares
	// rooms with its full state of those rooms (anti-entropy); default
	// DefaultSyncInterval.
	SyncInterval time.Duration
	// HealthCheckInterval is the interval of the Consul HTTP check of the
	// node's service; a node whose check turns critical is probed and, if
	// it does not answer, dropped. Default DefaultHealthCheckInterval.
	HealthCheckInterval time.Duration
	// LoadInterval is the least time between two rewrites of the node
	// record for a changed load; default DefaultLoadInterval.
	LoadInterval time.Duration

	// MaxParticipants is the number of local participants above which
	// Place sends newcomers to other nodes (0: no limit).
	MaxParticipants int

	// ConsulToken is the Consul ACL token sent with every request (header
	// X-Consul-Token); empty sends none (the agent's anonymous token
	// applies). Consul's own environment variables (CONSUL_HTTP_TOKEN and
	// the like) are never consulted.
	ConsulToken string
	// ConsulTLS is the TLS material for an https:// ConsulAddr; it must be
	// empty for a plain HTTP address.
	ConsulTLS ConsulTLS
	// AllowedCIDRs, when not empty, restrict the node URLs read from
	// Consul (and this node's AdvertiseURL) to IP literals inside one of
	// these networks; see CheckNodeURL. Empty: any host.
	AllowedCIDRs []netip.Prefix
}

// SetDefaults fills the zero optional fields with their defaults.
func (c *Config) SetDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.WatchWait == 0 {
		c.WatchWait = DefaultWatchWait
	}
	if c.ConsulTimeout == 0 {
		c.ConsulTimeout = DefaultConsulTimeout
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ConsulMaxConns == 0 {
		c.ConsulMaxConns = DefaultConsulMaxConns
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.ReconcileRate == 0 {
		c.ReconcileRate = DefaultReconcileRate
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = DefaultSyncInterval
	}
	if c.HealthCheckInterval == 0 {
		c.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if c.LoadInterval == 0 {
		c.LoadInterval = DefaultLoadInterval
	}
}

// Validate reports the first invalid field, wrapping ErrInvalidConfig. It
// expects SetDefaults to have run.
func (c *Config) Validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if !nodeIDPattern.MatchString(c.NodeID) {
		return invalid("node id %q must match %s", c.NodeID, nodeIDPattern)
	}
	if c.ConsulAddr == "" {
		return invalid("consul address is required")
	}
	if strings.Contains(c.ConsulAddr, "://") && !strings.HasPrefix(c.ConsulAddr, "http://") && !strings.HasPrefix(c.ConsulAddr, "https://") {
		return invalid("consul address %q: the scheme must be http:// or https://", c.ConsulAddr)
	}
	if !strings.HasPrefix(c.ConsulAddr, "https://") && !c.ConsulTLS.empty() {
		return invalid("consul TLS material needs an https:// consul address, not %q", c.ConsulAddr)
	}
	if err := c.ConsulTLS.Validate(); err != nil {
		return invalid("%v", err)
	}
	if !validToken(c.ConsulToken) {
		return invalid("consul token must be printable ASCII without spaces")
	}
	for _, p := range c.AllowedCIDRs {
		if !p.IsValid() {
			return invalid("allowed CIDR %s is not valid", p)
		}
	}
	if err := CheckNodeURL(c.AdvertiseURL, c.AllowedCIDRs); err != nil {
		return invalid("advertise url %q: %v", c.AdvertiseURL, err)
	}
	if len(c.Secret) < MinSecretLen {
		return invalid("secret must be at least %d bytes", MinSecretLen)
	}
	if c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL {
		return invalid("session ttl %s must be between %s and %s", c.SessionTTL, MinSessionTTL, MaxSessionTTL)
	}
	if c.WatchWait < time.Second {
		return invalid("watch wait %s must be at least 1s", c.WatchWait)
	}
	if c.ConsulTimeout <= 0 {
		return invalid("consul timeout must be positive")
	}
	if c.MaxBackoff <= 0 {
		return invalid("max backoff must be positive")
	}
	if c.ConsulMaxConns < 4 {
		return invalid("consul max conns %d must be at least 4", c.ConsulMaxConns)
	}
	if c.ReconcileInterval < time.Second || c.SyncInterval < time.Second || c.HealthCheckInterval < time.Second {
		return invalid("reconcile, sync and health check intervals must be at least 1s")
	}
	if c.ReconcileRate <= 0 {
		return invalid("reconcile rate must be positive")
	}
	if c.LoadInterval <= 0 {
		return invalid("load interval must be positive")
	}
	if c.MaxParticipants < 0 {
		return invalid("max participants must not be negative")
	}
	return nil
}
