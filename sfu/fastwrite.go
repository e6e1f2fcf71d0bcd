package sfu

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// The fast write path (Config.FastWrite, experimental): the RTP packets a
// peer connection sends leave through the engine's own SRTP context
// straight to the engine's UDP socket (batchConn), instead of through
// pion's SRTP session, its mux endpoint, the ICE connection and the ICE
// UDP mux. pion's interceptors still see every packet, because the switch
// is made in the innermost one (twccWriter, twcc.go): the stats
// interceptor, the sender-report interceptor (RTP/NTP mapping, packet and
// octet counts) and the engine's TWCC stamping and send record stay as
// they are. RTCP keeps pion's SRTCP session (its own index).
//
// SRTP keys. pion exports neither its SRTP keys nor its session, so the
// peer connection's SettingEngine gets two DTLS hooks: the key log writer
// (the master secret, with the client random) and the server hello hook
// (the server random, the cipher suite and the negotiated SRTP profile).
// From these the RFC 5705 exporter (TLS PRF over the master secret, label
// "EXTRACTOR-dtls_srtp" and both randoms) gives the RFC 5764 keying
// material, exactly as pion computes its own. The server hello is only
// seen when the engine is the DTLS server, which it is when it offers
// (the subscriber connection: browsers and pion answer "active"); as DTLS
// client a peer connection keeps pion's path.
//
// Destination. The selected candidate pair (ICETransport's change
// callback): only a UDP pair whose local candidate is on the engine's
// socket is written directly, to the remote candidate's address; any other
// pair (ICE-TCP) goes through pion.
//
// Consistency of the SRTP rollover counter. An SSRC must be encrypted by
// one context, or the contexts' rollover counters drift apart after a
// sequence wrap. Each local stream (twccWriter, or fastWriter for a
// stream without transport-cc) decides once, at its first
// packet, which path it takes (fastStream): the fast path when it is ready
// then, else pion's for good. A fast stream whose pair later becomes
// unusable (a move to ICE-TCP) goes over to pion's path for good, which is
// consistent as long as no SSRC of the peer connection has wrapped yet
// (pion's context then starts at the same rollover counter 0); after a
// wrap its packets are dropped instead, since pion's context would encrypt
// them with the wrong counter. See docs/performance.md.

// fastPath is the fast write path of one peer connection.
type fastPath struct {
	batch *batchConn
	port  uint16 // the engine socket's port
	log   *slog.Logger

	// Handshake state, from pion's DTLS goroutine (hooks).
	hmu          sync.Mutex
	haveHello    bool
	serverRandom [handshake.RandomLength]byte
	suite        uint16
	profile      srtp.ProtectionProfile

	// connected reports whether the DTLS transport is connected (set by
	// attach, before any write).
	connected func() bool
	// keyed: the SRTP context is set up (ctx is not replaced afterwards).
	keyed atomic.Bool
	dst   atomic.Pointer[netip.AddrPort] // usable destination, nil: none

	// wmu serialises encryption (the context is not safe for concurrent
	// use; streams of a peer connection write concurrently) and guards
	// everything below.
	wmu     sync.Mutex
	ctx     *srtp.Context
	hdr     rtp.Header // scratch header for EncryptRTP's parse
	buf     [batchSlotSize + 64]byte
	wrapped bool // an SSRC's rollover counter left 0
	warned  bool // the drop after a wrap was logged
}

// newFastPath returns the fast path of one peer connection writing to
// batch; hook it into the peer connection's SettingEngine (hook) before
// it is built and attach the peer connection afterwards.
func newFastPath(batch *batchConn, log *slog.Logger) *fastPath {
	f := &fastPath{batch: batch, log: log}
	if la, ok := batch.conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }); ok {
		f.port = la.AddrPort().Port()
	}
	f.hdr.CSRC = make([]uint32, 0, 15)
	f.hdr.Extensions = make([]rtp.Extension, 0, 8)
	return f
}

// hook installs the DTLS hooks on se (a per-peer-connection copy).
func (f *fastPath) hook(se *webrtc.SettingEngine) {
	se.SetDTLSKeyLogWriter(f)
	se.SetDTLSServerHelloMessageHook(f.serverHello)
}

// attach follows pc's selected candidate pair.
func (f *fastPath) attach(pc *webrtc.PeerConnection) {
	dt := pc.SCTP().Transport()
	f.connected = func() bool { return dt.State() == webrtc.DTLSTransportStateConnected }
	dt.ICETransport().OnSelectedCandidatePairChange(f.onPair)
}

