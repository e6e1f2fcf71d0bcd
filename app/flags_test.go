package app

import (
	"errors"
	"flag"
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

func TestParseConfig(t *testing.T) {
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
				"CONFAB_CLUSTER_SECRET":            "0123456789abcdef",
				"CONFAB_MAX_PARTICIPANTS":          "5",
				"CONFAB_MAX_ROOMS":                 "7",
				"CONFAB_MAX_PARTICIPANTS_PER_NODE": "40",
				"CONFAB_PLACEMENT":                 "OFF",
				"CONFAB_AUDIO_RED":                 "Off",
				"CONFAB_MAX_PROTOCOL":              "2",
				"CONFAB_ALLOWED_ORIGIN":            "a.example,b.example:8443",
				"CONFAB_DRAIN_TIMEOUT":             "1m30s",
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
				ClusterSecret:          "0123456789abcdef",
				MaxParticipants:        5,
				MaxRooms:               7,
				MaxParticipantsPerNode: 40,
				Placement:              "off",
				AudioRED:               "off",
				MaxProtocol:            2,
				AllowedOrigins:         []string{"a.example", "b.example:8443"},
				DrainTimeout:           90 * time.Second,
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
				"CONFAB_CLUSTER_SECRET": "0123456789abcdef",
			},
			want: base(func(c *Config) {
				c.ConsulAddr = "127.0.0.1:8500"
				c.ClusterSecret = "0123456789abcdef"
			}),
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
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // substring of the error
	}{
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
		{"max protocol too new", []string{"--max-protocol", "5"}, nil, `invalid value "5" for flag --max-protocol: must be 1 to 4`},
		{"max protocol zero", []string{"--max-protocol", "0"}, nil, `invalid value "0" for flag --max-protocol: `},
		{"max rooms negative", []string{"--max-rooms=-1"}, nil, `invalid value "-1" for flag --max-rooms: `},
		{"max rooms from env", nil, map[string]string{"CONFAB_MAX_ROOMS": "many"}, `for flag --max-rooms (from $CONFAB_MAX_ROOMS)`},
		{"consul without secret", []string{"--consul", "127.0.0.1:8500"}, nil, `flag --cluster-secret: must be at least 16 bytes`},
		{"short secret", []string{"--consul", "127.0.0.1:8500", "--cluster-secret", "short"}, nil, `flag --cluster-secret`},
		{"consul addr", []string{"--consul", "consul", "--cluster-secret", "0123456789abcdef"}, nil, `invalid value "consul" for flag --consul: `},
		{"advertise addr", []string{"--consul", "127.0.0.1:8500", "--cluster-secret", "0123456789abcdef", "--advertise-addr", "127.0.0.1:8081"}, nil, `for flag --advertise-addr: `},
		{"pprof addr without port", []string{"--pprof-addr", "localhost"}, nil, `invalid value "localhost" for flag --pprof-addr: `},
		{"metrics addr without port", []string{"--metrics-addr", "localhost"}, nil, `invalid value "localhost" for flag --metrics-addr: `},
		{"drain timeout without unit", []string{"--drain-timeout", "30"}, nil, `invalid value "30" for flag --drain-timeout: `},
		{"drain timeout zero", []string{"--drain-timeout", "0s"}, nil, `invalid value "0s" for flag --drain-timeout: `},
		{"drain timeout from env", nil, map[string]string{"CONFAB_DRAIN_TIMEOUT": "-5s"}, `for flag --drain-timeout (from $CONFAB_DRAIN_TIMEOUT)`},
		{"ice tcp", []string{"--ice-tcp", "maybe"}, nil, `invalid value "maybe" for flag --ice-tcp: must be on or off`},
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
