package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// H264 fmtp line negotiated by the engine (constrained baseline 3.1,
// packetization-mode 1).
const h264Fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

func videoFeedback() []webrtc.RTCPFeedback {
	return []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBGoogREMB},
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBTransportCC},
	}
}

func audioFeedback() []webrtc.RTCPFeedback {
	return []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}
}

// opusCodec is Opus as the engine registers it: in-band FEC and DTX.
func opusCodec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1;usedtx=1", RTCPFeedback: audioFeedback(),
		},
		PayloadType: 111,
	}
}

// engineCodecs is the codec set registered on every MediaEngine.
func engineCodecs() []struct {
	params webrtc.RTPCodecParameters
	typ    webrtc.RTPCodecType
} {
	return []struct {
		params webrtc.RTPCodecParameters
		typ    webrtc.RTPCodecType
	}{
		{opusCodec(), webrtc.RTPCodecTypeAudio},
		{redCodec(), webrtc.RTPCodecTypeAudio}, // red.go
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback(),
			},
			PayloadType: 96,
		}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: h264Fmtp,
				RTCPFeedback: videoFeedback(),
			},
			PayloadType: 102,
		}, webrtc.RTPCodecTypeVideo},
		// Retransmissions on their own SSRC (RFC 4588), for each video codec.
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=96"},
			PayloadType:        97,
		}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=102"},
			PayloadType:        103,
		}, webrtc.RTPCodecTypeVideo},
	}
}

// NewMediaEngine returns a fresh MediaEngine with the engine's codec set
// (Opus with in-band FEC and DTX, RED over Opus, VP8, H264 42e01f packetization-mode=1,
// with nack, nack pli, ccm fir, goog-remb and transport-cc feedback for
// video, and RTX for both video codecs). Each peer connection needs
// its own MediaEngine. Addition to the spec (useful for test clients).
func NewMediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range engineCodecs() {
		if err := m.RegisterCodec(c.params, c.typ); err != nil {
			return nil, fmt.Errorf("sfu: register codec %s: %w", c.params.MimeType, err)
		}
	}
	return m, nil
}

// NewAPI builds a webrtc.API with its own MediaEngine (NewMediaEngine) and
// its own interceptor registry (webrtc.RegisterDefaultInterceptors), using
// the given SettingEngine. Addition to the spec (used by tests and tools
// for client peer connections; the engine's own peer connections differ
// only in answering NACKs from the producers' shared caches).
func NewAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	return newAPI(se)
}

