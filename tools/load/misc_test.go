package load

import (
	"strings"
	"testing"
	"time"
)

func TestWantsKeyframe(t *testing.T) {
	rr := []byte{0x81, 201, 0, 1, 0, 0, 0, 1}              // receiver report, 8 bytes
	pli := []byte{0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2} // PT 206 FMT 1
	fir := []byte{0x84, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2} // PT 206 FMT 4
	remb := []byte{0x8f, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0}
	nack := []byte{0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 0}
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"pli", pli, true},
		{"fir", fir, true},
		{"receiver report", rr, false},
		{"remb", remb, false},
		{"nack", nack, false},
		{"compound rr+pli", append(append([]byte{}, rr...), pli...), true},
		{"compound rr+nack", append(append([]byte{}, rr...), nack...), false},
		{"truncated", pli[:3], false},
		{"length beyond packet", []byte{0x81, 201, 0, 9, 0, 0, 0, 1}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wantsKeyframe(tt.pkt); got != tt.want {
				t.Errorf("wantsKeyframe = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWSURL(t *testing.T) {
	tests := []struct {
		base, want string
		ok         bool
	}{
		{"http://127.0.0.1:8080", "ws://127.0.0.1:8080/rooms/r1/ws", true},
		{"https://example.com/", "wss://example.com/rooms/r1/ws", true},
		{"http://h:1/prefix", "ws://h:1/prefix/rooms/r1/ws", true},
		{"ws://h:1?x=1", "ws://h:1/rooms/r1/ws", true},
		{"ftp://h", "", false},
		{"http://", "", false},
		{"::", "", false},
	}
	for _, tt := range tests {
		got, err := wsURL(tt.base, "r1")
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("wsURL(%q) = %q, %v; want %q, ok %v", tt.base, got, err, tt.want, tt.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := Config{Clip: "x"}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name string
		mod  func(c *Config)
		want string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"scenario", func(c *Config) { c.Scenario = "stampede" }, "--scenario"},
		{"clip", func(c *Config) { c.Clip = "" }, "--clip"},
		{"cross-node needs url-b", func(c *Config) { c.Scenario = ScenarioCrossNode }, "--url-b"},
		{"cross-node", func(c *Config) { c.Scenario = ScenarioCrossNode; c.URLB = "http://127.0.0.1:2" }, ""},
		{"room", func(c *Config) { c.Room = "no spaces" }, "--room"},
		{"subscribers", func(c *Config) { c.Subscribers = -1 }, "--subscribers"},
		{"participants", func(c *Config) { c.Participants = 1 }, "--participants"},
		{"duration", func(c *Config) { c.Duration = -time.Second }, "--duration"},
		{"join rate", func(c *Config) { c.JoinRate = -1 }, "--join-rate"},
		{"idle", func(c *Config) { c.IdleMax = 2 }, "--idle-max"},
		{"url", func(c *Config) { c.URL = "ftp://x" }, "--url"},
		{"cpu", func(c *Config) { c.PinLoad = []int{-3} }, "--pin"},
		{"pprof", func(c *Config) { c.ProfileURL = "http://127.0.0.1:6060"; c.ProfileOut = "p.pprof" }, ""},
		{"pprof url without out", func(c *Config) { c.ProfileURL = "http://127.0.0.1:6060" }, "--pprof-out"},
		{"pprof out without url", func(c *Config) { c.ProfileOut = "p.pprof" }, "--pprof-url"},
		{"pprof url scheme", func(c *Config) { c.ProfileURL = "127.0.0.1:6060"; c.ProfileOut = "p" }, "--pprof-url"},
		{"broadcast on one node", func(c *Config) { c.Scenario = ScenarioBroadcast }, ""},
		{"broadcast on three nodes", func(c *Config) {
			c.Scenario = ScenarioBroadcast
			c.URLPeers = []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}
			c.ServerPIDPeers = []int{20, 30}
			c.MetricsURLs = []string{"http://127.0.0.1:4/metrics", "http://127.0.0.1:5/metrics", "http://127.0.0.1:6/metrics"}
		}, ""},
		{"peers only for broadcast", func(c *Config) { c.URLPeers = []string{"http://127.0.0.1:2"} }, "--url-peer"},
		{"peer url", func(c *Config) { c.Scenario = ScenarioBroadcast; c.URLPeers = []string{"ftp://x"} }, "--url-peer"},
		{"too many peers", func(c *Config) {
			c.Scenario = ScenarioBroadcast
			c.Subscribers = 100
			for range maxPeers + 1 {
				c.URLPeers = append(c.URLPeers, "http://127.0.0.1:2")
			}
		}, "at most 25"},
		{"peer pids not one per peer", func(c *Config) {
			c.Scenario = ScenarioBroadcast
			c.URLPeers = []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}
			c.ServerPIDPeers = []int{20}
		}, "--server-pid-peer"},
		{"metrics urls not one per node", func(c *Config) {
			c.Scenario = ScenarioBroadcast
			c.URLPeers = []string{"http://127.0.0.1:2"}
			c.MetricsURLs = []string{"http://127.0.0.1:4/metrics"}
		}, "--metrics-url"},
		{"cross-node metrics for both nodes", func(c *Config) {
			c.Scenario = ScenarioCrossNode
			c.URLB = "http://127.0.0.1:2"
			c.MetricsURLs = []string{"http://127.0.0.1:4/metrics", "http://127.0.0.1:5/metrics"}
		}, ""},
		{"metrics url scheme", func(c *Config) { c.MetricsURLs = []string{"127.0.0.1:4"} }, "--metrics-url"},
		{"a viewer per node", func(c *Config) {
			c.Scenario = ScenarioBroadcast
			c.Subscribers = 2
			c.URLPeers = []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}
		}, "at least one viewer per node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestConfigAutoTimeout(t *testing.T) {
	c := Config{Clip: "x", Subscribers: 99, JoinRate: 10, Duration: 20 * time.Second, Warmup: 3 * time.Second}
	c.SetDefaults()
	want := 10*time.Second + DefaultMediaTimeout + 23*time.Second + time.Minute
	if c.Timeout != want {
		t.Errorf("Timeout = %v, want %v", c.Timeout, want)
	}
}

// TestMarkdown checks that a row has as many cells as the header and shows
// "-" for what was not measured.
func TestMarkdown(t *testing.T) {
	r := &Report{Scenario: ScenarioFanout, Params: Params{Subscribers: 7}, PPS: 1234, LossPercent: 0.5, DurationS: 1}
	header := strings.Split(strings.TrimSpace(MarkdownHeader()), "\n")
	row := r.MarkdownRow()
	if len(header) != 2 {
		t.Fatalf("header has %d lines", len(header))
	}
	if hc, rc := strings.Count(header[0], "|"), strings.Count(row, "|"); hc != rc {
		t.Errorf("header has %d separators, row %d:\n%s%s", hc, rc, MarkdownHeader(), row)
	}
	for _, want := range []string{"| fanout | N=7 | no | - | 0.00 | 1234 |", "0.500"} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q does not contain %q", row, want)
		}
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "CPU per packet") {
		t.Errorf("table:\n%s", table.String())
	}
}
