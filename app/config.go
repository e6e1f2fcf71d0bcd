package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"

	"github.com/confab/confab/cluster"
)

// Default values of the Config fields, as documented by `confab --help`.
const (
	DefaultHTTPAddr        = "127.0.0.1:8080"
	DefaultUDPPort         = 50000
	DefaultUDPIP           = "0.0.0.0"
	DefaultLogLevel        = "info"
	DefaultMaxParticipants = 100
	DefaultMaxRooms        = 10000
	// PlacementOn and PlacementOff are the values of --placement.
	PlacementOn  = "on"
	PlacementOff = "off"
	// DefaultDrainTimeout is how long a stopping node waits for its rooms
	// to empty after telling its clients to move (--drain-timeout).
	DefaultDrainTimeout = 30 * time.Second

	// MaxProtocolVersion is the newest signaling protocol version
	// (--max-protocol).
	MaxProtocolVersion = web.LatestProtocol

	// AuthOpen and AuthToken are the values of --auth.
	AuthOpen  = web.AuthOpen
	AuthToken = web.AuthToken

	// MinSecretLen is the minimum length of the cluster secret, matching what
	// package cluster requires of its HMAC key.
	MinSecretLen = 16

	// DefaultTURNPort is the embedded TURN server's UDP and TCP port
	// (--turn-port; the IANA port, unprivileged).
	DefaultTURNPort = 3478
	// DefaultTURNTLSPort is the TURN server's TLS port (--turn-tls-port).
	DefaultTURNTLSPort = 5349
	// DefaultTURNTTL is how long a TURN credential is valid (--turn-ttl).
	DefaultTURNTTL = time.Hour
	// TURNSecretEnv is the environment variable holding the TURN
	// credentials' key (the alternative to --turn-secret-file).
	TURNSecretEnv = EnvPrefix + "TURN_SECRET"
)