// engineAPI builds the API of one engine peer connection: like NewAPI, but
// pion's nack responder is kept out of the send path (its stream filter
// accepts no stream), because the engine answers NACKs itself from one
// cache per producer instead of one copy of every packet per subscriber
// (see nack.go), and the engine's own transport-wide congestion control
// interceptor (twcc.go) numbers outgoing packets and feeds the send-side
// bandwidth estimator (bwe.go) it returns. Every other default interceptor
// (NACK generator, RTCP reports, stats, TWCC feedback) is registered as
// usual.
//
// fast, when not nil, is the peer connection's fast write path
// (fastwrite.go): its DTLS hooks are installed on se (a copy) and the
// TWCC writers send through it.
func engineAPI(se webrtc.SettingEngine, fast *fastPath) (*webrtc.API, *bweEstimator, error) {
	m, err := NewMediaEngine()
	if err != nil {
		return nil, nil, err
	}
	ir := &interceptor.Registry{}
	// Innermost writer (registered first): send times closest to the wire.
	f, err := configureTWCC(m, ir, bweConfig{})
	if err != nil {
		return nil, nil, fmt.Errorf("sfu: register twcc: %w", err)
	}
	if fast != nil {
		f.fast = fast
		fast.hook(&se)
	}
	// Publishers' audio levels (speaking.go); received only.
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI},
		webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverDirectionRecvonly); err != nil {
		return nil, nil, fmt.Errorf("sfu: register audio level extension: %w", err)
	}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, webrtc.WithNackResponderOptions(
		nack.ResponderStreamsFilter(func(*interceptor.StreamInfo) bool { return false }))); err != nil {
		return nil, nil, fmt.Errorf("sfu: register interceptors: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se)), f.estimator(), nil
}

func newAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	m, err := NewMediaEngine()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, fmt.Errorf("sfu: register interceptors: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se)), nil
}

// srtpProfiles is the engine's SRTP protection profile preference: AES-GCM
// first (an order of magnitude cheaper than AES-CM with HMAC-SHA1 on CPUs
// with AES-NI and carry-less multiply; Chromium and Firefox support it),
// AES-CM-HMAC-SHA1-80 for peers without it.
func srtpProfiles() []dtls.SRTPProtectionProfile {
	return []dtls.SRTPProtectionProfile{
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
	}
}

// transport is the engine's network plumbing: the UDP socket, the batching
// wrapper the ICE mux writes through, the mux, and the SettingEngine shared
// (by value) by every peer connection.
type transport struct {
	conn  *net.UDPConn
	batch *batchConn
	mux   ice.UDPMux
	// tcpMux serves ICE-TCP on tcp (both nil unless Config.ICETCP).
	tcpMux ice.TCPMux
	tcp    *net.TCPListener
	se     webrtc.SettingEngine
	// restartSE is se with the ICE failed timeout of connections whose
	// client restarts ICE itself (Config.ICERestartWindow).
	restartSE webrtc.SettingEngine
	// fast: peer connections get a fast write path (Config.FastWrite).
	fast bool
	log  *slog.Logger
}

// newTransport opens the UDP socket on cfg.UDPAddr and builds the shared
// SettingEngine (ICE timeouts from cfg apply to every peer connection:
// participants' and node-to-node links). The caller closes it with close.
func newTransport(cfg *Config, onUnhandled func([]byte, netip.AddrPort)) (*transport, error) {
	addr, err := net.ResolveUDPAddr("udp", cfg.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("sfu: resolve udp addr %q: %w", cfg.UDPAddr, err)
	}
	network, netType, tcpNetType := "udp4", webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4
	if addr.IP != nil && addr.IP.To4() == nil {
		network, netType, tcpNetType = "udp6", webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP6
	}
	conn, ln, err := listenMedia(network, addr, cfg.ICETCP)
	if err != nil {
		return nil, err
	}
	lf := pionLoggerFactory{log: cfg.Logger.With("component", "sfu")}
	batch := newBatchConn(conn, cfg.WriteBatch)
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{
		Logger:            lf.NewLogger("udpmux"),
		UDPConn:           batch,
		OnUnhandledPacket: onUnhandled,
	})

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetSRTPProtectionProfiles(srtpProfiles()...)
	se.SetICEUDPMux(mux)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{netType})
	se.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout, cfg.ICEKeepaliveInterval)
	t := &transport{conn: conn, batch: batch, mux: mux, fast: cfg.FastWrite, log: cfg.Logger.With("component", "sfu")}
	if cfg.ICETCP {
		// The same port number as the UDP socket (an ephemeral UDP port
		// included), so one firewall rule number covers both.
		t.tcp = ln
		t.tcpMux = webrtc.NewICETCPMux(lf.quietLogger("tcpmux"), newTrackingListener(ln), iceTCPReadBuffer)
		se.SetICETCPMux(t.tcpMux)
		se.SetNetworkTypes([]webrtc.NetworkType{netType, tcpNetType})
	}
	if len(cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        append([]string(nil), cfg.PublicIPs...),
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteAppend,
		}); err != nil {
			_ = t.close()
			return nil, fmt.Errorf("sfu: public ips: %w", err)
		}
	}
	t.se = se
	t.restartSE = se
	t.restartSE.SetICETimeouts(cfg.ICEDisconnectedTimeout, cfg.ICERestartWindow-cfg.ICEDisconnectedTimeout, cfg.ICEKeepaliveInterval)
	return t, nil
}

// iceTCPReadBuffer is how many packets the ICE-TCP mux buffers per
// connection before its reader blocks.
const iceTCPReadBuffer = 64

