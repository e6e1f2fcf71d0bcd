package sfu

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// vanishingConn is a UDP socket whose network can be made to vanish: once
// cut, every packet written is dropped and every packet received is
// discarded, as when the peer's host crashes or loses the network (no
// close_notify, no RST: just silence).
type vanishingConn struct {
	net.PacketConn
	cut atomic.Bool
}

func (c *vanishingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

func (c *vanishingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// vanishingClient joins a client whose peer connections all use one
// vanishingConn.
func vanishingClient(t *testing.T, e *Engine, room, name string) (*client, *vanishingConn) {
	t.Helper()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	conn := &vanishingConn{PacketConn: udp}
	mux := webrtc.NewICEUDPMux(nil, conn)
	t.Cleanup(func() { _ = mux.Close() })
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	api, err := NewAPI(se)
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	return joinClientAPI(t, e, room, name, api), conn
}

// TestICESilentPeerClosed: a publisher whose network vanishes (no close,
// just silence) is closed by the engine once ICE declares its connection
// failed (ICEDisconnectedTimeout + ICEFailedTimeout, 8s by default, instead
// of pion's 30s); the others get participant-left and producer-removed.
// The measured time is printed, not asserted.
func TestICESilentPeerClosed(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	pub, conn := vanishingClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	pub.publishVP8(ctx)
	prod := waitProducers(ctx, t, pub.p.Room(), 1)[0]
	waitMedia(ctx, t, sub, prod)

	cut := time.Now()
	conn.cut.Store(true)
	select {
	case <-pub.p.Done():
	case <-ctx.Done():
		t.Fatal("participant with a vanished network was not closed")
	}
	t.Logf("silent participant closed %v after its network vanished (ICE disconnected %v + failed %v)",
		time.Since(cut).Round(10*time.Millisecond), DefaultICEDisconnectedTimeout, DefaultICEFailedTimeout)
	// EventClosed is sent right after Done is closed.
	var closed []Event
	waitUntil(ctx, t, "EventClosed at alice", func() bool {
		closed = closed[:0]
		for _, ev := range pub.rec.snapshot() {
			if ev.Type == EventClosed {
				closed = append(closed, ev)
			}
		}
		return len(closed) > 0
	})
	if len(closed) != 1 || !errors.Is(closed[0].Err, ErrConnectionFailed) {
		t.Errorf("closed events = %+v, want one with ErrConnectionFailed", closed)
	}
	waitUntil(ctx, t, "producer-removed and participant-left at bob", func() bool {
		return sub.rec.count(isProducerEvent(EventProducerRemoved, prod.ID)) == 1 &&
			sub.rec.count(isParticipantEvent(EventParticipantLeft, pub.p.ID())) == 1
	})
}

func TestICEConfig(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr bool
	}{
		{"defaults", func(*Config) {}, false},
		{"custom", func(c *Config) {
			c.ICEDisconnectedTimeout, c.ICEFailedTimeout, c.ICEKeepaliveInterval = time.Second, time.Second, 200*time.Millisecond
		}, false},
		{"negative disconnected", func(c *Config) { c.ICEDisconnectedTimeout = -time.Second }, true},
		{"negative failed", func(c *Config) { c.ICEFailedTimeout = -time.Second }, true},
		{"negative keepalive", func(c *Config) { c.ICEKeepaliveInterval = -time.Second }, true},
		{"keepalive not below disconnected", func(c *Config) { c.ICEKeepaliveInterval = 3 * time.Second }, true},
		{"restart window", func(c *Config) { c.ICERestartWindow = 10 * time.Second }, false},
		{"restart window not above disconnected", func(c *Config) { c.ICERestartWindow = time.Second }, true},
		{"negative restart window", func(c *Config) { c.ICERestartWindow = -time.Second }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			tt.mutate(&c)
			c.SetDefaults()
			if err := c.Validate(); (err != nil) != tt.wantErr {
				t.Errorf("Validate = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
	var c Config
	c.SetDefaults()
	if c.ICEDisconnectedTimeout != DefaultICEDisconnectedTimeout || c.ICEFailedTimeout != DefaultICEFailedTimeout ||
		c.ICEKeepaliveInterval != DefaultICEKeepaliveInterval || c.ICERestartWindow != DefaultICERestartWindow {
		t.Errorf("ICE defaults = %v %v %v %v", c.ICEDisconnectedTimeout, c.ICEFailedTimeout, c.ICEKeepaliveInterval, c.ICERestartWindow)
	}
}