// Config is everything needed to run one confab node. It is produced by
// ParseConfig from flags and environment, or built directly by tests.
// Zero fields are filled by SetDefaults; Run calls SetDefaults and Validate
// itself, so callers may pass a partly filled Config.
type Config struct {
	// HTTPAddr is the host:port the HTTP server listens on (--http-addr).
	HTTPAddr string
	// UDPPort is the port of the single ICE UDP socket (--udp-port);
	// 0 picks an ephemeral port.
	UDPPort int
	// UDPIP is the IP the ICE UDP socket binds to (--udp-ip). Loopback
	// candidates are always gathered, so 0.0.0.0 works on a box with only lo.
	UDPIP string
	// PublicIPs are extra IPs advertised in ICE host candidates, for a node
	// behind 1:1 NAT (--public-ip, repeatable or comma separated).
	PublicIPs []string
	// LogLevel is one of debug, info, warn, error (--log-level).
	LogLevel string
	// NodeID names this node in logs, the page and the cluster (--node-id);
	// defaults to "node-" + the sanitized short hostname.
	NodeID string
	// ConsulAddr is the host:port of a Consul agent's HTTP API (--consul),
	// optionally prefixed with http:// or https:// (TLS). Empty means
	// single-node mode without a cluster.
	ConsulAddr string
	// AdvertiseAddr is the base URL other nodes use to reach this node's
	// control channel (--advertise-addr); defaults to http://<http-addr>,
	// with an unspecified host replaced by 127.0.0.1.
	AdvertiseAddr string
	// ClusterSecret is the shared HMAC key of the cluster
	// ($CONFAB_CLUSTER_SECRET or --cluster-secret-file, never argv);
	// required, at least MinSecretLen bytes, when ConsulAddr is set.
	ClusterSecret string
	// MaxParticipants is the per-room participant limit (--max-participants).
	MaxParticipants int
	// MaxParticipantsPerNode is the node's participant limit
	// (--max-participants-per-node; 0: none): placement sends newcomers
	// to other nodes beyond it, and refuses them ("node-full") only when
	// every node is full.
	MaxParticipantsPerNode int
	// Placement is PlacementOn (default: joins are placed on the node their
	// room belongs on) or PlacementOff (--placement).
	Placement string
	// MaxRooms is the per-node room limit (--max-rooms).
	MaxRooms int
	// AudioRED is "on" (default: a publisher that offers redundant audio,
	// RFC 2198, sends it) or "off" (Opus only; --audio-red).
	AudioRED string
	// FastWrite is "off" (default) or "on" (--fast-write): experimental,
	// subscriber media leaves through the engine's own SRTP context
	// straight to the UDP socket (sfu.Config.FastWrite).
	FastWrite string
	// MaxProtocol is the newest signaling protocol version the node
	// accepts (--max-protocol; 0 = the newest).
	MaxProtocol int
	// AllowedOrigins are extra Origin hosts allowed to open the signaling
	// WebSocket (--allowed-origin); the page's own host and the cluster's
	// nodes are always allowed.
	AllowedOrigins []string
	// DrainTimeout bounds the drain on shutdown (--drain-timeout): after
	// asking its clients to move, Run waits until the node has no rooms or
	// this much time has passed, then shuts down.
	DrainTimeout time.Duration
	// PprofAddr is the host:port of a separate listener serving the Go
	// runtime profiles under /debug/pprof/ (--pprof-addr). Empty (the
	// default) serves none. Bind it to loopback: profiles are not public.
	PprofAddr string
	// MetricsAddr is the host:port of a separate listener serving
	// Prometheus metrics at /metrics (--metrics-addr). Empty (the default)
	// serves none. Bind it to loopback or a private network.
	MetricsAddr string

	// Auth is AuthOpen (default: anyone may join any room) or AuthToken
	// (joins need an access token signed with a key of APIKeysFile;
	// docs/security.md).
	Auth string
	// APIKeysFile is the file of API keys that sign access tokens, one
	// "KEY_ID SECRET" pair per line (--api-keys-file); required with
	// AuthToken.
	APIKeysFile string
	// ConsulTokenFile names a file holding the Consul ACL token
	// (--consul-token-file; surrounding white space is ignored). At most
	// one of ConsulTokenFile and ConsulToken.
	ConsulTokenFile string
	// ConsulToken is the Consul ACL token itself, from $CONFAB_CONSUL_TOKEN
	// only: no flag takes a token.
	ConsulToken string
	// ConsulCAFile names a PEM file of the CAs the Consul agent's HTTPS
	// certificate must chain to (--consul-ca-file; default: the system's
	// roots). Needs an https:// ConsulAddr.
	ConsulCAFile string
	// ConsulCertFile and ConsulKeyFile name the PEM client certificate
	// and key the node presents to a Consul agent with verify_incoming
	// (--consul-cert-file, --consul-key-file). Both or neither.
	ConsulCertFile, ConsulKeyFile string
	// ClusterCIDRs, when not empty, restrict the node URLs read from
	// Consul, and AdvertiseAddr, to IP hosts inside these networks
	// (--cluster-cidr; see cluster.CheckNodeURL).
	ClusterCIDRs []netip.Prefix
	// MaxConns caps the node's open signaling WebSockets (--max-conns;
	// 0 = web.DefaultMaxConns).
	MaxConns int
	// MaxConnsPerIP caps the open signaling WebSockets per client address
	// (--max-conns-per-ip; 0 = web.DefaultMaxConnsPerIP). The address is
	// the TCP peer's: behind a reverse proxy, the proxy's.
	MaxConnsPerIP int
	// JoinTimeout is how long a signaling WebSocket may stay open without
	// joining (--join-timeout; 0 = web.DefaultJoinTimeout).
	JoinTimeout time.Duration
	// MaxPublishBitrate caps what one participant publishes, in bit/s
	// (--max-publish-bitrate; 0 = sfu.DefaultMaxPublishBitrate, negative:
	// no cap).
	MaxPublishBitrate int
	// FanoutWorkers is how many goroutines share one producer's fan-out
	// (--fanout-workers; 0 = GOMAXPROCS; 1: no sharding). See
	// sfu.Config.FanoutWorkers.
	FanoutWorkers int
	// FanoutShardMin is the least number of subscribers per shard of a
	// split fan-out (--fanout-shard-min; 0 = sfu.DefaultFanoutShardMin).
	FanoutShardMin int
	// Reach (docs/security.md, Reach).

	// ICETCP is "on" (default: the engine also listens on TCP at the UDP
	// port number and offers passive TCP candidates) or "off" (--ice-tcp).
	ICETCP string
	// TURNPort is the embedded TURN server's UDP and TCP port
	// (--turn-port); 0 runs no TURN server.
	TURNPort int
	// TURNTLSPort is the TURN server's TLS port (--turn-tls-port), used
	// when TURNCertFile and TURNKeyFile are set; 0 = ephemeral.
	TURNTLSPort int
	// TURNCertFile and TURNKeyFile are the PEM certificate and key of the
	// TURN server's TLS listener (--turn-cert-file, --turn-key-file).
	TURNCertFile string
	TURNKeyFile  string
	// TURNRelayIP is the relay address (--turn-relay-ip); default: the
	// first PublicIPs, else UDPIP if specific, else 127.0.0.1.
	TURNRelayIP string
	// TURNSecretFile holds the key of the TURN credentials
	// (--turn-secret-file).
	TURNSecretFile string
	// TURNSecret is the key of the TURN credentials from $CONFAB_TURN_SECRET
	// (never a flag). Without it and TURNSecretFile, Run picks a random key.
	TURNSecret string
	// TURNTTL is how long a TURN credential is valid (--turn-ttl).
	TURNTTL time.Duration
}

