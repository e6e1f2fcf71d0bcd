package sfu

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"

	"github.com/confab/confab/internal/peer"
)

// twccSink is an RTPWriter that keeps the last header written (its
// extension payloads copied) without allocating once warmed up.
type twccSink struct {
	last   rtp.Header
	tcc    []byte // transport-cc payload of the last header
	writes int
	id     uint8
}

func (s *twccSink) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	s.last = *h
	s.tcc = append(s.tcc[:0], h.GetExtension(s.id)...)
	s.writes++
	return len(payload), nil
}

// twccStreamInfo is the StreamInfo of a stream that negotiated
// transport-cc with extension ID id.
func twccStreamInfo(id int) *interceptor.StreamInfo {
	return &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: sdp.SDESMidURI, ID: 1}, {URI: sdp.TransportCCURI, ID: id},
	}}
}

// newTWCCTestInterceptor returns the interceptor of a new factory whose
// clock returns *clock.
func newTWCCTestInterceptor(t testing.TB, clock *int64) (*twccFactory, *twccInterceptor) {
	t.Helper()
	f := newTWCCFactory(bweConfig{})
	f.useClock(func() int64 { return *clock })
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatalf("NewInterceptor: %v", err)
	}
	return f, i.(*twccInterceptor)
}

// TestTWCCWriter: every packet gets the next transport-wide sequence
// number in the negotiated extension, other extensions are kept (and the
// caller's array untouched), the estimator records send time and size,
// and streams without transport-cc are not wrapped.
func TestTWCCWriter(t *testing.T) {
	// The callers' extension arrays have spare capacity that a writer
	// appending in place would use.
	callers := make([]rtp.Extension, 0, 4)
	withMid := rtp.Header{Version: 2, SSRC: 1, Extensions: callers}
	if err := withMid.SetExtension(1, []byte("m0")); err != nil {
		t.Fatal(err)
	}
	stale := rtp.Header{Version: 2, SSRC: 1, Extensions: make([]rtp.Extension, 0, 4)}
	if err := stale.SetExtension(3, []byte{9, 9}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      int
		header  rtp.Header
		wrapped bool
		wantIDs []uint8
	}{
		{"bare header", 3, rtp.Header{Version: 2, SSRC: 1, CSRC: []uint32{5}}, true, []uint8{3}},
		{"existing extension kept", 3, withMid, true, []uint8{1, 3}},
		{"own extension already set is replaced", 3, stale, true, []uint8{3}},
		{"extension ID beyond the one-byte header", 15, rtp.Header{Version: 2}, false, nil},
		{"transport-cc not negotiated", 0, rtp.Header{Version: 2}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := int64(1000)
			f, ic := newTWCCTestInterceptor(t, &clock)
			sink := &twccSink{id: uint8(tt.id)}
			info := &interceptor.StreamInfo{}
			if tt.id != 0 {
				info = twccStreamInfo(tt.id)
			}
			w := ic.BindLocalStream(info, sink)
			if _, ok := w.(*twccWriter); ok != tt.wrapped {
				t.Fatalf("wrapped = %v, want %v", ok, tt.wrapped)
			}
			if !tt.wrapped {
				return
			}
			payload := make([]byte, 100)
			for seq := uint16(0); seq < 3; seq++ {
				h := tt.header
				clock += 10
				if _, err := w.Write(&h, payload, nil); err != nil {
					t.Fatalf("Write: %v", err)
				}
				var tcc rtp.TransportCCExtension
				if err := tcc.Unmarshal(sink.tcc); err != nil || tcc.TransportSequence != seq {
					t.Fatalf("packet %d: transport-cc %v (%v), want sequence %d", seq, sink.tcc, err, seq)
				}
				if ids := sink.last.GetExtensionIDs(); string(ids) != string(tt.wantIDs) {
					t.Errorf("extension IDs = %v, want %v", ids, tt.wantIDs)
				}
				if _, err := sink.last.Marshal(); err != nil {
					t.Errorf("header does not marshal: %v", err)
				}
				s := f.est.sent[seq]
				if !s.valid || s.seq != seq || s.sent != clock || int(s.size) != sink.last.MarshalSize()+len(payload) {
					t.Errorf("history[%d] = %+v, want sent %d size %d", seq, s, clock, sink.last.MarshalSize()+len(payload))
				}
			}
			// The caller's array: its spare capacity unused, its
			// transport-cc payload (if any) unchanged.
			spare := tt.header.Extensions[len(tt.header.Extensions):cap(tt.header.Extensions)]
			for i := range spare {
				probe := rtp.Header{Extension: true, ExtensionProfile: rtp.ExtensionProfileOneByte, Extensions: spare[i : i+1]}
				if probe.GetExtension(uint8(tt.id)) != nil {
					t.Errorf("caller's extension array written after its length")
				}
			}
			if got := tt.header.GetExtension(uint8(tt.id)); got != nil && string(got) != "\x09\x09" {
				t.Errorf("caller's transport-cc payload changed to %v", got)
			}
		})
	}
}

