package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/cluster"
)

// env returns a getenv func backed by a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// testSecret returns a fresh random cluster secret (a fixed one in the
// source would be a published example, which confab refuses) and a file
// holding it followed by a newline.
func testSecret(t *testing.T) (secret, file string) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	secret = hex.EncodeToString(b)
	file = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, file
}

func TestParseConfig(t *testing.T) {
	secret, secretFile := testSecret(t)
	// want starts from the defaults and is adjusted per case.
	base := func(mod func(c *Config)) Config {
		c := DefaultConfig()
		c.NodeID = "n1"
		c.AdvertiseAddr = "http://" + DefaultHTTPAddr
		if mod != nil {
			mod(&c)
		}
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want Config
	}{
		{
			name: "defaults",
			args: []string{"--node-id", "n1"},
			want: base(nil),
		},
		{
			name: "single dash and equals forms",
			args: []string{"-node-id=n1", "-udp-port=50001", "--http-addr=127.0.0.1:9000"},
			want: base(func(c *Config) {
				c.UDPPort = 50001
				c.HTTPAddr = "127.0.0.1:9000"
				c.AdvertiseAddr = "http://127.0.0.1:9000"
			}),
		},
		{
			name: "every flag from env",
			env: map[string]string{
				"CONFAB_HTTP_ADDR":                 "0.0.0.0:8081",
				"CONFAB_UDP_PORT":                  "50002",
				"CONFAB_UDP_IP":                    "127.0.0.1",
				"CONFAB_PUBLIC_IP":                 "203.0.113.1, 203.0.113.2",
				"CONFAB_LOG_LEVEL":                 "DEBUG",
				"CONFAB_NODE_ID":                   "n1",
				"CONFAB_CONSUL":                    "127.0.0.1:8500",
				"CONFAB_ADVERTISE_ADDR":            "http://10.0.0.1:8081",
				"CONFAB_CLUSTER_SECRET":            secret,
				"CONFAB_MAX_PARTICIPANTS":          "5",
				"CONFAB_MAX_ROOMS":                 "7",
				"CONFAB_MAX_PARTICIPANTS_PER_NODE": "40",
				"CONFAB_PLACEMENT":                 "OFF",
				"CONFAB_AUDIO_RED":                 "Off",
				"CONFAB_FAST_WRITE":                "On",
				"CONFAB_MAX_PROTOCOL":              "2",
				"CONFAB_ALLOWED_ORIGIN":            "a.example,b.example:8443",
				"CONFAB_DRAIN_TIMEOUT":             "1m30s",
				"CONFAB_AUTH":                      "OPEN",
				"CONFAB_API_KEYS_FILE":             "/k",
				"CONFAB_ICE_TCP":                   "OFF",
				"CONFAB_TURN_PORT":                 "3479",
				"CONFAB_TURN_TLS_PORT":             "5350",
				"CONFAB_TURN_CERT_FILE":            "turn.crt",
				"CONFAB_TURN_KEY_FILE":             "turn.key",
				"CONFAB_TURN_RELAY_IP":             "203.0.113.9",
				"CONFAB_TURN_SECRET_FILE":          "turn.secret",
				"CONFAB_TURN_TTL":                  "30m",
			},
			want: Config{
				HTTPAddr:               "0.0.0.0:8081",
				UDPPort:                50002,
				UDPIP:                  "127.0.0.1",
				PublicIPs:              []string{"203.0.113.1", "203.0.113.2"},
				LogLevel:               "debug",
				NodeID:                 "n1",
				ConsulAddr:             "127.0.0.1:8500",
				AdvertiseAddr:          "http://10.0.0.1:8081",
				ClusterSecret:          secret,
				MaxParticipants:        5,
				MaxRooms:               7,
				MaxParticipantsPerNode: 40,
				Placement:              "off",
				AudioRED:               "off",
				FastWrite:              "on",
				MaxProtocol:            2,
				AllowedOrigins:         []string{"a.example", "b.example:8443"},
				DrainTimeout:           90 * time.Second,
				Auth:                   AuthOpen,
				APIKeysFile:            "/k",
				ICETCP:                 "off",
				TURNPort:               3479,
				TURNTLSPort:            5350,
				TURNCertFile:           "turn.crt",
				TURNKeyFile:            "turn.key",
				TURNRelayIP:            "203.0.113.9",
				TURNSecretFile:         "turn.secret",
				TURNTTL:                30 * time.Minute,
			},
		},
		{
			name: "turn secret from env, turn off",
			args: []string{"--node-id", "n1", "--turn-port", "0"},
			env:  map[string]string{"CONFAB_TURN_SECRET": "0123456789abcdef-turn"},
			want: base(func(c *Config) { c.TURNPort = 0; c.TURNSecret = "0123456789abcdef-turn" }),
		},
		{
			name: "consul from CONFAB_CONSUL_ADDR",
			env: map[string]string{
				"CONFAB_NODE_ID":        "n1",
				"CONFAB_CONSUL_ADDR":    "127.0.0.1:8500",
				"CONFAB_CLUSTER_SECRET": secret,
			},
			want: base(func(c *Config) {
				c.ConsulAddr = "127.0.0.1:8500"
				c.ClusterSecret = secret
			}),
		},
		{
			name: "secret from a file",
			args: []string{"--node-id", "n1", "--consul", "127.0.0.1:8500", "--cluster-secret-file", secretFile},
			want: base(func(c *Config) {
				c.ConsulAddr = "127.0.0.1:8500"
				c.ClusterSecret = secret
			}),
		},
		{
			name: "secret file from env",
			args: []string{"--node-id", "n1", "--consul", "127.0.0.1:8500"},
			env:  map[string]string{"CONFAB_CLUSTER_SECRET_FILE": secretFile},
			want: base(func(c *Config) {
				c.ConsulAddr = "127.0.0.1:8500"
				c.ClusterSecret = secret
			}),
		},
		{
			name: "cluster cidrs",
			args: []string{"--node-id", "n1", "--consul", "127.0.0.1:8500", "--cluster-cidr", "10.0.0.0/8, fd00::/8",
				"--cluster-cidr", "192.168.1.7/24", "--advertise-addr", "http://10.0.0.1:8080"},
			env: map[string]string{"CONFAB_CLUSTER_SECRET": secret},
			want: base(func(c *Config) {
				c.ConsulAddr = "127.0.0.1:8500"
				c.ClusterSecret = secret
				c.AdvertiseAddr = "http://10.0.0.1:8080"
				c.ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.168.1.0/24")}
			}),
		},
		{
			name: "pprof on localhost and ::1",
			args: []string{"--node-id", "n1", "--pprof-addr", "[::1]:6060"},
			want: base(func(c *Config) { c.PprofAddr = "[::1]:6060" }),
		},
		{
			name: "flag beats env",
			args: []string{"--udp-port", "50003", "--node-id", "n1", "--public-ip", "198.51.100.7"},
			env: map[string]string{
				"CONFAB_UDP_PORT":  "50009",
				"CONFAB_NODE_ID":   "from-env",
				"CONFAB_PUBLIC_IP": "203.0.113.1",
				"CONFAB_MAX_ROOMS": "3",
			},
			want: base(func(c *Config) {
				c.UDPPort = 50003
				c.PublicIPs = []string{"198.51.100.7"}
				c.MaxRooms = 3
			}),
		},
		{
			name: "repeatable and comma separated lists",
			args: []string{"--node-id", "n1", "--public-ip", "203.0.113.1,203.0.113.2", "--public-ip", "203.0.113.3",
				"--allowed-origin", "a.example", "--allowed-origin", "b.example"},
			want: base(func(c *Config) {
				c.PublicIPs = []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}
				c.AllowedOrigins = []string{"a.example", "b.example"}
			}),
		},
		{
			name: "advertise default replaces unspecified host",
			args: []string{"--node-id", "n1", "--http-addr", "0.0.0.0:8082"},
			want: base(func(c *Config) {
				c.HTTPAddr = "0.0.0.0:8082"
				c.AdvertiseAddr = "http://127.0.0.1:8082"
			}),
		},
		{
			name: "drain timeout",
			args: []string{"--node-id", "n1", "--drain-timeout", "500ms"},
			env:  map[string]string{"CONFAB_DRAIN_TIMEOUT": "10s"},
			want: base(func(c *Config) { c.DrainTimeout = 500 * time.Millisecond }),
		},
		{
			name: "pprof addr",
			args: []string{"--node-id", "n1", "--pprof-addr", "127.0.0.1:6060"},
			want: base(func(c *Config) { c.PprofAddr = "127.0.0.1:6060" }),
		},
		{
			name: "metrics addr from env",
			args: []string{"--node-id", "n1"},
			env:  map[string]string{"CONFAB_METRICS_ADDR": "127.0.0.1:9464"},
			want: base(func(c *Config) { c.MetricsAddr = "127.0.0.1:9464" }),
		},
		{
			name: "token auth",
			args: []string{"--node-id", "n1", "--auth", "TOKEN", "--api-keys-file", "/etc/confab/keys"},
			want: base(func(c *Config) { c.Auth = AuthToken; c.APIKeysFile = "/etc/confab/keys" }),
		},
		{
			name: "ephemeral udp port",
			args: []string{"--node-id", "n1", "--udp-port", "0"},
			want: base(func(c *Config) { c.UDPPort = 0 }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig(tt.args, env(tt.env))
			if err != nil {
				t.Fatalf("ParseConfig(%q) error: %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseConfig(%q)\n got  %+v\n want %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseConfigDefaultNodeID(t *testing.T) {
	got, err := ParseConfig(nil, env(nil))
	if err != nil {
		t.Fatalf("ParseConfig(nil): %v", err)
	}
	if !strings.HasPrefix(got.NodeID, "node-") || !cluster.ValidNodeID(got.NodeID) {
		t.Errorf("default NodeID = %q, want a valid node-<hostname>", got.NodeID)
	}
}

func TestParseConfigErrors(t *testing.T) {
	secret, secretFile := testSecret(t)
	emptyFile := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withSecret := map[string]string{"CONFAB_CLUSTER_SECRET": secret}
	consul := []string{"--consul", "127.0.0.1:8500"}
	exampleSecret := func(s string) map[string]string { return map[string]string{"CONFAB_CLUSTER_SECRET": s} }
	const refusedOnCommandLine = `flag --cluster-secret is refused on the command line, where every local user can read it (ps, /proc, /debug/pprof/cmdline): put it in a file and pass --cluster-secret-file PATH, or set $CONFAB_CLUSTER_SECRET`
	const published = `cluster secret ($CONFAB_CLUSTER_SECRET or --cluster-secret-file): this secret is a published example or trivially guessable`
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the error
	}{
		{"secret on the command line", append(consul, "--cluster-secret", secret), nil, refusedOnCommandLine},
		{"secret on the command line with =", append(consul, "--cluster-secret="+secret), nil, refusedOnCommandLine},
		{"secret on the command line beside env", append(consul, "--cluster-secret", secret), withSecret, refusedOnCommandLine},
		{"secret in env and file", append(consul, "--cluster-secret-file", secretFile), withSecret, `for flag --cluster-secret-file: the cluster secret is also set in $CONFAB_CLUSTER_SECRET`},
		{"secret file missing", append(consul, "--cluster-secret-file", secretFile+".nope"), nil, `for flag --cluster-secret-file: reading the secret file: `},
		{"secret file empty", append(consul, "--cluster-secret-file", emptyFile), nil, `for flag --cluster-secret-file: the secret file is empty`},
		{"docker compose example secret", consul, exampleSecret("change-me-please-0123456789"), published},
		{"example secret in upper case", consul, exampleSecret("CHANGE-ME-PLEASE-0123456789"), published},
		{"test example secret", consul, exampleSecret("0123456789abcdef"), published},
		{"cluster.sh example secret", consul, exampleSecret("confab-dev-cluster-secret"), published},
		{"bench example secret", consul, exampleSecret("confab-bench-cluster-secret-0123456789"), published},
		{"all the same character", consul, exampleSecret(strings.Repeat("x", 32)), published},
		{"short pattern repeated", consul, exampleSecret(strings.Repeat("ab1", 11)), published},
		{"pprof on every interface", []string{"--pprof-addr", "0.0.0.0:6060"}, nil, `invalid value "0.0.0.0:6060" for flag --pprof-addr: must be a loopback address`},
		{"pprof without host", []string{"--pprof-addr", ":6060"}, nil, `invalid value ":6060" for flag --pprof-addr: must be a loopback address`},
		{"pprof on a LAN address", []string{"--pprof-addr", "10.0.0.1:6060"}, nil, `for flag --pprof-addr: must be a loopback address`},
		{"pprof on a host name", []string{"--pprof-addr", "example.com:6060"}, nil, `for flag --pprof-addr: must be a loopback address`},
		{"cluster cidr", []string{"--cluster-cidr", "10.0.0.0"}, nil, `invalid value "10.0.0.0" for flag --cluster-cidr: must be a network in CIDR notation`},
		{"advertise outside the cluster cidrs", append(consul, "--cluster-cidr", "10.0.0.0/8", "--advertise-addr", "http://192.168.0.1:8080"), withSecret, `invalid value "http://192.168.0.1:8080" for flag --advertise-addr: cluster: unusable node URL: 192.168.0.1 is outside the allowed networks`},
		{"advertise with user info", append(consul, "--advertise-addr", "http://me@10.0.0.1:8080"), withSecret, `for flag --advertise-addr: cluster: unusable node URL: user info`},
		{"udp port not a number", []string{"--udp-port", "abc"}, nil, `invalid value "abc" for flag --udp-port: `},
		{"udp port too big", []string{"--udp-port=70000"}, nil, `invalid value "70000" for flag --udp-port: `},
		{"udp port from env", nil, map[string]string{"CONFAB_UDP_PORT": "x"}, `invalid value "x" for flag --udp-port (from $CONFAB_UDP_PORT): `},
		{"udp ip", []string{"--udp-ip", "localhost"}, nil, `invalid value "localhost" for flag --udp-ip: `},
		{"public ip", []string{"--public-ip", "203.0.113.1,nope"}, nil, `invalid value "nope" for flag --public-ip: `},
		{"http addr without port", []string{"--http-addr", "127.0.0.1"}, nil, `invalid value "127.0.0.1" for flag --http-addr: `},
		{"http addr bad port", []string{"--http-addr", "127.0.0.1:http"}, nil, `for flag --http-addr: `},
		{"log level", []string{"--log-level", "loud"}, nil, `invalid value "loud" for flag --log-level: `},
		{"node id", []string{"--node-id", "bad id!"}, nil, `invalid value "bad id!" for flag --node-id: `},
		{"max participants zero", []string{"--max-participants", "0"}, nil, `invalid value "0" for flag --max-participants: `},
		{"max participants per node negative", []string{"--max-participants-per-node=-1"}, nil, `invalid value "-1" for flag --max-participants-per-node: must be a non-negative integer`},
		{"placement", []string{"--placement", "maybe"}, nil, `invalid value "maybe" for flag --placement: must be on or off`},
		{"max protocol too new", []string{"--max-protocol", "9"}, nil, `invalid value "9" for flag --max-protocol: must be 1 to`},
		{"auth mode", []string{"--auth", "password"}, nil, `invalid value "password" for flag --auth: must be open or token`},
		{"token auth without keys", []string{"--auth", "token"}, nil, `flag --auth token needs --api-keys-file`},
		{"token auth on an old protocol", []string{"--auth", "token", "--api-keys-file", "k", "--max-protocol", "3"}, nil, `flag --auth token needs --max-protocol 4 or newer`},
		{"max protocol zero", []string{"--max-protocol", "0"}, nil, `invalid value "0" for flag --max-protocol: `},
		{"max rooms negative", []string{"--max-rooms=-1"}, nil, `invalid value "-1" for flag --max-rooms: `},
		{"max rooms from env", nil, map[string]string{"CONFAB_MAX_ROOMS": "many"}, `for flag --max-rooms (from $CONFAB_MAX_ROOMS)`},
		{"consul without secret", []string{"--consul", "127.0.0.1:8500"}, nil, `cluster secret ($CONFAB_CLUSTER_SECRET or --cluster-secret-file): must be at least 16 bytes`},
		{"short secret", []string{"--consul", "127.0.0.1:8500"}, map[string]string{"CONFAB_CLUSTER_SECRET": "short"}, `cluster secret ($CONFAB_CLUSTER_SECRET or --cluster-secret-file): must be at least 16 bytes`},
		{"consul addr", []string{"--consul", "consul"}, withSecret, `invalid value "consul" for flag --consul: `},
		{"advertise addr", []string{"--consul", "127.0.0.1:8500", "--advertise-addr", "127.0.0.1:8081"}, withSecret, `for flag --advertise-addr: `},
		{"pprof addr without port", []string{"--pprof-addr", "localhost"}, nil, `invalid value "localhost" for flag --pprof-addr: `},
		{"metrics addr without port", []string{"--metrics-addr", "localhost"}, nil, `invalid value "localhost" for flag --metrics-addr: `},
		{"drain timeout without unit", []string{"--drain-timeout", "30"}, nil, `invalid value "30" for flag --drain-timeout: `},
		{"drain timeout zero", []string{"--drain-timeout", "0s"}, nil, `invalid value "0s" for flag --drain-timeout: `},
		{"drain timeout from env", nil, map[string]string{"CONFAB_DRAIN_TIMEOUT": "-5s"}, `for flag --drain-timeout (from $CONFAB_DRAIN_TIMEOUT)`},
		{"ice tcp", []string{"--ice-tcp", "maybe"}, nil, `invalid value "maybe" for flag --ice-tcp: must be on or off`},
		{"fast write", []string{"--fast-write", "maybe"}, nil, `invalid value "maybe" for flag --fast-write: must be on or off`},
		{"turn port", []string{"--turn-port", "-1"}, nil, `invalid value "-1" for flag --turn-port: `},
		{"turn cert without key", []string{"--turn-cert-file", "turn.crt"}, nil, `--turn-cert-file and --turn-key-file: give both`},
		{"turn relay ip", []string{"--turn-relay-ip", "relay.example"}, nil, `invalid value "relay.example" for flag --turn-relay-ip: `},
		{"turn secret file and env", []string{"--turn-secret-file", "s"}, map[string]string{"CONFAB_TURN_SECRET": "0123456789abcdef"}, `give one of them`},
		{"short turn secret", nil, map[string]string{"CONFAB_TURN_SECRET": "short"}, `$CONFAB_TURN_SECRET: must be at least 16 bytes`},
		{"turn secret is no flag", []string{"--turn-secret", "0123456789abcdef"}, nil, `unknown flag: --turn-secret`},
		{"turn ttl", []string{"--turn-ttl", "0s"}, nil, `invalid value "0s" for flag --turn-ttl: `},
		{"unknown flag", []string{"--bogus"}, nil, `unknown flag: --bogus`},
		{"missing value", []string{"--udp-port"}, nil, `flag needs an argument: --udp-port`},
		{"positional argument", []string{"serve"}, nil, `unexpected argument "serve"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.args, env(tt.env))
			if err == nil {
				t.Fatalf("ParseConfig(%q) succeeded, want error containing %q", tt.args, tt.want)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("ParseConfig(%q) error = %q, want it to contain %q", tt.args, msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("ParseConfig(%q) error spans several lines: %q", tt.args, msg)
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			_, err := ParseConfig([]string{arg}, env(nil))
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("ParseConfig(%q) error = %v, want flag.ErrHelp", arg, err)
			}
		})
	}
	var b strings.Builder
	Usage(&b)
	usage := b.String()
	for _, s := range flagSpecs() {
		for _, want := range []string{"--" + s.name, "$" + s.envNames()[0]} {
			if !strings.Contains(usage, want) {
				t.Errorf("usage does not mention %q:\n%s", want, usage)
			}
		}
	}
	if !strings.Contains(usage, "$CONFAB_CONSUL_ADDR") {
		t.Errorf("usage does not mention $CONFAB_CONSUL_ADDR:\n%s", usage)
	}
}

func TestDefaultNodeID(t *testing.T) {
	tests := []struct{ host, want string }{
		{"box", "node-box"},
		{"Web-01.example.com", "node-web-01"},
		{"my_host", "node-my-host"},
		{"", "node-local"},
		{"...", "node-local"},
		{strings.Repeat("a", 80), "node-" + strings.Repeat("a", 50)},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got := DefaultNodeID(tt.host)
			if got != tt.want {
				t.Errorf("DefaultNodeID(%q) = %q, want %q", tt.host, got, tt.want)
			}
			if !cluster.ValidNodeID(got) {
				t.Errorf("DefaultNodeID(%q) = %q is not a valid node id", tt.host, got)
			}
		})
	}
}
