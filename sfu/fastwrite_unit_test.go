package sfu

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// TestFastWriteKeys runs real DTLS handshakes (pion/dtls on loopback, the
// fast path's hooks on the server) for each cipher suite and SRTP profile
// the fast path supports, and checks that a packet the fast path's
// context encrypts decrypts with the keys the DTLS client exports: the
// fast path derived the server's SRTP write key and salt.
func TestFastWriteKeys(t *testing.T) {
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	for _, tc := range []struct {
		name    string
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
	}{
		{"aes128gcm-sha256/aead-aes128gcm", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM},
		{"aes256gcm-sha384/aead-aes128gcm", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_128_GCM},
		{"chacha20/aead-aes256gcm", dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, dtls.SRTP_AEAD_AES_256_GCM},
		{"aes256cbc-sha/aes128cm-sha1-80", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := listenLoopback(t)
			f := newFastPath(newBatchConn(sock, 1), slog.New(slog.DiscardHandler))
			sc, cc := listenLoopback(t), listenLoopback(t)
			srv, err := dtls.ServerWithOptions(sc, cc.LocalAddr(),
				dtls.WithCertificates(cert), dtls.WithCipherSuites(tc.suite),
				dtls.WithSRTPProtectionProfiles(tc.profile), dtls.WithKeyLogWriter(f),
				dtls.WithServerHelloMessageHook(f.serverHello))
			if err != nil {
				t.Fatalf("dtls server: %v", err)
			}
			defer srv.Close()
			cli, err := dtls.ClientWithOptions(cc, sc.LocalAddr(),
				dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
				dtls.WithCipherSuites(tc.suite), dtls.WithSRTPProtectionProfiles(tc.profile))
			if err != nil {
				t.Fatalf("dtls client: %v", err)
			}
			defer cli.Close()
			done := make(chan error, 1)
			go func() { done <- srv.HandshakeContext(testContext(t)) }()
			if err := cli.HandshakeContext(testContext(t)); err != nil {
				t.Fatalf("client handshake: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("server handshake: %v", err)
			}
			if !f.keyed.Load() {
				t.Fatal("the fast path has no SRTP context after the handshake")
			}
			state, ok := cli.ConnectionState()
			if !ok {
				t.Fatal("client: no connection state")
			}
			cfg := srtp.Config{Profile: srtp.ProtectionProfile(tc.profile)}
			if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
				t.Fatalf("client keys: %v", err)
			}
			dec, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
			if err != nil {
				t.Fatalf("client context: %v", err)
			}
			plain, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 42},
				Payload: []byte("forwarded payload")}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			enc, err := f.ctx.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatalf("encrypt: %v", err)
			}
			got, err := dec.DecryptRTP(nil, enc, nil)
			if err != nil {
				t.Fatalf("the client cannot decrypt the fast path's packet: %v", err)
			}
			if !bytes.Equal(got, plain) {
				t.Errorf("decrypted %x, want %x", got, plain)
			}
		})
	}
}

// listenLoopback opens a UDP socket on loopback, closed with the test.
func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestFastDestination checks which selected candidate pairs the fast path
// writes to directly: UDP pairs whose local candidate is on the engine's
// socket (host, server or peer reflexive), to the remote's address; not
// ICE-TCP, relayed local candidates, another port or unresolved names.
func TestFastDestination(t *testing.T) {
	const port = 50000
	cand := func(proto webrtc.ICEProtocol, typ webrtc.ICECandidateType, addr string, port uint16) *webrtc.ICECandidate {
		return &webrtc.ICECandidate{Protocol: proto, Typ: typ, Address: addr, Port: port}
	}
	udp, tcp := webrtc.ICEProtocolUDP, webrtc.ICEProtocolTCP
	host := webrtc.ICECandidateTypeHost
	for _, tc := range []struct {
		name          string
		local, remote *webrtc.ICECandidate
		want          string // "" = not written directly
	}{
		{"udp host", cand(udp, host, "10.0.0.1", port), cand(udp, host, "10.0.0.2", 4000), "10.0.0.2:4000"},
		{"udp prflx remote", cand(udp, host, "10.0.0.1", port), cand(udp, webrtc.ICECandidateTypePrflx, "192.0.2.7", 5000), "192.0.2.7:5000"},
		{"udp srflx local", cand(udp, webrtc.ICECandidateTypeSrflx, "198.51.100.1", port), cand(udp, host, "10.0.0.2", 4000), "10.0.0.2:4000"},
		{"udp remote relay", cand(udp, host, "10.0.0.1", port), cand(udp, webrtc.ICECandidateTypeRelay, "203.0.113.9", 3478), "203.0.113.9:3478"},
		{"ipv6", cand(udp, host, "::1", port), cand(udp, host, "::1", 4000), "[::1]:4000"},
		{"tcp", cand(tcp, host, "10.0.0.1", port), cand(tcp, host, "10.0.0.2", 4000), ""},
		{"local relay", cand(udp, webrtc.ICECandidateTypeRelay, "10.0.0.1", port), cand(udp, host, "10.0.0.2", 4000), ""},
		{"other socket", cand(udp, host, "10.0.0.1", port+1), cand(udp, host, "10.0.0.2", 4000), ""},
		{"mdns remote", cand(udp, host, "10.0.0.1", port), cand(udp, host, "abc.local", 4000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if d := fastDestination(webrtc.NewICECandidatePair(tc.local, tc.remote), port); d != nil {
				got = d.String()
			}
			if got != tc.want {
				t.Errorf("destination %q, want %q", got, tc.want)
			}
		})
	}
	if d := fastDestination(nil, port); d != nil {
		t.Errorf("no pair: destination %v, want none", d)
	}
}

