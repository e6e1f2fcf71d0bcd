package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Transport-wide congestion control on the send side: twccInterceptor
// stamps a transport-wide sequence number (the transport-cc RTP header
// extension) on every packet a peer connection sends, records it in the
// peer connection's bweEstimator (bwe.go), and hands the receiver's TWCC
// feedback to the estimator. It replaces pion's twcc.HeaderExtensionInterceptor
// and pkg/gcc, which allocate per packet; nothing here allocates per packet
// and the interceptor starts no goroutine.
//
// Wiring, for the engine's peer connections (engineAPI in media.go; the
// client peer connections NewAPI builds do not need it): after the codecs
// are registered and before RegisterDefaultInterceptorsWithOptions, so
// that this interceptor is the innermost writer (closest to the wire: its
// send times are the latest, and packets an interceptor resends get a new
// transport-wide sequence number):
//
//	f, err := configureTWCC(m, ir, bweConfig{})
//	// ... webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, opts...)
//	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), ...)
//	pc, err := api.NewPeerConnection(webrtc.Configuration{})
//	est := f.estimator() // est.TargetBitrate(), est.AckedBitrate(), est.State()
//
// A factory serves one peer connection (the engine builds an API per peer
// connection): the transport-wide sequence numbers and the estimate belong
// to one transport. Feedback only arrives while someone reads RTCP from
// the peer connection's RTPSenders (the engine's Consumer does), since
// pion runs the RTCP interceptors inside RTPSender.Read.

// errTWCCFactoryReused is returned by twccFactory.NewInterceptor when the
// factory already built the interceptor of another peer connection (an
// API with configureTWCC shared by two peer connections).
var errTWCCFactoryReused = errors.New("sfu: twcc factory used by a second peer connection")

// configureTWCC registers the transport-cc header extension (video and
// audio, both directions) and feedback on m, and adds a new twccFactory
// with an estimator configured by cfg to ir, which it returns. Call it
// after the codecs are registered. Registering the extension again, as
// webrtc.ConfigureTWCCSender (part of the default interceptors) does for
// the receive side, is harmless: pion keeps one entry per URI.
func configureTWCC(m *webrtc.MediaEngine, ir *interceptor.Registry, cfg bweConfig) (*twccFactory, error) {
	for _, typ := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, typ)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, typ); err != nil {
			return nil, fmt.Errorf("sfu: register transport-cc header extension: %w", err)
		}
	}
	f := newTWCCFactory(cfg)
	ir.Add(f)
	return f, nil
}

// twccFactory is the interceptor.Factory of one peer connection's
// twccInterceptor; it owns the peer connection's estimator.
type twccFactory struct {
	est  *bweEstimator
	now  func() int64 // monotonic ns (useClock)
	used atomic.Bool
	// fast, when set, is the peer connection's fast write path
	// (fastwrite.go): the writers send through it instead of pion's SRTP
	// session once it is ready.
	fast *fastPath
}

// newTWCCFactory returns a factory with a new estimator configured by cfg
// and a monotonic clock.
func newTWCCFactory(cfg bweConfig) *twccFactory {
	start := time.Now()
	return &twccFactory{
		est: newBWEEstimator(cfg),
		// +1: a zero send time never occurs.
		now: func() int64 { return int64(time.Since(start)) + 1 },
	}
}

// estimator returns the estimator of the factory's peer connection (valid
// before the peer connection exists).
func (f *twccFactory) estimator() *bweEstimator { return f.est }

// useClock replaces the factory's clock (monotonic ns, never 0) before the
// peer connection is created. Reading the monotonic clock is about half of
// the per-packet cost of the interceptor (more on VMs with kvm-clock); the
// engine may pass a clock that the fan-out reads once per packet for all
// subscribers instead. Tests pass simulated time.
func (f *twccFactory) useClock(now func() int64) { f.now = now }

// NewInterceptor implements interceptor.Factory. pion calls it once, from
// NewPeerConnection; a second call fails with errTWCCFactoryReused.
func (f *twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	if f.used.Swap(true) {
		return nil, errTWCCFactoryReused
	}
	return &twccInterceptor{est: f.est, now: f.now, fast: f.fast}, nil
}