// SetDefaults fills every zero field with its default. UDPPort is not touched:
// 0 means an ephemeral port (handy in tests), and ParseConfig starts from
// DefaultConfig, which holds DefaultUDPPort.
func (c *Config) SetDefaults() {
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.UDPIP == "" {
		c.UDPIP = DefaultUDPIP
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.NodeID == "" {
		host, _ := os.Hostname()
		c.NodeID = DefaultNodeID(host)
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = defaultAdvertise(c.HTTPAddr)
	}
	if c.MaxParticipants == 0 {
		c.MaxParticipants = DefaultMaxParticipants
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = DefaultMaxRooms
	}
	if c.Placement == "" {
		c.Placement = PlacementOn
	}
	if c.AudioRED == "" {
		c.AudioRED = "on"
	}
	if c.FastWrite == "" {
		c.FastWrite = "off"
	}
	if c.Auth == "" {
		c.Auth = AuthOpen
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ICETCP == "" {
		c.ICETCP = "on"
	}
	if c.TURNTTL == 0 {
		c.TURNTTL = DefaultTURNTTL
	}
}

// DefaultConfig returns a Config holding every default that does not depend
// on other fields; SetDefaults fills the rest (NodeID, AdvertiseAddr).
func DefaultConfig() Config {
	return Config{
		HTTPAddr:        DefaultHTTPAddr,
		UDPPort:         DefaultUDPPort,
		UDPIP:           DefaultUDPIP,
		LogLevel:        DefaultLogLevel,
		MaxParticipants: DefaultMaxParticipants,
		MaxRooms:        DefaultMaxRooms,
		Placement:       PlacementOn,
		AudioRED:        "on",
		FastWrite:       "off",
		DrainTimeout:    DefaultDrainTimeout,
		Auth:            AuthOpen,

		ICETCP:      "on",
		TURNPort:    DefaultTURNPort,
		TURNTLSPort: DefaultTURNTLSPort,
		TURNTTL:     DefaultTURNTTL,
	}
}

// Validate reports the first invalid field as a one-line error naming its flag.
func (c *Config) Validate() error {
	if _, _, err := splitHostPort(c.HTTPAddr); err != nil {
		return flagError("http-addr", c.HTTPAddr, err)
	}
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		return flagError("udp-port", fmt.Sprint(c.UDPPort), errPortRange)
	}
	if net.ParseIP(c.UDPIP) == nil {
		return flagError("udp-ip", c.UDPIP, errNotIP)
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			return flagError("public-ip", ip, errNotIP)
		}
	}
	if _, err := parseLogLevel(c.LogLevel); err != nil {
		return flagError("log-level", c.LogLevel, err)
	}
	if !cluster.ValidNodeID(c.NodeID) {
		return flagError("node-id", c.NodeID, errNodeID)
	}
	if c.MaxParticipants < 1 {
		return flagError("max-participants", fmt.Sprint(c.MaxParticipants), errPositive)
	}
	if c.MaxParticipantsPerNode < 0 {
		return flagError("max-participants-per-node", fmt.Sprint(c.MaxParticipantsPerNode), errNonNegative)
	}
	if c.Placement != PlacementOn && c.Placement != PlacementOff {
		return flagError("placement", c.Placement, errOnOff)
	}
	if c.AudioRED != "on" && c.AudioRED != "off" {
		return flagError("audio-red", c.AudioRED, errOnOff)
	}
	if c.FastWrite != "on" && c.FastWrite != "off" {
		return flagError("fast-write", c.FastWrite, errOnOff)
	}
	if c.MaxProtocol < 0 || c.MaxProtocol > MaxProtocolVersion {
		return flagError("max-protocol", fmt.Sprint(c.MaxProtocol), fmt.Errorf("must be 1 to %d (0: %d)", MaxProtocolVersion, MaxProtocolVersion))
	}
	if c.MaxRooms < 1 {
		return flagError("max-rooms", fmt.Sprint(c.MaxRooms), errPositive)
	}
	if c.FanoutWorkers < 0 || c.FanoutWorkers > sfu.MaxFanoutWorkers {
		return flagError("fanout-workers", fmt.Sprint(c.FanoutWorkers), errFanoutWorkers)
	}
	if c.FanoutShardMin < 0 {
		return flagError("fanout-shard-min", fmt.Sprint(c.FanoutShardMin), errPositive)
	}
	if c.DrainTimeout <= 0 {
		return flagError("drain-timeout", c.DrainTimeout.String(), errDuration)
	}
	switch c.Auth {
	case AuthOpen:
	case AuthToken:
		if c.APIKeysFile == "" {
			return errors.New("flag --auth token needs --api-keys-file (one \"KEY_ID SECRET\" pair per line)")
		}
		if c.MaxProtocol != 0 && c.MaxProtocol < web.TokenProtocol {
			return fmt.Errorf("flag --auth token needs --max-protocol %d or newer (access tokens came with version %d)", web.TokenProtocol, web.TokenProtocol)
		}
	default:
		return flagError("auth", c.Auth, errAuth)
	}
	if c.PprofAddr != "" {
		host, _, err := splitHostPort(c.PprofAddr)
		if err != nil {
			return flagError("pprof-addr", c.PprofAddr, err)
		}
		if !loopbackHost(host) {
			return flagError("pprof-addr", c.PprofAddr, errLoopback)
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := splitHostPort(c.MetricsAddr); err != nil {
			return flagError("metrics-addr", c.MetricsAddr, err)
		}
	}
	for _, o := range c.AllowedOrigins {
		if o == "" || strings.ContainsAny(o, " \t\r\n,") {
			return flagError("allowed-origin", o, errOrigin)
		}
	}
	if err := c.validateConsul(); err != nil {
		return err
	}
	if err := c.validateReach(); err != nil {
		return err
	}
	if c.ConsulAddr != "" {
		if err := checkAdvertise(c.AdvertiseAddr); err != nil {
			return flagError("advertise-addr", c.AdvertiseAddr, err)
		}
		if err := cluster.CheckNodeURL(c.AdvertiseAddr, c.ClusterCIDRs); err != nil {
			return flagError("advertise-addr", c.AdvertiseAddr, err)
		}
		if len(c.ClusterSecret) < MinSecretLen {
			return fmt.Errorf("cluster secret ($CONFAB_CLUSTER_SECRET or --cluster-secret-file): must be at least %d bytes when --consul is set", MinSecretLen)
		}
		if exampleSecret(c.ClusterSecret) {
			return errors.New("cluster secret ($CONFAB_CLUSTER_SECRET or --cluster-secret-file): this secret is a published example or trivially guessable; generate one, e.g. openssl rand -hex 32")
		}
	}
	return c.validateAdmission()
}

// UDPAddr is the host:port the engine's ICE UDP socket binds to.
func (c *Config) UDPAddr() string {
	return net.JoinHostPort(c.UDPIP, fmt.Sprint(c.UDPPort))
}

// DefaultNodeID derives a node id from a host name: "node-" followed by the
// short host name (up to the first dot), lower-cased, with every character
// outside [a-z0-9-] replaced by '-'. An empty host name gives "node-local".
func DefaultNodeID(hostname string) string {
	short, _, _ := strings.Cut(hostname, ".")
	var b strings.Builder
	for _, r := range strings.ToLower(short) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	if s == "" {
		s = "local"
	}
	return "node-" + s
}

// defaultAdvertise turns the HTTP listen address into a URL other nodes can
// dial; an empty or unspecified host becomes 127.0.0.1.
func defaultAdvertise(httpAddr string) string {
	host, port, err := splitHostPort(httpAddr)
	if err != nil {
		return "http://" + httpAddr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// loopbackHost reports whether host (from host:port) names only the
// loopback interface: "localhost" or a loopback IP.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkAdvertise accepts absolute http(s) URLs with a host.
func checkAdvertise(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errURL
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errURL
	}
	return nil
}

// splitHostPort is net.SplitHostPort plus a numeric port range check.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", errHostPort
	}
	if _, err := parsePort(port); err != nil {
		return "", "", err
	}
	return host, port, nil
}

