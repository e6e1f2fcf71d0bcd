package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web/access"
)

// Values of Config.Auth.
const (
	// AuthOpen: anyone who reaches the node may join any room.
	AuthOpen = "open"
	// AuthToken: a join needs an access token (package access).
	AuthToken = "token"
)

// Config defaults.
const (
	// DefaultMaxMessageBytes is the largest signaling message accepted from a
	// client (64 KiB); larger ones close the socket with StatusMessageTooBig.
	DefaultMaxMessageBytes = 64 << 10
	// DefaultOutboxSize is the number of messages queued per connection
	// before the client counts as too slow and is disconnected.
	DefaultOutboxSize = 256
	// DefaultWriteTimeout bounds how long writing one message to a client
	// may take before the connection is dropped.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultRateLimit is the sustained number of client messages per
	// second one connection may send; messages beyond it are refused with
	// the error code "rate-limited".
	DefaultRateLimit = 20
	// DefaultRateBurst is how many messages a connection may send at once
	// (the token bucket's capacity).
	DefaultRateBurst = 50
	// DefaultAbuseFactor: a connection that sends more than this many
	// times the rate limit (sustained, or in one burst) is closed with
	// StatusPolicyViolation.
	DefaultAbuseFactor = 3
	// DefaultPeersTimeout bounds one call of Deps.Peers.
	DefaultPeersTimeout = 2 * time.Second
	// DefaultPlaceTimeout bounds one call of Deps.Place.
	DefaultPlaceTimeout = 3 * time.Second
)

// Admission defaults (admission.go).
const (
	// DefaultMaxConns is the node-wide cap on open signaling connections:
	// room for the thousands of participants a node holds (each has one
	// connection) plus reconnects, well below the file descriptors a
	// tuned node has.
	DefaultMaxConns = 10000
	// DefaultMaxConnsPerIP is the cap per client address: a household or
	// an office behind one NAT address with dozens of people, not a
	// script holding thousands of idle sockets.
	DefaultMaxConnsPerIP = 50
	// DefaultJoinTimeout is how long a signaling connection may stay open
	// without joining (the page joins as soon as the socket opens).
	DefaultJoinTimeout = 10 * time.Second
)

// Config configures a Server. New applies SetDefaults and Validate to its
// own copy, so a zero Config (plus Deps) is usable.
type Config struct {
	// NodeID is shown on pages and sent in "joined". Default: the engine's
	// NodeID.
	NodeID string
	// MaxMessageBytes is the read limit for one signaling message.
	// Default DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// OutboxSize is the per-connection bounded outbox (messages).
	// Default DefaultOutboxSize.
	OutboxSize int
	// WriteTimeout bounds one WebSocket write. Default DefaultWriteTimeout.
	// Addition to the spec.
	WriteTimeout time.Duration
	// AllowedOrigins are extra Origin host patterns (path.Match syntax,
	// e.g. "app.example.com" or "*.example.com"; with "://" matched
	// against scheme://host) allowed to open the signaling WebSocket. The
	// request's own host and the hosts of the cluster's nodes (Deps.Peers)
	// are always allowed.
	AllowedOrigins []string
	// RateLimit is the sustained number of messages per second a client
	// may send on one signaling connection (token bucket refill rate).
	// Zero means DefaultRateLimit; a negative value disables rate limiting.
	RateLimit float64
	// RateBurst is the token bucket's capacity: how many messages a client
	// may send at once. Default DefaultRateBurst.
	RateBurst int
	// AbuseFactor: a client sending more than AbuseFactor times RateLimit
	// (and AbuseFactor times RateBurst at once) is disconnected with
	// StatusPolicyViolation. Default DefaultAbuseFactor; must be >= 1.
	AbuseFactor float64
	// PeersTimeout bounds one call of Deps.Peers. Default
	// DefaultPeersTimeout.
	PeersTimeout time.Duration
	// PlaceTimeout bounds one call of Deps.Place. Default
	// DefaultPlaceTimeout.
	PlaceTimeout time.Duration
	// MaxProtocol is the newest signaling protocol version the node
	// accepts (1 to the newest, which is the default): during a rolling
	// upgrade an operator can keep upgraded nodes on the version the old
	// ones speak. A join of a newer version is refused with
	// "unsupported-version" (the page then joins with an older one).
	MaxProtocol int
	// Auth is AuthOpen (default: anyone may join any room with any name)
	// or AuthToken (joins need an access token signed with one of Keys;
	// the cluster API needs an admin token).
	Auth string
	// Keys are the API keys that sign access tokens (AuthToken).
	Keys access.KeySet
	// Logger is the base logger. Default slog.Default().
	Logger *slog.Logger

	// now is the clock of the rate limiters; nil means time.Now. Tests set
	// it to a fake clock so that floods are judged deterministically.
	now func() time.Time

	// MaxConns caps the open signaling connections of the node (from
	// before the upgrade until the session ends); more are refused with
	// 503 before the upgrade. Default DefaultMaxConns.
	MaxConns int
	// MaxConnsPerIP caps the open signaling connections from one client
	// address (the TCP peer's: behind a reverse proxy, the proxy's); more
	// are refused with 429 before the upgrade. Default
	// DefaultMaxConnsPerIP.
	MaxConnsPerIP int
	// JoinTimeout is how long a signaling connection may stay open before
	// its "join" succeeded; then it is closed with 1008 "join timeout".
	// Default DefaultJoinTimeout.
	JoinTimeout time.Duration

	// joinTimer starts a connection's join deadline: f runs once after d
	// unless stop (which reports whether it prevented f) is called first.
	// nil means time.AfterFunc; the flood test sets a timer it fires
	// itself, so that the deadline passes only when the test says so.
	joinTimer func(d time.Duration, f func()) (stop func() bool)
}

