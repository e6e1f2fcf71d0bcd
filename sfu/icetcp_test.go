package sfu

import (
	"net"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// tcpOnly restricts a test client to TCP candidates: it gathers no UDP
// candidate and reaches the engine only through its passive ICE-TCP
// candidates (the client's side of the connection is active).
func tcpOnly(se *webrtc.SettingEngine) {
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
}

// TestICETCP: with Config.ICETCP the engine listens on TCP at its UDP
// port number, and clients that can use TCP only publish and receive
// media through it; the selected candidate pairs of both are TCP.
func TestICETCP(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.ICETCP = true })
	tcp, ok := e.TCPAddr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("TCPAddr() = %v, want a *net.TCPAddr", e.TCPAddr())
	}
	if udp := e.UDPAddr().(*net.UDPAddr); tcp.Port != udp.Port || !tcp.IP.Equal(udp.IP) {
		t.Fatalf("ICE-TCP listens on %v, want the UDP socket's address %v", tcp, udp)
	}

	pub := joinClientWith(t, e, "r", "alice", tcpOnly)
	sub := joinClientWith(t, e, "r", "bob", tcpOnly)
	pub.publishVP8(ctx)
	prod := waitProducers(ctx, t, pub.p.Room(), 1)[0]
	waitMedia(ctx, t, sub, prod)

	for _, tc := range []struct {
		name string
		pc   *webrtc.PeerConnection
	}{
		{"publisher", pub.pubPC()},
		{"subscriber", sub.sub.PC()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair := selectedPair(t, tc.pc)
			if pair.Local.Protocol != webrtc.ICEProtocolTCP || pair.Remote.Protocol != webrtc.ICEProtocolTCP {
				t.Fatalf("selected pair %s, want TCP on both ends", pair)
			}
			if pair.Remote.Port != uint16(tcp.Port) {
				t.Errorf("remote candidate port %d, want the ICE-TCP port %d", pair.Remote.Port, tcp.Port)
			}
		})
	}
}

// TestICETCPOff: without Config.ICETCP the engine has no TCP listener.
func TestICETCPOff(t *testing.T) {
	e := newTestEngine(t, nil)
	if a := e.TCPAddr(); a != nil {
		t.Fatalf("TCPAddr() = %v without ICETCP, want nil", a)
	}
}

// selectedPair returns the selected ICE candidate pair of a connected
// peer connection, through its DTLS transport.
func selectedPair(t *testing.T, pc *webrtc.PeerConnection) *webrtc.ICECandidatePair {
	t.Helper()
	if pc == nil {
		t.Fatal("no peer connection")
	}
	var dtls *webrtc.DTLSTransport
	for _, tr := range pc.GetTransceivers() {
		if s := tr.Sender(); s != nil && s.Transport() != nil {
			dtls = s.Transport()
			break
		}
		if r := tr.Receiver(); r != nil && r.Transport() != nil {
			dtls = r.Transport()
			break
		}
	}
	if dtls == nil {
		t.Fatal("peer connection has no DTLS transport")
	}
	pair, err := dtls.ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected candidate pair: %v, %v", pair, err)
	}
	return pair
}

// pubPC returns the client's publisher peer connection (nil before
// publishing).
func (c *client) pubPC() *webrtc.PeerConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pub
}

// TestListenMedia: the media sockets on an ephemeral port share one port
// number for UDP and ICE-TCP; a fixed port whose TCP twin is taken is an
// error naming ICE-TCP, and the UDP socket is released again.
func TestListenMedia(t *testing.T) {
	busy, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name    string
		port    int
		iceTCP  bool
		wantErr string
	}{
		{"ephemeral, UDP only", 0, false, ""},
		{"ephemeral, UDP and TCP", 0, true, ""},
		{"fixed port, TCP twin taken", busyPort, true, "for ICE-TCP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tt.port}
			conn, ln, err := listenMedia("udp4", addr, tt.iceTCP)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("listenMedia = %v, want an error containing %q", err, tt.wantErr)
				}
				again, err := net.ListenUDP("udp4", addr)
				if err != nil {
					t.Fatalf("the UDP port was not released: %v", err)
				}
				_ = again.Close()
				return
			}
			if err != nil {
				t.Fatalf("listenMedia: %v", err)
			}
			defer conn.Close()
			if !tt.iceTCP {
				if ln != nil {
					t.Fatalf("a TCP listener without ICE-TCP: %v", ln.Addr())
				}
				return
			}
			defer ln.Close()
			if u, p := conn.LocalAddr().(*net.UDPAddr).Port, ln.Addr().(*net.TCPAddr).Port; u != p {
				t.Fatalf("UDP port %d, TCP port %d, want one number", u, p)
			}
		})
	}
}