// serverHello records what the engine's DTLS server sends: its random,
// the cipher suite and the SRTP profile. It returns the message unchanged.
func (f *fastPath) serverHello(m handshake.MessageServerHello) handshake.Message {
	f.hmu.Lock()
	defer f.hmu.Unlock()
	f.haveHello = true
	f.serverRandom = m.Random.MarshalFixed()
	if m.CipherSuiteID != nil {
		f.suite = *m.CipherSuiteID
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			f.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	return &m
}

// Write implements io.Writer for DTLS's key log: one NSS key log line per
// handshake ("CLIENT_RANDOM <client random> <master secret>"). With the
// server hello seen before, it sets up the SRTP context. It never fails
// (a line it cannot use leaves pion's path in place).
func (f *fastPath) Write(line []byte) (int, error) {
	fields := bytes.Fields(line)
	if len(fields) != 3 || string(fields[0]) != "CLIENT_RANDOM" {
		return len(line), nil
	}
	clientRandom, err1 := hex.DecodeString(string(fields[1]))
	master, err2 := hex.DecodeString(string(fields[2]))
	if err1 != nil || err2 != nil || len(clientRandom) != handshake.RandomLength {
		return len(line), nil
	}
	f.hmu.Lock()
	ok, serverRandom, suite, profile := f.haveHello, f.serverRandom, f.suite, f.profile
	f.hmu.Unlock()
	if !ok || f.keyed.Load() {
		return len(line), nil // DTLS client, or a second handshake: pion's path
	}
	ctx, err := localSRTPContext(master, clientRandom, serverRandom[:], suite, profile)
	if err != nil {
		f.log.Debug("fast write unavailable", "err", err)
		return len(line), nil
	}
	f.wmu.Lock()
	f.ctx = ctx
	f.wmu.Unlock()
	f.keyed.Store(true)
	return len(line), nil
}

// localSRTPContext derives the DTLS-SRTP keying material (RFC 5764 section
// 4.2, through the RFC 5705 exporter) and returns an SRTP context with the
// server's write key and salt.
func localSRTPContext(master, clientRandom, serverRandom []byte, suite uint16, profile srtp.ProtectionProfile) (*srtp.Context, error) {
	var h func() hash.Hash
	switch suite {
	case 0xc02b, 0xc02f, 0xcca8, 0xcca9, 0xc009, 0xc00a, 0xc013, 0xc014:
		// ECDHE AES-128-GCM, ChaCha20-Poly1305 and AES-CBC-SHA suites:
		// the TLS 1.2 PRF with SHA-256.
		h = sha256.New
	case 0xc02c, 0xc030: // ECDHE AES-256-GCM-SHA384
		h = sha512.New384
	default:
		return nil, fmt.Errorf("%w: cipher suite %#04x", errFastWriteUnsupported, suite)
	}
	cfg := srtp.Config{Profile: profile}
	exp := tlsExporter{master: master, clientRandom: clientRandom, serverRandom: serverRandom, hash: h}
	if err := cfg.ExtractSessionKeysFromDTLS(exp, false); err != nil {
		return nil, fmt.Errorf("sfu: fast write: srtp keys: %w", err)
	}
	ctx, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		return nil, fmt.Errorf("sfu: fast write: srtp context: %w", err)
	}
	return ctx, nil
}

// tlsExporter is the TLS 1.2 keying material exporter (RFC 5705) of one
// handshake, without context.
type tlsExporter struct {
	master, clientRandom, serverRandom []byte
	hash                               func() hash.Hash
}

// ExportKeyingMaterial implements srtp.KeyingMaterialExporter.
func (e tlsExporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, fmt.Errorf("%w: exporter context", errFastWriteUnsupported)
	}
	seed := make([]byte, 0, len(label)+len(e.clientRandom)+len(e.serverRandom))
	seed = append(append(append(seed, label...), e.clientRandom...), e.serverRandom...)
	return prf.PHash(e.master, seed, length, e.hash)
}

// onPair follows the selected candidate pair: a UDP pair on the engine's
// socket makes its remote address the destination, any other none.
func (f *fastPath) onPair(p *webrtc.ICECandidatePair) {
	f.dst.Store(fastDestination(p, f.port))
}