// SetDefaults fills zero fields with their defaults. NodeID stays empty
// (New fills it from the engine).
func (c *Config) SetDefaults() {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.OutboxSize == 0 {
		c.OutboxSize = DefaultOutboxSize
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.AbuseFactor == 0 {
		c.AbuseFactor = DefaultAbuseFactor
	}
	if c.PeersTimeout == 0 {
		c.PeersTimeout = DefaultPeersTimeout
	}
	if c.PlaceTimeout == 0 {
		c.PlaceTimeout = DefaultPlaceTimeout
	}
	if c.MaxProtocol == 0 {
		c.MaxProtocol = protocolLatest
	}
	if c.Auth == "" {
		c.Auth = AuthOpen
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.joinTimer == nil {
		c.joinTimer = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field. It expects SetDefaults to have
// been called.
func (c *Config) Validate() error {
	if c.MaxMessageBytes < 1024 {
		return fmt.Errorf("web: config: MaxMessageBytes %d must be >= 1024", c.MaxMessageBytes)
	}
	if c.OutboxSize < 1 {
		return fmt.Errorf("web: config: OutboxSize %d must be >= 1", c.OutboxSize)
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("web: config: WriteTimeout %v is negative", c.WriteTimeout)
	}
	if math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		return fmt.Errorf("web: config: RateLimit %v is not a finite number", c.RateLimit)
	}
	if c.RateBurst < 1 {
		return fmt.Errorf("web: config: RateBurst %d must be >= 1", c.RateBurst)
	}
	if c.AbuseFactor < 1 {
		return fmt.Errorf("web: config: AbuseFactor %v must be >= 1", c.AbuseFactor)
	}
	if c.MaxProtocol < protocolV1 || c.MaxProtocol > protocolLatest {
		return fmt.Errorf("web: config: MaxProtocol %d must be %d to %d", c.MaxProtocol, protocolV1, protocolLatest)
	}
	switch c.Auth {
	case AuthOpen:
	case AuthToken:
		if c.Keys.Len() == 0 {
			return errors.New("web: config: Auth token needs Keys")
		}
		if c.MaxProtocol < protocolV4 {
			return fmt.Errorf("web: config: Auth token needs MaxProtocol %d or newer (tokens came with it)", protocolV4)
		}
	default:
		return fmt.Errorf("web: config: Auth %q must be %q or %q", c.Auth, AuthOpen, AuthToken)
	}
	if c.PeersTimeout < 0 {
		return fmt.Errorf("web: config: PeersTimeout %v is negative", c.PeersTimeout)
	}
	if c.PlaceTimeout < 0 {
		return fmt.Errorf("web: config: PlaceTimeout %v is negative", c.PlaceTimeout)
	}
	for _, o := range c.AllowedOrigins {
		if o == "" || o == "*" {
			return fmt.Errorf("web: config: AllowedOrigins: %q is not allowed (name hosts explicitly)", o)
		}
		if _, err := path.Match(o, ""); err != nil {
			return fmt.Errorf("web: config: AllowedOrigins: %q: %w", o, err)
		}
	}
	if c.MaxConns < 1 || c.MaxConnsPerIP < 1 {
		return fmt.Errorf("web: config: MaxConns %d and MaxConnsPerIP %d must be >= 1", c.MaxConns, c.MaxConnsPerIP)
	}
	if c.JoinTimeout < 0 {
		return fmt.Errorf("web: config: JoinTimeout %v is negative", c.JoinTimeout)
	}
	if c.Logger == nil {
		return errors.New("web: config: Logger is nil")
	}
	return nil
}

// Deps are the collaborators of a Server, owned by the caller (app); the
// Server never closes them.
type Deps struct {
	// Engine is the media engine signaling sessions join. Required.
	Engine *sfu.Engine
	// Status produces the document served as JSON at GET /api/cluster.
	// Called per request with the request context. Required.
	Status func(ctx context.Context) (any, error)
	// Ready is consulted by GET /readyz: {"status":"ready"} when it returns
	// nil, else 200 {"status":"degraded","reason":...} (the node still
	// serves, e.g. while Consul is unreachable). Optional: nil means always
	// ready. Draining (Server.Drain) overrides it with 503.
	Ready func() error
	// Peers lists the live nodes of the cluster that browsers can reach,
	// this node included: sent in "joined" and "move", used to allow the
	// WebSocket Origin of pages served by another node, and added to the
	// room page's Content-Security-Policy. Called on request goroutines
	// with a context bounded by Config.PeersTimeout; it must be cheap and
	// safe for concurrent use. Optional: nil means this node alone (its URL
	// taken from the request).
	Peers func(ctx context.Context) []Peer
	// Members lists every node the cluster knows of, whether live,
	// draining or recently departed (a superset of Peers). It is used only
	// by the WebSocket Origin check: a page served by a node that is
	// draining or has died must still reach this node, even when this node
	// (just restarted, say) never listed that node among its Peers. Same
	// calling rules as Peers. Optional: nil means Peers alone decides.
	Members func(ctx context.Context) []Peer
	// Place decides, before a participant joins, which node it belongs on
	// (see docs/placement.md). When it names another node the client gets
	// "move" instead of "joined"; ErrClusterFull makes the join fail with
	// "node-full"; any other error is logged and the participant joins
	// here. Called on the session's goroutine with a context bounded by
	// Config.PlaceTimeout; safe for concurrent use. Optional: nil means
	// every participant joins here.
	Place func(ctx context.Context, req PlaceRequest) (Placement, error)
	// Mounts maps a path to a handler mounted as is (the path is not
	// stripped). A path ending in "/" is a prefix ("/cluster/" serves
	// "/cluster/" and everything below it), otherwise an exact path. Any
	// HTTP method is routed. Optional.
	Mounts map[string]http.Handler
	// ObserveJoin is told the join latency of every successful join: the
	// time from the "join" request being handled to the "joined" reply
	// written to the WebSocket. It is called on the session's writer
	// goroutine and must not block (app feeds a histogram). Optional.
	ObserveJoin func(time.Duration)
	// ICEServers returns the ICE servers (this node's TURN server with
	// credentials of that participant) sent in "joined" to a client of
	// protocol version 4 or later. Called on the session's goroutine once
	// per join; must be cheap and safe for concurrent use. Optional: nil
	// sends none.
	ICEServers func(participantID string) []ICEServer
}

// ICEServer is one entry of "joined".iceServers, as the page passes it to
// RTCPeerConnection (the WebRTC RTCIceServer dictionary).
type ICEServer struct {
	// URLs are stun:, turn: or turns: URLs of one server.
	URLs []string `json:"urls"`
	// Username and Credential authenticate with a TURN server.
	Username   string `json:"username,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// Peer is one node of the cluster as browsers see it.
type Peer struct {
	// ID is the node id (as in "joined".nodeId).
	ID string `json:"id"`
	// URL is the node's base URL reachable by browsers, e.g.
	// "https://node2.example.com" or "http://127.0.0.1:8082"; the page
	// opens ws(s)://<host>/rooms/{room}/ws on it.
	URL string `json:"url"`
	// Load is the node's participant count as last recorded (omitted when
	// 0); browsers prefer less loaded nodes when they fail over.
	Load int `json:"load,omitempty"`
}

// PlaceRequest is what Deps.Place decides on.
type PlaceRequest struct {
	// Room is the room being joined.
	Room string
	// Avoid are node ids the client could not reach (from "join".avoid).
	Avoid []string
	// Placed is true when an earlier placement sent the client to this
	// node ("join".placed names it): it stays unless this node is over
	// its load limit.
	Placed bool
}

// Placement is the answer of Deps.Place.
type Placement struct {
	// Node is the chosen node (its URL is needed when it is not this one).
	Node Peer
	// Local is true when the chosen node is this one.
	Local bool
	// Reason is why the node was chosen (logged and shown to the client).
	Reason string
	// Full is true when this node is over its load limit: the "move" then
	// has reason "node-full".
	Full bool
}

func (d *Deps) validate() error {
	if d.Engine == nil {
		return errors.New("web: deps: Engine is required")
	}
	if d.Status == nil {
		return errors.New("web: deps: Status is required")
	}
	for p, h := range d.Mounts {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("web: deps: mount %q must start with /", p)
		}
		if strings.ContainsAny(p, "*:") {
			return fmt.Errorf("web: deps: mount %q must not contain route wildcards (* or :)", p)
		}
		if h == nil {
			return fmt.Errorf("web: deps: mount %q has a nil handler", p)
		}
		if reservedPath(p) {
			return fmt.Errorf("web: deps: mount %q clashes with a built-in route", p)
		}
	}
	return nil
}