// ephemeralMediaTries is how many ephemeral UDP ports listenMedia tries
// before giving up on finding one whose TCP twin is free.
const ephemeralMediaTries = 16

// listenMedia opens the media UDP socket on addr and, with iceTCP, the
// ICE-TCP listener on the same port number (an ephemeral UDP port
// included, so one firewall rule number covers both). When the port is
// ephemeral (0) and the TCP port of the number the kernel gave for UDP
// is taken, it tries another ephemeral port, up to ephemeralMediaTries
// times; a fixed port that is taken is an error at once.
func listenMedia(network string, addr *net.UDPAddr, iceTCP bool) (*net.UDPConn, *net.TCPListener, error) {
	for try := 1; ; try++ {
		conn, err := net.ListenUDP(network, addr)
		if err != nil {
			return nil, nil, fmt.Errorf("sfu: listen udp %s: %w", addr, err)
		}
		if !iceTCP {
			return conn, nil, nil
		}
		tcpAddr := &net.TCPAddr{IP: addr.IP, Port: conn.LocalAddr().(*net.UDPAddr).Port, Zone: addr.Zone}
		ln, err := net.ListenTCP("tcp"+network[3:], tcpAddr)
		if err == nil {
			return conn, ln, nil
		}
		_ = conn.Close()
		if addr.Port != 0 || !errors.Is(err, syscall.EADDRINUSE) || try == ephemeralMediaTries {
			return nil, nil, fmt.Errorf("sfu: listen tcp %s for ICE-TCP: %w", tcpAddr, err)
		}
	}
}

// newPeerConnection builds a peer connection with its own API (publisher
// connections, WHEP viewers, node-to-node links: never a fast write path,
// so that the links' transport byte counts stay complete).
func (t *transport) newPeerConnection() (*webrtc.PeerConnection, error) {
	pc, _, err := t.buildPeerConnection(t.se, false)
	return pc, err
}

// newRestartablePeerConnection builds a peer connection with its own API
// for a client that restarts ICE itself (Config.ICERestartWindow): WHIP
// publishers and WHEP viewers, never with a fast write path.
func (t *transport) newRestartablePeerConnection() (*webrtc.PeerConnection, error) {
	pc, _, err := t.buildPeerConnection(t.restartSE, false)
	return pc, err
}

// newEstimatedPeerConnection builds a subscriber peer connection with its
// own API and returns the bandwidth estimator of what it sends. With
// Config.FastWrite it gets a fast write path (fastwrite.go).
func (t *transport) newEstimatedPeerConnection() (*webrtc.PeerConnection, *bweEstimator, error) {
	return t.buildPeerConnection(t.se, t.fast)
}

// buildPeerConnection builds a peer connection with its own API on se,
// with a fast write path if fastWrite.
func (t *transport) buildPeerConnection(se webrtc.SettingEngine, fastWrite bool) (*webrtc.PeerConnection, *bweEstimator, error) {
	var fast *fastPath
	var conf webrtc.Configuration
	if fastWrite {
		fast = newFastPath(t.batch, t.log)
		// The fast path encrypts without RTP header encryption (RFC 9335).
		conf.RTPHeaderEncryptionPolicy = webrtc.RTPHeaderEncryptionPolicyDisable
	}
	api, est, err := engineAPI(se, fast)
	if err != nil {
		return nil, nil, err
	}
	pc, err := api.NewPeerConnection(conf)
	if err != nil {
		return nil, nil, fmt.Errorf("sfu: new peer connection: %w", err)
	}
	if fast != nil {
		fast.attach(pc)
	}
	return pc, est, nil
}

// close closes the muxes, which close the UDP socket and the TCP listener.
func (t *transport) close() error {
	var err error
	if t.tcpMux != nil {
		err = t.tcpMux.Close()
	}
	return errors.Join(t.mux.Close(), err)
}

// tcpAddr is the ICE-TCP listener's address, nil without ICE-TCP.
func (t *transport) tcpAddr() net.Addr {
	if t.tcp == nil {
		return nil
	}
	return t.tcp.Addr()
}