// TestFastStream checks the path decisions of a local stream on a fast
// write path with a real SRTP context and socket (pion's SRTP session is
// the recording writer next): a stream starts on the fast path only if it
// is ready at its first packet and then stays on its path; a fast stream
// whose pair becomes unusable goes over to pion's path for good while no
// rollover counter has left 0, and drops its packets after that.
func TestFastStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steps: "ready"/"unready" toggle the fast path's readiness,
		// "nodst" drops the destination, "wrap" sets the rollover
		// counter, "w" writes a packet.
		steps    []string
		wantFast int // datagrams at the receiver
		wantPion int // packets given to pion's writer
		wantErr  int // writes that failed
	}{
		{"ready at first packet", []string{"ready", "w", "w", "w"}, 3, 0, 0},
		{"not ready at first packet", []string{"unready", "w", "ready", "w", "w"}, 0, 3, 0},
		{"pair lost before a wrap", []string{"ready", "w", "nodst", "w", "ready", "w"}, 1, 2, 0},
		{"pair lost after a wrap", []string{"ready", "wrap", "w", "nodst", "w", "w"}, 1, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, peerSock := listenLoopback(t), listenLoopback(t)
			f := newFastPath(newBatchConn(sock, 1), slog.New(slog.DiscardHandler))
			ctx, err := srtp.CreateContext(make([]byte, 16), make([]byte, 12), srtp.ProtectionProfileAeadAes128Gcm)
			if err != nil {
				t.Fatal(err)
			}
			f.ctx = ctx
			f.keyed.Store(true)
			dst := peerSock.LocalAddr().(*net.UDPAddr).AddrPort()
			ready := false
			f.connected = func() bool { return ready }
			next := &countingWriter{}
			var s fastStream
			h := rtp.Header{Version: 2, PayloadType: 96, SSRC: 42}
			errs := 0
			for _, step := range tc.steps {
				switch step {
				case "ready":
					ready = true
					f.dst.Store(&dst)
				case "unready":
					ready = false
				case "nodst":
					f.dst.Store(nil)
				case "wrap":
					ctx.SetROC(h.SSRC, 1)
				case "w":
					h.SequenceNumber++
					if _, err := s.write(f, next, &h, []byte("payload"), nil); err != nil {
						errs++
					}
				}
			}
			if next.n != tc.wantPion || errs != tc.wantErr {
				t.Errorf("pion's writer got %d packets and %d writes failed, want %d and %d", next.n, errs, tc.wantPion, tc.wantErr)
			}
			if got := drainDatagrams(t, peerSock); got != tc.wantFast {
				t.Errorf("%d datagrams on the fast path, want %d", got, tc.wantFast)
			}
		})
	}
}

// countingWriter stands for pion's SRTP session: it counts the packets.
type countingWriter struct{ n int }

func (w *countingWriter) Write(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
	w.n++
	return 0, nil
}

// drainDatagrams counts the datagrams waiting on c.
func drainDatagrams(t *testing.T, c *net.UDPConn) int {
	t.Helper()
	buf := make([]byte, 1600)
	n := 0
	for {
		if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			return n
		}
		n++
	}
}
