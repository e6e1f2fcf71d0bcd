package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

// EnvPrefix prefixes the environment variable of every flag: --foo-bar is
// also read from CONFAB_FOO_BAR.
const EnvPrefix = "CONFAB_"

// flagSpec describes one command-line flag: its name, how it is shown in
// --help, the environment variables it is also read from, and how a raw
// string value is applied to a Config.
type flagSpec struct {
	name   string
	arg    string // placeholder shown in usage, e.g. "host:port"
	usage  string
	def    func(c Config) string // default shown in usage; nil = none
	env    []string              // extra env names besides CONFAB_<NAME>
	list   bool                  // repeatable and comma separated
	apply  func(c *Config, v string) error
	values []string // raw values seen on the command line, in order
	set    bool     // given on the command line
	// envOnly refuses the flag on the command line (secrets: argv is
	// visible to every local user in ps and /proc).
	envOnly bool
}

// String implements flag.Value.
func (f *flagSpec) String() string { return strings.Join(f.values, ",") }

// Set implements flag.Value; it only records the raw value, conversion happens
// after parsing so that flag and environment values share one code path.
func (f *flagSpec) Set(v string) error {
	if !f.list {
		f.values = f.values[:0]
	}
	f.values = append(f.values, v)
	f.set = true
	return nil
}

// envNames lists the environment variables a flag is read from.
func (f *flagSpec) envNames() []string {
	name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(f.name, "-", "_"))
	return append([]string{name}, f.env...)
}