// twccInterceptor is the interceptor of one peer connection: it numbers the
// packets of every local stream that negotiated transport-cc with one
// shared counter and feeds TWCC feedback to the estimator.
type twccInterceptor struct {
	interceptor.NoOp
	est  *bweEstimator
	now  func() int64
	seq  atomic.Uint32 // next transport-wide sequence number (low 16 bits)
	fast *fastPath     // nil: pion's write path only
}

// BindLocalStream wraps the writer of a stream whose negotiated header
// extensions include transport-cc (with a one-byte-header ID); other
// streams are left alone, or only take the fast write path when the peer
// connection has one.
func (i *twccInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID >= 1 && e.ID <= 14 {
			return &twccWriter{next: w, ic: i, id: uint8(e.ID), ext: make([]rtp.Extension, 0, 4)}
		}
	}
	if i.fast != nil {
		return &fastWriter{next: w, fast: i.fast}
	}
	return w
}

// BindRTCPReader wraps an RTCP reader (one per RTPSender): compound
// packets that contain TWCC feedback are parsed and the feedback is handed
// to the estimator. Others pass untouched, without parsing.
func (i *twccInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil || !hasTWCCFeedback(b[:n]) {
			return n, attr, err
		}
		pkts, perr := attr.GetRTCPPackets(b[:n])
		if perr != nil {
			return n, attr, err
		}
		now := i.now()
		for _, p := range pkts {
			if fb, ok := p.(*rtcp.TransportLayerCC); ok {
				i.est.OnFeedback(fb, now)
			}
		}
		return n, attr, err
	})
}

// twccWriter is the writer of one local stream. Streams of a peer
// connection write concurrently, and so may two goroutines on one stream:
// the engine's NACK retransmissions (Producer.resend, on the consumer's
// RTCP goroutine) and the fan-out write to the same RTPSender, as does
// pion's nack responder. mu serialises writes on the stream for as long as
// the header points into buf and ext (the next writers marshal it).
type twccWriter struct {
	next interceptor.RTPWriter
	ic   *twccInterceptor
	id   uint8

	mu  sync.Mutex
	buf [2]byte         // the extension payload of the packet being written
	ext []rtp.Extension // backing array of the header's extensions
	fs  fastStream      // the stream's path when ic.fast is set
}

// Write implements interceptor.RTPWriter: it sets the transport-cc
// extension, records the packet in the estimator and writes it on. The
// header's extension list is rebuilt in the writer's own backing array
// (copying extensions already set), so that neither the list nor the
// payload allocates and no other writer's array is modified. A header
// that cannot carry the extension is written without it.
func (w *twccWriter) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if h == nil {
		return w.next.Write(h, payload, a)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ext = w.ext[:0]
	if h.Extension {
		w.ext = append(w.ext, h.Extensions...)
	}
	h.Extensions = w.ext
	if err := h.SetExtension(w.id, w.buf[:]); err != nil {
		return w.writeOn(h, payload, a)
	}
	w.ext = h.Extensions
	seq := uint16(w.ic.seq.Add(1) - 1)
	binary.BigEndian.PutUint16(w.buf[:], seq)
	w.ic.est.OnSent(seq, w.ic.now(), h.MarshalSize()+len(payload)+int(h.PaddingSize))
	return w.writeOn(h, payload, a)
}

// writeOn writes the packet to pion's SRTP session, or to the fast write
// path when the peer connection has one (every packet of the stream takes
// the path the stream decided on). Called with w.mu held.
func (w *twccWriter) writeOn(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if w.ic.fast != nil {
		return w.fs.write(w.ic.fast, w.next, h, payload, a)
	}
	return w.next.Write(h, payload, a)
}

// RTCP packet type and feedback format of TWCC feedback (transport layer
// feedback, FMT 15; draft-holmer-rmcat-transport-wide-cc-extensions-01,
// section 3.1).
const (
	twccRTCPType = 205
	twccRTCPFmt  = 15
)

// hasTWCCFeedback reports whether a (compound) RTCP packet contains a TWCC
// feedback packet, without allocating.
func hasTWCCFeedback(b []byte) bool {
	for len(b) >= 4 {
		if b[1] == twccRTCPType && b[0]&0x1f == twccRTCPFmt {
			return true
		}
		l := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if l > len(b) {
			return false
		}
		b = b[l:]
	}
	return false
}