// parseLogLevel maps the --log-level names to slog levels.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errLogLevel
}

// validateReach checks the ICE-TCP and TURN fields.
func (c *Config) validateReach() error {
	if c.ICETCP != "on" && c.ICETCP != "off" {
		return flagError("ice-tcp", c.ICETCP, errOnOff)
	}
	if c.TURNPort < 0 || c.TURNPort > 65535 {
		return flagError("turn-port", fmt.Sprint(c.TURNPort), errPortRange)
	}
	if c.TURNTLSPort < 0 || c.TURNTLSPort > 65535 {
		return flagError("turn-tls-port", fmt.Sprint(c.TURNTLSPort), errPortRange)
	}
	if (c.TURNCertFile == "") != (c.TURNKeyFile == "") {
		return errors.New("flags --turn-cert-file and --turn-key-file: give both or neither")
	}
	if c.TURNRelayIP != "" && net.ParseIP(c.TURNRelayIP) == nil {
		return flagError("turn-relay-ip", c.TURNRelayIP, errNotIP)
	}
	if c.TURNSecretFile != "" && c.TURNSecret != "" {
		return fmt.Errorf("flag --turn-secret-file and $%s: give one of them", TURNSecretEnv)
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < MinSecretLen {
		return fmt.Errorf("$%s: must be at least %d bytes", TURNSecretEnv, MinSecretLen)
	}
	if c.TURNTTL <= 0 {
		return flagError("turn-ttl", c.TURNTTL.String(), errDuration)
	}
	return nil
}