// fastDestination returns the address the fast path writes to for pair p
// on the engine socket with port, or nil when p is not written directly.
func fastDestination(p *webrtc.ICECandidatePair, port uint16) *netip.AddrPort {
	if p == nil || p.Local == nil || p.Remote == nil || port == 0 {
		return nil
	}
	l, r := p.Local, p.Remote
	if l.Protocol != webrtc.ICEProtocolUDP || r.Protocol != webrtc.ICEProtocolUDP || l.Port != port {
		return nil
	}
	switch l.Typ {
	case webrtc.ICECandidateTypeHost, webrtc.ICECandidateTypeSrflx, webrtc.ICECandidateTypePrflx:
	default:
		return nil // relay: the packet would have to go to the TURN server
	}
	ip, err := netip.ParseAddr(r.Address)
	if err != nil { // a hostname (mDNS)
		return nil
	}
	a := netip.AddrPortFrom(ip.Unmap(), r.Port)
	return &a
}

// ready reports whether a stream may start on the fast path: keys known,
// DTLS connected (so the peer has its keys too) and a usable pair.
func (f *fastPath) ready() bool {
	return f.keyed.Load() && f.dst.Load() != nil && f.connected != nil && f.connected()
}

// write encrypts the packet (h, payload) with the fast path's context and
// queues it on the engine socket. ok is false when there is no usable
// destination (nothing was encrypted).
func (f *fastPath) write(h *rtp.Header, payload []byte) (n int, ok bool, err error) {
	dst := f.dst.Load()
	if dst == nil || !f.keyed.Load() {
		return 0, false, nil
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	size, err := marshalRTP(f.buf[:batchSlotSize], h, payload)
	if err != nil {
		return 0, true, err
	}
	enc, err := f.ctx.EncryptRTP(f.buf[:], f.buf[:size], &f.hdr)
	if err != nil {
		return 0, true, err
	}
	if !f.wrapped {
		if roc, _ := f.ctx.ROC(h.SSRC); roc != 0 {
			f.wrapped = true
		}
	}
	if _, err := f.batch.WriteToAddrPort(enc, *dst); err != nil {
		return 0, true, err
	}
	return size, true, nil
}

// canLeave reports whether a fast stream may go over to pion's SRTP
// session (no SSRC of the peer connection has wrapped), and logs once
// when it may not.
func (f *fastPath) canLeave() bool {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if !f.wrapped {
		return true
	}
	if !f.warned {
		f.warned = true
		f.log.Warn("fast write: selected pair not on the engine's UDP socket after a sequence wrap; media of this peer connection is dropped")
	}
	return false
}

// marshalRTP writes the packet (h, payload, h.PaddingSize bytes of
// padding) into buf and returns its size.
func marshalRTP(buf []byte, h *rtp.Header, payload []byte) (int, error) {
	n, err := h.MarshalTo(buf)
	if err != nil {
		return 0, err
	}
	pad := int(h.PaddingSize)
	if n+len(payload)+pad > len(buf) {
		return 0, errFastWriteTooLarge
	}
	n += copy(buf[n:], payload)
	if pad > 0 {
		buf[0] |= 0x20 // padding bit
		clear(buf[n : n+pad-1])
		buf[n+pad-1] = byte(pad)
		n += pad
	}
	return n, nil
}

// Path of a local stream (fastStream.mode).
const (
	fastUndecided = iota
	fastOn
	fastOff
)

// fastStream is the path decision of one local stream; it is owned by the
// stream's twccWriter (under its mu).
type fastStream struct {
	mode uint8
}

// write sends the packet through the fast path f when the stream is on it
// (or starts on it now), else through next (pion's SRTP session).
func (s *fastStream) write(f *fastPath, next interceptor.RTPWriter, h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	switch s.mode {
	case fastOff:
		return next.Write(h, payload, a)
	case fastUndecided:
		if !f.ready() {
			n, err := next.Write(h, payload, a)
			if err == nil {
				s.mode = fastOff // pion's context has seen this stream
			}
			return n, err
		}
		s.mode = fastOn
		f.log.Debug("fast write: stream on the fast write path", "ssrc", h.SSRC)
	}
	n, ok, err := f.write(h, payload)
	if ok {
		return n, err
	}
	if !f.canLeave() {
		return 0, errFastWriteDropped
	}
	s.mode = fastOff
	return next.Write(h, payload, a)
}

// fastWriter is the innermost writer of a local stream without
// transport-cc on a peer connection with a fast write path.
type fastWriter struct {
	next interceptor.RTPWriter
	fast *fastPath
	mu   sync.Mutex // serialises the stream's writers (fs)
	fs   fastStream
}

// Write implements interceptor.RTPWriter.
func (w *fastWriter) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fs.write(w.fast, w.next, h, payload, a)
}
