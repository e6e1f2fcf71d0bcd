package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/confab/confab/sfu"
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
	// request's own host is always allowed.
	AllowedOrigins []string
	// Logger is the base logger. Default slog.Default().
	Logger *slog.Logger
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
	for _, o := range c.AllowedOrigins {
		if o == "" || o == "*" {
			return fmt.Errorf("web: config: AllowedOrigins: %q is not allowed (name hosts explicitly)", o)
		}
		if _, err := path.Match(o, ""); err != nil {
			return fmt.Errorf("web: config: AllowedOrigins: %q: %w", o, err)
		}
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
	// Ready is consulted by GET /readyz: 200 when it returns nil, else 503.
	// Optional: nil means always ready.
	Ready func() error
	// Mounts maps a path to a handler mounted as is (the path is not
	// stripped). A path ending in "/" is a prefix ("/cluster/" serves
	// "/cluster/" and everything below it), otherwise an exact path. Any
	// HTTP method is routed. Optional.
	Mounts map[string]http.Handler
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
