package relay

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// testSecret is the credential key of the test servers.
var testSecret = []byte("0123456789abcdef-test-secret")

// newTestServer starts a TURN server on loopback whose only allowed peer
// is peer.
func newTestServer(t *testing.T, peer netip.AddrPort) *Server {
	t.Helper()
	s, err := New(Config{
		ListenIP: "127.0.0.1",
		RelayIP:  "127.0.0.1",
		Secret:   testSecret,
		TTL:      time.Minute,
		Peers:    []netip.AddrPort{peer},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// listenPeer is a UDP socket standing in for the node's media socket.
func listenPeer(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialTURN makes a pion/turn client of the server over network ("udp" or
// "tcp") with the given credential. The client is closed at cleanup.
func dialTURN(t *testing.T, s *Server, network string, cred Credential) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	var server string
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		conn, server = c, s.UDPAddr().String()
	case "tcp":
		c, err := net.Dial("tcp", s.TCPAddr().String())
		if err != nil {
			t.Fatalf("dial tcp: %v", err)
		}
		conn, server = turn.NewSTUNConn(c), s.TCPAddr().String()
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Conn:           conn,
		Username:       cred.Username,
		Password:       cred.Password,
		Realm:          DefaultRealm,
		RTO:            100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if err := client.Listen(); err != nil {
		t.Fatalf("client Listen: %v", err)
	}
	t.Cleanup(func() {
		client.Close()
		_ = conn.Close()
	})
	return client
}

// TestCredentials: an allocation on the real TURN server, over UDP and
// TCP, succeeds with a credential the server issued and fails with an
// expired one, a wrong password, or another participant's password.
func TestCredentials(t *testing.T) {
	peer := listenPeer(t)
	s := newTestServer(t, peer.LocalAddr().(*net.UDPAddr).AddrPort())
	now := time.Now()
	good := s.Credential("alice", now)
	other := s.Credential("bob", now)
	expired := NewCredential(testSecret, "alice", now.Add(-time.Second))
	wrongKey := NewCredential([]byte("another-secret-of-16+-bytes"), "alice", now.Add(time.Minute))
	for _, tc := range []struct {
		name string
		cred Credential
		ok   bool
	}{
		{"valid", good, true},
		{"expired", expired, false},
		{"wrong HMAC key", wrongKey, false},
		{"wrong password", Credential{Username: good.Username, Password: good.Password + "x"}, false},
		{"other participant's password", Credential{Username: good.Username, Password: other.Password}, false},
		{"username of another participant", Credential{Username: other.Username, Password: good.Password}, false},
		{"expiry changed", Credential{Username: strings.Replace(good.Username, ":", "0:", 1), Password: good.Password}, false},
		{"no expiry", Credential{Username: "alice", Password: password(testSecret, "alice")}, false},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				client := dialTURN(t, s, network, tc.cred)
				relayed, err := client.Allocate()
				if tc.ok != (err == nil) {
					t.Fatalf("Allocate with %q: err = %v, want success %v", tc.cred.Username, err, tc.ok)
				}
				if err != nil {
					return
				}
				defer func() { _ = relayed.Close() }()
				if got := relayed.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.0.0.1" {
					t.Errorf("relayed address %s, want the relay IP 127.0.0.1", relayed.LocalAddr())
				}
			})
		}
	}
}

// TestCredentialFormat: the username is "<expiry>:<participant id>" and
// the password base64(HMAC-SHA1(secret, username)), as the TURN REST API
// scheme (and so any TURN server configured with the same secret) expects.
func TestCredentialFormat(t *testing.T) {
	exp := time.Unix(1893456000, 0)
	for _, tc := range []struct {
		id, username, password string
	}{
		// Reference values: printf '%s' "$username" | openssl dgst -sha1 -hmac "$secret" -binary | base64
		{"p1", "1893456000:p1", "g0cw4f1JDCO4yX4/RP+QNg573XA="},
	} {
		c := NewCredential([]byte("0123456789abcdef"), tc.id, exp)
		if c.Username != tc.username || c.Password != tc.password || !c.Expires.Equal(exp) {
			t.Errorf("NewCredential(%q) = %+v, want %s / %s", tc.id, c, tc.username, tc.password)
		}
	}
}

// TestNoOpenRelay: a client with a valid credential can send through the
// relay to the node's media address, but gets no permission for another
// IP, and datagrams to another port of the allowed IP are dropped.
func TestNoOpenRelay(t *testing.T) {
	media := listenPeer(t)
	other := listenPeer(t) // same IP, another port: e.g. another service of the node
	s := newTestServer(t, media.LocalAddr().(*net.UDPAddr).AddrPort())
	client := dialTURN(t, s, "tcp", s.Credential("alice", time.Now()))
	relayed, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer func() { _ = relayed.Close() }()

	if err := client.CreatePermission(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}); err == nil {
		t.Errorf("CreatePermission for 127.0.0.2 succeeded, want refused")
	}

	for _, tc := range []struct {
		name    string
		to      *net.UDPConn
		arrives bool
	}{
		{"media address", media, true},
		{"other port of the media IP", other, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte("hello " + tc.name)
			got := make(chan []byte, 1)
			go func() {
				buf := make([]byte, 1500)
				_ = tc.to.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, _, err := tc.to.ReadFrom(buf)
				if err != nil {
					got <- nil
					return
				}
				got <- buf[:n]
			}()
			// Several tries: the first datagram may race the permission.
			for i := 0; i < 5; i++ {
				if _, err := relayed.WriteTo(msg, tc.to.LocalAddr()); err != nil {
					t.Fatalf("WriteTo: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			b := <-got
			if arrived := bytes.Equal(b, msg); arrived != tc.arrives {
				t.Fatalf("datagram to %s arrived: %v (%q), want %v", tc.to.LocalAddr(), arrived, b, tc.arrives)
			}
		})
	}
}

// TestConfigValidate: what New refuses.
func TestConfigValidate(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:5000")
	base := Config{RelayIP: "127.0.0.1", Secret: testSecret, Peers: []netip.AddrPort{peer}}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"valid", func(*Config) {}, true},
		{"no relay ip", func(c *Config) { c.RelayIP = "" }, false},
		{"relay ip not an ip", func(c *Config) { c.RelayIP = "example.com" }, false},
		{"short secret", func(c *Config) { c.Secret = []byte("short") }, false},
		{"no peers", func(c *Config) { c.Peers = nil }, false},
		{"peer without port", func(c *Config) { c.Peers = []netip.AddrPort{netip.AddrPortFrom(peer.Addr(), 0)} }, false},
		{"port out of range", func(c *Config) { c.Port = 70000 }, false},
		{"negative ttl", func(c *Config) { c.TTL = -time.Second }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			c.SetDefaults()
			err := c.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("Validate() = %v, want it to wrap ErrConfig", err)
			}
		})
	}
}