// TestTWCCWriterDoesNotAllocate: the wrapped writer (numbering, extension,
// history) is allocation-free, with a reset header as the fan-out passes
// it and with one that already carries an extension.
func TestTWCCWriterDoesNotAllocate(t *testing.T) {
	clock := int64(1)
	_, ic := newTWCCTestInterceptor(t, &clock)
	sink := &twccSink{id: 3, tcc: make([]byte, 0, 2)}
	w := ic.BindLocalStream(twccStreamInfo(3), sink)
	payload := make([]byte, 1000)
	base := rtp.Header{Version: 2, SSRC: 1, PayloadType: 96}
	var h rtp.Header
	withExt := base
	if err := withExt.SetExtension(1, []byte("m0")); err != nil {
		t.Fatal(err)
	}
	for _, start := range []rtp.Header{base, withExt} {
		allocs := testing.AllocsPerRun(1000, func() {
			h = start
			clock++
			if _, err := w.Write(&h, payload, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Write with %d extensions: %v allocations, want 0", len(start.Extensions), allocs)
		}
	}
}

// twccSeqSink is an RTPWriter for concurrent writers that collects the
// transport-wide sequence numbers written.
type twccSeqSink struct {
	id   uint8
	mu   sync.Mutex
	seqs map[uint16]int
}

func (s *twccSeqSink) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	var tcc rtp.TransportCCExtension
	err := tcc.Unmarshal(h.GetExtension(s.id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	s.seqs[tcc.TransportSequence]++
	return len(payload), nil
}

// TestTWCCWriterConcurrent: two streams of a peer connection, each written
// by two goroutines (fan-out and NACK retransmissions), share one
// sequence: every number is used exactly once and recorded.
func TestTWCCWriterConcurrent(t *testing.T) {
	const streams, writers, packets = 2, 2, 500
	clock := atomic.Int64{}
	f := newTWCCFactory(bweConfig{})
	f.useClock(func() int64 { return clock.Add(1) })
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	sink := &twccSeqSink{id: 3, seqs: make(map[uint16]int)}
	var wg sync.WaitGroup
	for range streams {
		w := i.BindLocalStream(twccStreamInfo(3), sink)
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := make([]byte, 100)
				for range packets {
					h := rtp.Header{Version: 2, SSRC: 1}
					if _, err := w.Write(&h, payload, nil); err != nil {
						t.Errorf("Write: %v", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	const total = streams * writers * packets
	if len(sink.seqs) != total {
		t.Errorf("%d distinct sequence numbers, want %d", len(sink.seqs), total)
	}
	for seq := range uint16(total) {
		if n := sink.seqs[seq]; n != 1 {
			t.Errorf("sequence %d written %d times", seq, n)
		}
		if s := f.est.sent[seq]; !s.valid || s.seq != seq {
			t.Errorf("sequence %d not in the history: %+v", seq, s)
		}
	}
}

// BenchmarkTWCCWrite measures the send path the interceptor adds per
// packet (clock read, numbering, extension, history), with the default
// monotonic clock and with an injected clock that costs nothing. It also
// reports the CPU time of the benchmarking thread per packet (cpu-ns/op),
// which stays meaningful on a loaded machine.
func BenchmarkTWCCWrite(b *testing.B) {
	var fake int64
	clocks := []struct {
		name string
		now  func() int64
	}{
		{"monotonic-clock", nil},
		{"injected-clock", func() int64 { fake++; return fake }},
	}
	for _, c := range clocks {
		b.Run(c.name, func(b *testing.B) {
			f := newTWCCFactory(bweConfig{})
			if c.now != nil {
				f.useClock(c.now)
			}
			i, err := f.NewInterceptor("pc")
			if err != nil {
				b.Fatal(err)
			}
			sink := &twccSink{id: 3, tcc: make([]byte, 0, 2)}
			w := i.BindLocalStream(twccStreamInfo(3), sink)
			payload := make([]byte, 1100)
			base := rtp.Header{Version: 2, SSRC: 1, PayloadType: 96}
			var h rtp.Header
			b.ReportAllocs()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			start := twccThreadCPU(b)
			for b.Loop() {
				h = base
				h.SequenceNumber++
				_, _ = w.Write(&h, payload, nil)
			}
			b.ReportMetric(float64(twccThreadCPU(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// twccThreadCPU returns the CPU time of the calling OS thread.
func twccThreadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatalf("clock_gettime: %v", err)
	}
	return time.Duration(ts.Nano())
}

// TestTWCCFactory: a factory serves one peer connection; configureTWCC
// registers alongside pion's default interceptors.
func TestTWCCFactory(t *testing.T) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	f, err := configureTWCC(m, ir, bweConfig{InitialBitrate: 700_000})
	if err != nil {
		t.Fatalf("configureTWCC: %v", err)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatalf("RegisterDefaultInterceptors after configureTWCC: %v", err)
	}
	if got := f.estimator().TargetBitrate(); got != 700_000 {
		t.Errorf("initial target = %d, want 700000", got)
	}
	if _, err := ir.Build("first"); err != nil {
		t.Fatalf("first Build: %v", err)
	}
	if _, err := ir.Build("second"); !errors.Is(err, errTWCCFactoryReused) {
		t.Errorf("second Build: %v, want errTWCCFactoryReused", err)
	}
}

// TestTWCCRTCPReader: TWCC feedback in a compound packet reaches the
// estimator; the packet is returned unchanged.
func TestTWCCRTCPReader(t *testing.T) {
	clock := int64(1)
	f, ic := newTWCCTestInterceptor(t, &clock)
	w := ic.BindLocalStream(twccStreamInfo(3), &twccSink{id: 3})
	for range 30 {
		clock += int64(time.Millisecond)
		h := rtp.Header{Version: 2, SSRC: 1}
		if _, err := w.Write(&h, make([]byte, 1000), nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := twcc.NewRecorder(2)
	for seq := range uint16(30) {
		rec.Record(1, seq, 100_000+int64(seq)*1000)
	}
	fbs := rec.BuildFeedbackPacket()
	if len(fbs) != 1 {
		t.Fatalf("recorder built %d feedback packets, want 1", len(fbs))
	}
	fb := fbs[0]
	tests := []struct {
		name string
		pkts []rtcp.Packet
		want bool // feedback processed
	}{
		{"no feedback", []rtcp.Packet{&rtcp.ReceiverReport{SSRC: 9}, &rtcp.PictureLossIndication{MediaSSRC: 1}}, false},
		{"feedback in a compound", []rtcp.Packet{&rtcp.ReceiverReport{SSRC: 9}, fb}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := rtcp.Marshal(tt.pkts)
			if err != nil {
				t.Fatal(err)
			}
			if got := hasTWCCFeedback(raw); got != tt.want {
				t.Errorf("hasTWCCFeedback = %v, want %v", got, tt.want)
			}
			r := ic.BindRTCPReader(interceptor.RTCPReaderFunc(
				func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
					return copy(b, raw), a, nil
				}))
			clock += int64(50 * time.Millisecond)
			buf := make([]byte, 1500)
			n, _, err := r.Read(buf, nil)
			if err != nil || string(buf[:n]) != string(raw) {
				t.Fatalf("Read = %d, %v; want the packet unchanged", n, err)
			}
			if got := f.est.sent[29].status == bweReceived; got != tt.want {
				t.Errorf("feedback processed = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTWCCPeerConnections sends about 1 Mbit/s of video for 2 s between
// two real pion peer connections over loopback: the sender's API has the
// TWCC interceptor, the receiver pion's defaults (which send TWCC
// feedback). The receiver must see the transport-cc extension and the
// estimator feedback matching the send rate.
func TestTWCCPeerConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := func(withTWCC bool) (*webrtc.API, *twccFactory) {
		m := &webrtc.MediaEngine{}
		if err := m.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
		ir := &interceptor.Registry{}
		var f *twccFactory
		if withTWCC {
			var err error
			if f, err = configureTWCC(m, ir, bweConfig{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
			t.Fatal(err)
		}
		return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), f
	}
	sendAPI, f := api(true)
	recvAPI, _ := api(false)

	var (
		wg                   sync.WaitGroup
		received, withTCCExt atomic.Int64
	)
	recv := peer.NewAnswerer(recvAPI, func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		var id uint8
		for _, e := range r.GetParameters().HeaderExtensions {
			if e.URI == sdp.TransportCCURI {
				id = uint8(e.ID)
			}
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			received.Add(1)
			if id != 0 && len(pkt.GetExtension(id)) == 2 {
				withTCCExt.Add(1)
			}
		}
	})
	defer func() { _ = recv.Close() }()
	pc, err := sendAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() {
		close(stop)
		_ = pc.Close()
		_ = recv.Close()
		wg.Wait()
	}()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	err = peer.Publish(ctx, pc, func(offer webrtc.SessionDescription) (webrtc.SessionDescription, error) {
		return recv.Answer(offer, nil)
	})
	if err != nil {
		t.Fatalf("negotiate: %v", err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("not connected")
	}

	wg.Add(1)
	go func() { // RTCP reader: runs the interceptors' RTCP path
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	const (
		interval = 10 * time.Millisecond
		payload  = 1200
		sendRate = payload * 8 * int(time.Second/interval) // 960 kbit/s of payload
	)
	// Packets are written on a ticker, catching up after late ticks, so
	// the rate holds on a loaded machine.
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}, Payload: make([]byte, payload)}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for written := 0; time.Since(start) < 2*time.Second; {
		<-tick.C
		for due := int(time.Since(start) / interval); written < due; written++ {
			pkt.SequenceNumber++
			pkt.Timestamp += 900
			if err := track.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // the last feedback

	est := f.estimator()
	if !est.HasFeedback() {
		t.Fatal("no TWCC feedback reached the estimator")
	}
	t.Logf("received %d packets (%d with transport-cc); target %d, acked %d bit/s, state %v",
		received.Load(), withTCCExt.Load(), est.TargetBitrate(), est.AckedBitrate(), est.State())
	if received.Load() == 0 || withTCCExt.Load() != received.Load() {
		t.Errorf("%d of %d received packets carry transport-cc", withTCCExt.Load(), received.Load())
	}
	if acked := est.AckedBitrate(); acked < sendRate*6/10 || acked > sendRate*14/10 {
		t.Errorf("acked bitrate %d, want about the send rate %d", acked, sendRate)
	}
	// Scheduling stalls on a loaded machine look like queueing delay and
	// may cause a decrease, to 0.85 x acked at most once per 300 ms.
	if est.TargetBitrate() < sendRate/2 {
		t.Errorf("target %d far below the loss-free send rate %d", est.TargetBitrate(), sendRate)
	}
}
