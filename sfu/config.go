package sfu

import (
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Config defaults.
const (
	DefaultNodeID                 = "local"
	DefaultUDPAddr                = "0.0.0.0:50000"
	DefaultKeyframeInterval       = 500 * time.Millisecond
	DefaultMaxParticipantsPerRoom = 100
	DefaultMaxRooms               = 1000
)

// Config configures an Engine. Call SetDefaults, then Validate (New does
// both on its own copy, so callers may pass a zero-ish Config).
type Config struct {
	// NodeID is stamped as Origin on local participants/producers.
	// Default "local".
	NodeID string
	// UDPAddr is host:port of the single ICE UDP mux socket, e.g.
	// "0.0.0.0:50000", or "127.0.0.1:0" in tests (0 = ephemeral port; see
	// Engine.UDPAddr). Default "0.0.0.0:50000".
	UDPAddr string
	// PublicIPs are optional NAT 1:1 IPs advertised in host candidates
	// instead of the local interface addresses.
	PublicIPs []string
	// IncludeLoopback includes loopback candidates (needed on a box with
	// only lo; the app sets true).
	IncludeLoopback bool
	// KeyframeInterval is the minimum gap between keyframe requests sent to
	// one producer. Default 500ms.
	KeyframeInterval time.Duration
	// MaxParticipantsPerRoom limits local participants per room.
	// 0 = default 100.
	MaxParticipantsPerRoom int
	// MaxRooms limits the number of rooms. 0 = default 1000.
	MaxRooms int
	// Logger is the base logger. Default slog.Default().
	Logger *slog.Logger
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID
	}
	if c.UDPAddr == "" {
		c.UDPAddr = DefaultUDPAddr
	}
	if c.KeyframeInterval == 0 {
		c.KeyframeInterval = DefaultKeyframeInterval
	}
	if c.MaxParticipantsPerRoom == 0 {
		c.MaxParticipantsPerRoom = DefaultMaxParticipantsPerRoom
	}
	if c.MaxRooms == 0 {
		c.MaxRooms = DefaultMaxRooms
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field. It expects SetDefaults to have
// been called (zero values that have defaults are rejected).
func (c *Config) Validate() error {
	if c.NodeID == "" {
		return fmt.Errorf("sfu: config: NodeID is empty")
	}
	host, port, err := net.SplitHostPort(c.UDPAddr)
	if err != nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: %w", c.UDPAddr, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: host must be an IP address", c.UDPAddr)
	}
	if _, err := net.LookupPort("udp", port); err != nil {
		return fmt.Errorf("sfu: config: UDPAddr %q: %w", c.UDPAddr, err)
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("sfu: config: PublicIPs: %q is not an IP address", ip)
		}
	}
	if c.KeyframeInterval < 0 {
		return fmt.Errorf("sfu: config: KeyframeInterval %v is negative", c.KeyframeInterval)
	}
	if c.MaxParticipantsPerRoom < 1 {
		return fmt.Errorf("sfu: config: MaxParticipantsPerRoom %d must be >= 1", c.MaxParticipantsPerRoom)
	}
	if c.MaxRooms < 1 {
		return fmt.Errorf("sfu: config: MaxRooms %d must be >= 1", c.MaxRooms)
	}
	if c.Logger == nil {
		return fmt.Errorf("sfu: config: Logger is nil")
	}
	return nil
}
