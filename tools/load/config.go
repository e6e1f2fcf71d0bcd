// Package load is confab's load generator: simulated participants that speak
// the documented signaling protocol (docs/protocol.md) over a WebSocket and
// send and receive real media over pion peer connections, scenarios built
// from them (fanout, meeting, cross-node, churn, broadcast), and the
// measurements and report of a run (loss, one-way delay, join and
// propagation times, server CPU and memory per forwarded packet; per node
// for a broadcast, with the node-to-node link figures from /metrics).
//
// The generator is a client of the wire protocol only: it imports nothing
// of confab's server packages. It is meant to share a small machine with
// the server it measures, so its receive path is cheap: one goroutine per
// received track, no allocation, lock or logging per packet, and no
// interceptors on the subscribers' peer connections.
package load

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"time"
)

// Scenario names, the values of Config.Scenario.
const (
	// ScenarioFanout is one publisher (VP8+Opus) and Subscribers
	// subscribers on node URL.
	ScenarioFanout = "fanout"
	// ScenarioMeeting is Participants participants on node URL, each
	// publishing VP8+Opus and receiving everyone else.
	ScenarioMeeting = "meeting"
	// ScenarioCrossNode is Subscribers subscribers on node URLB, then one
	// publisher on node URL (both nodes in one cluster).
	ScenarioCrossNode = "cross-node"
	// ScenarioChurn is fanout plus subscribers that join at ChurnRate per
	// second and leave after ChurnLifetime each.
	ScenarioChurn = "churn"
	// ScenarioBroadcast is one publisher (VP8+Opus) on node URL and
	// Subscribers viewers spread evenly over URL and URLPeers (node A, then
	// B, C, ... in that order, viewer i on node i mod nodes).
	ScenarioBroadcast = "broadcast"
)

// roomPattern is the room names confab accepts (docs/protocol.md).
var roomPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Scenarios returns the scenario names.
func Scenarios() []string {
	return []string{ScenarioFanout, ScenarioMeeting, ScenarioCrossNode, ScenarioChurn, ScenarioBroadcast}
}

// Defaults of Config.
const (
	DefaultURL           = "http://127.0.0.1:8080"
	DefaultSubscribers   = 10
	DefaultParticipants  = 4
	DefaultDuration      = 20 * time.Second
	DefaultWarmup        = 3 * time.Second
	DefaultJoinRate      = 20
	DefaultChurnRate     = 2
	DefaultChurnLifetime = 5 * time.Second
	DefaultIdleMax       = 0.25
	// DefaultMediaTimeout bounds the wait for every receiver to get media
	// after the joins.
	DefaultMediaTimeout = 15 * time.Second

	// maxClients bounds the simulated participants of one run.
	maxClients = 5000
	// maxPeers bounds URLPeers (nodes B, C, ... are named by letter).
	maxPeers = 25
)

