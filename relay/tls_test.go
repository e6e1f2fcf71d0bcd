package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "confab relay test"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLS: with a certificate the server also serves TURN over TLS
// (turns:), where a valid credential allocates and a wrong one does not.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	peer := listenPeer(t)
	s, err := New(Config{
		ListenIP:        "127.0.0.1",
		RelayIP:         "127.0.0.1",
		TLSCertificates: []tls.Certificate{cert},
		Secret:          testSecret,
		Peers:           []netip.AddrPort{peer.LocalAddr().(*net.UDPAddr).AddrPort()},
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer func() { _ = s.Close() }()
	_, port, _ := net.SplitHostPort(s.TLSAddr())
	if want := "turns:127.0.0.1:" + port + "?transport=tcp"; !slices.Contains(s.URLs(), want) {
		t.Errorf("URLs() = %v, want %s among them", s.URLs(), want)
	}
	good := s.Credential("alice", time.Now())
	for _, tc := range []struct {
		name string
		cred Credential
		ok   bool
	}{
		{"valid", good, true},
		{"wrong password", Credential{Username: good.Username, Password: "x" + good.Password}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", s.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Fatalf("tls dial: %v", err)
			}
			stun := turn.NewSTUNConn(conn)
			defer func() { _ = stun.Close() }()
			client, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: s.TLSAddr(), TURNServerAddr: s.TLSAddr(), Conn: stun,
				Username: tc.cred.Username, Password: tc.cred.Password, Realm: DefaultRealm, RTO: 100 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer client.Close()
			if err := client.Listen(); err != nil {
				t.Fatalf("Listen: %v", err)
			}
			relayed, err := client.Allocate()
			if tc.ok != (err == nil) {
				t.Fatalf("Allocate over TLS: err = %v, want success %v", err, tc.ok)
			}
			if relayed != nil {
				_ = relayed.Close()
			}
		})
	}
}