// flagSpecs returns a fresh table of every confab flag.
func flagSpecs() []*flagSpec {
	return []*flagSpec{
		{
			name: "http-addr", arg: "host:port",
			usage: "address of the HTTP server (pages, signaling, health, cluster control)",
			def:   func(Config) string { return DefaultHTTPAddr },
			apply: func(c *Config, v string) error { c.HTTPAddr = v; return nil },
		},
		{
			name: "udp-port", arg: "port",
			usage: "port of the single ICE UDP socket all media uses (0 = ephemeral)",
			def:   func(Config) string { return strconv.Itoa(DefaultUDPPort) },
			apply: func(c *Config, v string) (err error) { c.UDPPort, err = parsePort(v); return err },
		},
		{
			name: "udp-ip", arg: "ip",
			usage: "IP the ICE UDP socket binds to (loopback candidates are always included)",
			def:   func(Config) string { return DefaultUDPIP },
			apply: func(c *Config, v string) error { c.UDPIP = v; return nil },
		},
		{
			name: "public-ip", arg: "ip", list: true,
			usage: "public IP advertised in ICE candidates (1:1 NAT); repeatable or comma separated",
			apply: func(c *Config, v string) error { c.PublicIPs = append(c.PublicIPs, v); return nil },
		},
		{
			name: "log-level", arg: "level",
			usage: "log level: debug, info, warn or error",
			def:   func(Config) string { return DefaultLogLevel },
			apply: func(c *Config, v string) error {
				if _, err := parseLogLevel(v); err != nil {
					return err
				}
				c.LogLevel = strings.ToLower(v)
				return nil
			},
		},
		{
			name: "node-id", arg: "id",
			usage: "id of this node, shown on the page and used in the cluster",
			def:   func(Config) string { return `"node-" + short host name` },
			apply: func(c *Config, v string) error { c.NodeID = v; return nil },
		},
		{
			name: "consul", arg: "[https://]host:port", env: []string{EnvPrefix + "CONSUL_ADDR"},
			usage: "HTTP address of a Consul agent; https:// selects TLS; enables clustering (empty = single node)",
			apply: func(c *Config, v string) error { c.ConsulAddr = v; return nil },
		},
		{
			name: "advertise-addr", arg: "url",
			usage: "base URL other nodes use to reach this node",
			def:   func(Config) string { return "http://<http-addr>" },
			apply: func(c *Config, v string) error { c.AdvertiseAddr = v; return nil },
		},
		{
			name: "cluster-secret", arg: "secret", envOnly: true,
			usage: fmt.Sprintf("shared secret of the cluster (at least %d bytes; required with --consul); only from the environment or --cluster-secret-file, refused on the command line (visible in ps)", MinSecretLen),
			apply: func(c *Config, v string) error { c.ClusterSecret = v; return nil },
		},
		{
			name: "max-participants", arg: "n",
			usage: "maximum participants per room",
			def:   func(Config) string { return strconv.Itoa(DefaultMaxParticipants) },
			apply: func(c *Config, v string) (err error) { c.MaxParticipants, err = parsePositive(v); return err },
		},
		{
			name: "max-participants-per-node", arg: "n",
			usage: "maximum participants on this node; beyond it newcomers are sent to other nodes of the cluster (0 = unlimited)",
			def:   func(Config) string { return "0" },
			apply: func(c *Config, v string) (err error) { c.MaxParticipantsPerNode, err = parseNonNegative(v); return err },
		},
		{
			name: "placement", arg: "on|off",
			usage: "on: a joining participant is sent to the node its room belongs on (docs/placement.md); off: everyone joins the node they reached",
			def:   func(Config) string { return PlacementOn },
			apply: func(c *Config, v string) error { c.Placement = strings.ToLower(v); return nil },
		},
		{
			name: "audio-red", arg: "on|off",
			usage: "on: publishers that offer redundant audio (RED, RFC 2198; Chromium does) send it, about twice the audio bitrate, and single losses are hidden; off: Opus only",
			def:   func(Config) string { return "on" },
			apply: func(c *Config, v string) error { c.AudioRED = strings.ToLower(v); return nil },
		},
		{
			name: "fast-write", arg: "on|off",
			usage: "experimental; on: subscriber media is encrypted with the node's own SRTP context and written straight to the UDP socket, bypassing pion's SRTP session and ICE connection (off: pion's path)",
			def:   func(Config) string { return "off" },
			apply: func(c *Config, v string) error { c.FastWrite = strings.ToLower(v); return nil },
		},
		{
			name: "max-protocol", arg: "n",
			usage: "newest signaling protocol version this node accepts (1-4); during a rolling upgrade, keep upgraded nodes on the version the old ones speak",
			def:   func(Config) string { return strconv.Itoa(MaxProtocolVersion) },
			apply: func(c *Config, v string) (err error) { c.MaxProtocol, err = parsePositive(v); return err },
		},
		{
			name: "max-rooms", arg: "n",
			usage: "maximum rooms on this node",
			def:   func(Config) string { return strconv.Itoa(DefaultMaxRooms) },
			apply: func(c *Config, v string) (err error) { c.MaxRooms, err = parsePositive(v); return err },
		},
		{
			name: "allowed-origin", arg: "host", list: true,
			usage: "extra Origin host allowed to open the signaling WebSocket (the cluster's nodes always are); repeatable or comma separated",
			apply: func(c *Config, v string) error { c.AllowedOrigins = append(c.AllowedOrigins, v); return nil },
		},
		{
			name: "drain-timeout", arg: "duration",
			usage: "on SIGTERM, how long to wait for clients to move to other nodes before shutting down (a second signal exits at once)",
			def:   func(Config) string { return DefaultDrainTimeout.String() },
			apply: func(c *Config, v string) (err error) { c.DrainTimeout, err = parsePositiveDuration(v); return err },
		},
		{
			name: "pprof-addr", arg: "host:port",
			usage: "serve Go runtime profiles (/debug/pprof/, without cmdline) on this separate loopback address, e.g. 127.0.0.1:6060; off when empty",
			apply: func(c *Config, v string) error { c.PprofAddr = v; return nil },
		},
		{
			name: "auth", arg: "open|token",
			usage: "open: anyone may join any room; token: joining needs an access token (see `confab token`) and /api/cluster an admin token",
			def:   func(Config) string { return AuthOpen },
			apply: func(c *Config, v string) error { c.Auth = strings.ToLower(v); return nil },
		},
		{
			name: "api-keys-file", arg: "path",
			usage: "file of API keys that sign access tokens: one \"KEY_ID SECRET\" pair per line (secrets of 32+ bytes); required with --auth token",
			apply: func(c *Config, v string) error { c.APIKeysFile = v; return nil },
		},
		{
			name: "metrics-addr", arg: "host:port",
			usage: "serve Prometheus metrics (/metrics) on this separate address, e.g. 127.0.0.1:9464; off when empty",
			apply: func(c *Config, v string) error { c.MetricsAddr = v; return nil },
		},
		{
			name: "consul-token-file", arg: "path",
			usage: "file holding the Consul ACL token sent with every Consul request (or set $" + EnvConsulToken + " to the token; no flag takes the token itself)",
			apply: func(c *Config, v string) error { c.ConsulTokenFile = v; return nil },
		},
		{
			name: "consul-ca-file", arg: "path",
			usage: "PEM file of the CAs the https:// Consul agent's certificate must chain to (default: the system's roots)",
			apply: func(c *Config, v string) error { c.ConsulCAFile = v; return nil },
		},
		{
			name: "consul-cert-file", arg: "path",
			usage: "PEM client certificate presented to an https:// Consul agent with verify_incoming (with --consul-key-file)",
			apply: func(c *Config, v string) error { c.ConsulCertFile = v; return nil },
		},
		{
			name: "consul-key-file", arg: "path",
			usage: "PEM private key of --consul-cert-file",
			apply: func(c *Config, v string) error { c.ConsulKeyFile = v; return nil },
		},
		{
			name: "cluster-secret-file", arg: "path",
			usage: "read the shared secret of the cluster from this file (surrounding white space ignored); instead of $CONFAB_CLUSTER_SECRET",
			apply: applySecretFile,
		},
		{
			name: "cluster-cidr", arg: "cidr", list: true,
			usage: "accept only node URLs (from Consul, and --advertise-addr) whose host is an IP in one of these networks, e.g. 10.0.0.0/8; repeatable or comma separated; empty: any host",
			apply: func(c *Config, v string) error {
				p, err := netip.ParsePrefix(v)
				if err != nil {
					return errCIDR
				}
				c.ClusterCIDRs = append(c.ClusterCIDRs, p.Masked())
				return nil
			},
		},
		{
			name: "max-conns", arg: "n",
			usage: "maximum open signaling WebSockets on this node; more are refused with 503 before the upgrade",
			def:   func(Config) string { return strconv.Itoa(web.DefaultMaxConns) },
			apply: func(c *Config, v string) (err error) { c.MaxConns, err = parsePositive(v); return err },
		},
		{
			name: "max-conns-per-ip", arg: "n",
			usage: "maximum open signaling WebSockets per client address (the TCP peer: behind a reverse proxy, the proxy); more are refused with 429",
			def:   func(Config) string { return strconv.Itoa(web.DefaultMaxConnsPerIP) },
			apply: func(c *Config, v string) (err error) { c.MaxConnsPerIP, err = parsePositive(v); return err },
		},
		{
			name: "join-timeout", arg: "duration",
			usage: "close a signaling WebSocket that has not joined a room within this time",
			def:   func(Config) string { return web.DefaultJoinTimeout.String() },
			apply: func(c *Config, v string) (err error) { c.JoinTimeout, err = parsePositiveDuration(v); return err },
		},
		{
			name: "max-publish-bitrate", arg: "bit/s",
			usage: "cap on what one participant publishes, all tracks together (e.g. 8M, 2500k, 4000000; off: none); announced to the browser, excess packets dropped",
			def:   func(Config) string { return "8M" },
			apply: func(c *Config, v string) (err error) { c.MaxPublishBitrate, err = parseBitrate(v); return err },
		},
		// Sharded fan-out (docs/performance.md, Sharded fan-out).
		{
			name: "fanout-workers", arg: "n",
			usage: "goroutines that share one producer's fan-out of a packet, its reader included (1: every fan-out on the reader alone)",
			def:   func(Config) string { return "GOMAXPROCS (" + strconv.Itoa(runtime.GOMAXPROCS(0)) + ")" },
			apply: func(c *Config, v string) (err error) { c.FanoutWorkers, err = parsePositive(v); return err },
		},
		{
			name: "fanout-shard-min", arg: "n",
			usage: "least subscribers per shard: a fan-out to N is split into min(--fanout-workers, N/n) shards, not below 2n subscribers",
			def:   func(Config) string { return strconv.Itoa(sfu.DefaultFanoutShardMin) },
			apply: func(c *Config, v string) (err error) { c.FanoutShardMin, err = parsePositive(v); return err },
		},
		// Reach: ICE-TCP and the embedded TURN server (docs/security.md, Reach).
		{
			name: "ice-tcp", arg: "on|off",
			usage: "on: the media engine also listens on TCP at the --udp-port number and offers TCP candidates, for networks that block UDP",
			def:   func(Config) string { return "on" },
			apply: func(c *Config, v string) error { c.ICETCP = strings.ToLower(v); return nil },
		},
		{
			name: "turn-port", arg: "port",
			usage: "port of the embedded TURN server on UDP and TCP (binds to --udp-ip); browsers get per-participant credentials with their join (0 = no TURN server)",
			def:   func(Config) string { return strconv.Itoa(DefaultTURNPort) },
			apply: func(c *Config, v string) (err error) { c.TURNPort, err = parsePort(v); return err },
		},
		{
			name: "turn-tls-port", arg: "port",
			usage: "port of the TURN server's TLS listener (turns:), used with --turn-cert-file and --turn-key-file",
			def:   func(Config) string { return strconv.Itoa(DefaultTURNTLSPort) },
			apply: func(c *Config, v string) (err error) { c.TURNTLSPort, err = parsePort(v); return err },
		},
		{
			name: "turn-cert-file", arg: "path",
			usage: "PEM certificate (chain) of the TURN server's TLS listener; with --turn-key-file enables turns:",
			apply: func(c *Config, v string) error { c.TURNCertFile = v; return nil },
		},
		{
			name: "turn-key-file", arg: "path",
			usage: "PEM private key of --turn-cert-file",
			apply: func(c *Config, v string) error { c.TURNKeyFile = v; return nil },
		},
		{
			name: "turn-relay-ip", arg: "ip",
			usage: "address of relayed sockets and of the TURN URLs given to browsers",
			def:   func(Config) string { return "first --public-ip, else --udp-ip if specific, else 127.0.0.1" },
			apply: func(c *Config, v string) error { c.TURNRelayIP = v; return nil },
		},
		{
			name: "turn-secret-file", arg: "path",
			usage: "file holding the key of the TURN credentials (the same on every node lets a credential work on all of them); " +
				"or set $CONFAB_TURN_SECRET (never on the command line); without either a random key per process",
			apply: func(c *Config, v string) error { c.TURNSecretFile = v; return nil },
		},
		{
			name: "turn-ttl", arg: "duration",
			usage: "how long a TURN credential handed to a browser stays valid",
			def:   func(Config) string { return DefaultTURNTTL.String() },
			apply: func(c *Config, v string) (err error) { c.TURNTTL, err = parsePositiveDuration(v); return err },
		},
	}
}