// Config is one load run. Zero fields get defaults from SetDefaults, except
// Clip (required), URLB (required for cross-node), URLPeers, ServerPIDPeers,
// MetricsURLs and the pin lists (empty: no pinning).
type Config struct {
	// Scenario is one of Scenarios.
	Scenario string
	// URL is the base URL of node A (where publishers and, except for
	// cross-node, subscribers join).
	URL string
	// URLB is the base URL of node B, where cross-node subscribers join.
	URLB string
	// URLPeers are the base URLs of the other nodes of a broadcast (B, C,
	// ...), in one cluster with node A; empty: a broadcast on A alone.
	URLPeers []string
	// Room is the room to use; empty picks a random one.
	Room string
	// Subscribers is N of fanout, cross-node and churn (steady subscribers).
	Subscribers int
	// Participants is P of meeting.
	Participants int
	// Clip is the directory of the clip (video.ivf, audio.ogg).
	Clip string
	// Duration is the measurement window.
	Duration time.Duration
	// Warmup runs between the end of the joins (once media flows) and the
	// start of the window.
	Warmup time.Duration
	// JoinRate is how many participants join per second.
	JoinRate float64
	// ChurnRate is how many churning subscribers join per second (churn).
	ChurnRate float64
	// ChurnLifetime is how long each churning subscriber stays (churn).
	ChurnLifetime time.Duration
	// ServerPID and ServerPIDB are the pids of node A and B for CPU and
	// memory: 0 finds the process listening on the URL's port (the node
	// must run on this machine), negative disables the measurement.
	ServerPID, ServerPIDB int
	// ServerPIDPeers are the pids of the URLPeers nodes (broadcast), in
	// their order, like ServerPID; empty: every one found by its port.
	ServerPIDPeers []int
	// MetricsURLs are the /metrics URLs of the measured nodes in their
	// order (A, then B or the URLPeers), scraped at both ends of the
	// window for the node-to-node link figures (docs/metrics.md); empty:
	// not scraped. When given, one per node.
	MetricsURLs []string
	// PinServer and PinLoad are CPU lists to pin the node(s) and this
	// process to, when the machine has at least two CPUs; empty: no pinning.
	PinServer, PinLoad []int
	// IdleMax aborts the run when, before it starts, the machine is busier
	// than this fraction of all CPUs over one second; 0 disables the check.
	IdleMax float64
	// MediaTimeout bounds the wait for media at every receiver after the
	// joins (receivers still without media then are reported as errors).
	MediaTimeout time.Duration
	// Timeout caps the whole run; 0 derives it from the other fields.
	Timeout time.Duration
	// ProfileURL is the base URL of a node's net/http/pprof server (e.g.
	// http://127.0.0.1:6060); when set, a CPU profile of the node is taken
	// over the measurement window and written to ProfileOut. Empty: none.
	ProfileURL string
	// ProfileOut is the file the profile is written to (required with
	// ProfileURL).
	ProfileOut string
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.Scenario == "" {
		c.Scenario = ScenarioFanout
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Subscribers == 0 {
		c.Subscribers = DefaultSubscribers
	}
	if c.Participants == 0 {
		c.Participants = DefaultParticipants
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.JoinRate == 0 {
		c.JoinRate = DefaultJoinRate
	}
	if c.ChurnRate == 0 {
		c.ChurnRate = DefaultChurnRate
	}
	if c.ChurnLifetime == 0 {
		c.ChurnLifetime = DefaultChurnLifetime
	}
	if c.MediaTimeout == 0 {
		c.MediaTimeout = DefaultMediaTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = c.autoTimeout()
	}
}

// autoTimeout is the time the joins, the media wait, the warm-up and the
// window take, plus a minute for closing and slack.
func (c *Config) autoTimeout() time.Duration {
	joins := c.Subscribers + 1
	if c.Scenario == ScenarioMeeting {
		joins = c.Participants
	}
	d := time.Duration(float64(joins) / c.JoinRate * float64(time.Second))
	d += c.MediaTimeout + c.Warmup + c.Duration + time.Minute
	if c.Scenario == ScenarioChurn {
		d += c.ChurnLifetime + JoinTimeout
	}
	return d
}

// Validate reports the first invalid field, naming its flag.
func (c *Config) Validate() error {
	switch {
	case !validScenario(c.Scenario):
		return fmt.Errorf("load: --scenario %q: want one of %v", c.Scenario, Scenarios())
	case c.Room != "" && !roomPattern.MatchString(c.Room):
		return fmt.Errorf("load: --room %q: want 1-64 of A-Z a-z 0-9 _ -", c.Room)
	case c.Clip == "":
		return errors.New("load: --clip is required (a directory with video.ivf and audio.ogg; make one with `confab-load clip`)")
	case c.Scenario == ScenarioCrossNode && c.URLB == "":
		return errors.New("load: --url-b is required for the cross-node scenario")
	case len(c.URLPeers) > 0 && c.Scenario != ScenarioBroadcast:
		return fmt.Errorf("load: --url-peer is for the broadcast scenario, not %s", c.Scenario)
	case len(c.URLPeers) > maxPeers:
		return fmt.Errorf("load: %d --url-peer: want at most %d", len(c.URLPeers), maxPeers)
	case len(c.ServerPIDPeers) > 0 && len(c.ServerPIDPeers) != len(c.URLPeers):
		return fmt.Errorf("load: %d --server-pid-peer for %d --url-peer: want one per peer or none", len(c.ServerPIDPeers), len(c.URLPeers))
	case len(c.MetricsURLs) > 0 && len(c.MetricsURLs) != c.nodeCount():
		return fmt.Errorf("load: %d --metrics-url for %d nodes: want one per node (A first) or none", len(c.MetricsURLs), c.nodeCount())
	case c.Scenario == ScenarioBroadcast && c.Subscribers < c.nodeCount():
		return fmt.Errorf("load: --subscribers %d: the broadcast needs at least one viewer per node (%d)", c.Subscribers, c.nodeCount())
	case c.Subscribers < 1 || c.Subscribers > maxClients:
		return fmt.Errorf("load: --subscribers %d: want 1..%d", c.Subscribers, maxClients)
	case c.Participants < 2 || c.Participants > maxClients:
		return fmt.Errorf("load: --participants %d: want 2..%d", c.Participants, maxClients)
	case c.Duration <= 0:
		return fmt.Errorf("load: --duration %v: must be positive", c.Duration)
	case c.Warmup < 0:
		return fmt.Errorf("load: --warmup %v: must not be negative", c.Warmup)
	case c.JoinRate <= 0 || c.JoinRate > 1000:
		return fmt.Errorf("load: --join-rate %v: want more than 0 and at most 1000 per second", c.JoinRate)
	case c.ChurnRate <= 0 || c.ChurnRate > 100:
		return fmt.Errorf("load: --churn-rate %v: want more than 0 and at most 100 per second", c.ChurnRate)
	case c.ChurnLifetime <= 0:
		return fmt.Errorf("load: --churn-lifetime %v: must be positive", c.ChurnLifetime)
	case c.IdleMax < 0 || c.IdleMax > 1:
		return fmt.Errorf("load: --idle-max %v: want a fraction between 0 and 1", c.IdleMax)
	case c.MediaTimeout <= 0:
		return fmt.Errorf("load: media timeout %v: must be positive", c.MediaTimeout)
	case c.Timeout <= 0:
		return fmt.Errorf("load: --timeout %v: must be positive", c.Timeout)
	}
	for _, cpu := range append(append([]int(nil), c.PinServer...), c.PinLoad...) {
		if cpu < 0 || cpu > 1023 {
			return fmt.Errorf("load: CPU %d in --pin-server/--pin-load out of range", cpu)
		}
	}
	if _, err := wsURL(c.URL, "x"); err != nil {
		return fmt.Errorf("load: --url: %w", err)
	}
	if c.URLB != "" {
		if _, err := wsURL(c.URLB, "x"); err != nil {
			return fmt.Errorf("load: --url-b: %w", err)
		}
	}
	for _, u := range c.URLPeers {
		if _, err := wsURL(u, "x"); err != nil {
			return fmt.Errorf("load: --url-peer: %w", err)
		}
	}
	for _, u := range c.MetricsURLs {
		if err := checkHTTPURL(u); err != nil {
			return fmt.Errorf("load: --metrics-url: %w", err)
		}
	}
	return c.validateProfile()
}

// nodeCount is how many nodes the scenario uses: A, plus B for
// cross-node, plus the peers of a broadcast.
func (c *Config) nodeCount() int {
	if c.Scenario == ScenarioCrossNode {
		return 2
	}
	return 1 + len(c.URLPeers)
}

// checkHTTPURL accepts http(s)://host... URLs.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port/path", raw)
	}
	return nil
}

// validateProfile checks ProfileURL and ProfileOut.
func (c *Config) validateProfile() error {
	switch {
	case c.ProfileURL == "" && c.ProfileOut == "":
		return nil
	case c.ProfileURL == "":
		return errors.New("load: --pprof-out needs --pprof-url")
	case c.ProfileOut == "":
		return errors.New("load: --pprof-url needs --pprof-out")
	}
	if err := checkHTTPURL(c.ProfileURL); err != nil {
		return fmt.Errorf("load: --pprof-url: %w", err)
	}
	return nil
}

func validScenario(s string) bool {
	return slices.Contains(Scenarios(), s)
}