// ParseConfig builds a Config from command-line arguments (without the
// program name) and the environment, read through getenv (os.Getenv in
// production, a map in tests). A flag given on the command line wins over its
// environment variable, which wins over the default. The result has defaults
// applied and is validated.
//
// Errors are one line and name the offending flag, for example
// `invalid value "abc" for flag --udp-port: must be a port number between 0
// and 65535`. For -h/--help it returns flag.ErrHelp; the caller then prints
// Usage and exits 0. ParseConfig itself writes nothing.
func ParseConfig(args []string, getenv func(string) string) (Config, error) {
	specs := flagSpecs()
	fs := flag.NewFlagSet("confab", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range specs {
		fs.Var(s, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		return Config{}, parseError(err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (confab takes only flags; see --help)", fs.Arg(0))
	}

	for _, s := range specs {
		if s.envOnly && s.set {
			return Config{}, fmt.Errorf("flag --%s is refused on the command line, where every local user can read it (ps, /proc, /debug/pprof/cmdline): put it in a file and pass --%s-file PATH, or set $%s", s.name, s.name, s.envNames()[0])
		}
	}
	cfg := DefaultConfig()
	for _, s := range specs {
		values, source := s.values, ""
		if !s.set {
			values, source = nil, ""
			for _, name := range s.envNames() {
				if v := getenv(name); v != "" {
					values, source = []string{v}, name
					break
				}
			}
		}
		for _, raw := range values {
			parts := []string{raw}
			if s.list {
				parts = splitList(raw)
			}
			for _, v := range parts {
				if err := s.apply(&cfg, v); err != nil {
					if source != "" {
						return Config{}, fmt.Errorf("invalid value %q for flag --%s (from $%s): %w", v, s.name, source, err)
					}
					return Config{}, flagError(s.name, v, err)
				}
			}
		}
	}
	cfg.ConsulToken = getenv(EnvConsulToken)
	// The TURN secret comes from the environment only, never argv.
	cfg.TURNSecret = getenv(TURNSecretEnv)
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Usage writes the --help text: a synopsis and every flag with its
// environment variable and default.
func Usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Usage: confab [flags]\n\n")
	b.WriteString("confab is a WebRTC video-conferencing server (SFU). Every flag --foo-bar\n")
	b.WriteString("can also be set with the environment variable CONFAB_FOO_BAR; a flag on\n")
	b.WriteString("the command line wins over the environment.\n\nFlags:\n")
	for _, s := range flagSpecs() {
		fmt.Fprintf(&b, "  --%s %s\n", s.name, s.arg)
		fmt.Fprintf(&b, "        %s\n", s.usage)
		fmt.Fprintf(&b, "        env: %s", strings.Join(prefixAll("$", s.envNames()), ", "))
		if s.def != nil {
			fmt.Fprintf(&b, "; default: %s", s.def(Config{}))
		}
		b.WriteString("\n")
	}
	b.WriteString("  -h, --help\n        show this help\n")
	_, _ = io.WriteString(w, b.String())
}

// parseError rewrites the flag package's messages to use --name spelling.
func parseError(err error) error {
	msg := err.Error()
	for _, p := range []struct{ from, to string }{
		{"flag provided but not defined: -", "unknown flag: --"},
		{"flag needs an argument: -", "flag needs an argument: --"},
	} {
		if rest, ok := strings.CutPrefix(msg, p.from); ok {
			return errors.New(p.to + strings.TrimLeft(rest, "-"))
		}
	}
	return errors.New(msg)
}

// splitList splits a comma separated list, trimming spaces and dropping
// empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func prefixAll(prefix string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = prefix + s
	}
	return out
}

// parsePort parses a port number 0-65535.
func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return 0, errPortRange
	}
	return n, nil
}

// parsePositiveDuration parses a time.ParseDuration string > 0.
func parsePositiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errDuration
	}
	return d, nil
}

// parseNonNegative parses an integer >= 0.
func parseNonNegative(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errNonNegative
	}
	return n, nil
}

// parsePositive parses an integer >= 1.
func parsePositive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, errPositive
	}
	return n, nil
}

// applySecretFile reads the cluster secret from the file at path
// (--cluster-secret-file), refusing a second source of the secret.
func applySecretFile(c *Config, path string) error {
	if c.ClusterSecret != "" {
		return errSecretTwice
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the secret file: %w", err)
	}
	c.ClusterSecret = strings.TrimSpace(string(b))
	if c.ClusterSecret == "" {
		return errSecretEmpty
	}
	return nil
}
