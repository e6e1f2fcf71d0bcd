package sfu

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"

	"github.com/confab/confab/internal/peer"
)

// benchPayloadSize is the RTP payload size of benchmark packets (a typical
// full VP8 packet of a 720p stream).
const benchPayloadSize = 1200

// BenchmarkForward measures Producer.WriteRTP fanning one 1200-byte VP8
// packet out to N subscriber peer connections through the engine's real
// ICE UDP mux on loopback. Reported per op (one WriteRTP) and per outgoing
// packet (op / N): wall time, CPU time of the writing thread (user+system,
// which includes the kernel's loopback delivery), and heap allocations.
// Allocations are process-wide, so they include the in-process receivers,
// and so does heap-B/consumer (live heap after the run, after a GC, divided
// by N: dominated by per-subscriber state such as NACK caches).
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			f := newForwardBench(b, n)
			pkt := benchPacket()
			f.measure(b, func() error {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				return f.prod.WriteRTP(pkt)
			})
		})
	}
}

// BenchmarkForwardSharded is BenchmarkForward at 200 subscribers with the
// fan-out on the writer alone (workers=1) and split over the fan-out
// workers (the default, one per GOMAXPROCS; 64 subscribers per shard at
// least). cpu-ns/pkt-out counts the writing thread only, so with workers
// it leaves out theirs: compare ns/pkt-out (wall time per datagram).
// taken-back/shard is the share of the shards offered to workers that
// the writer wrote itself because no worker had started them.
func BenchmarkForwardSharded(b *testing.B) {
	for _, workers := range []int{1, 0} {
		name := "workers=default"
		if workers == 1 {
			name = "workers=1"
		}
		b.Run("consumers=200/"+name, func(b *testing.B) {
			f := newForwardBench(b, 200, func(c *Config) { c.FanoutWorkers = workers })
			pkt := benchPacket()
			f.prod.wmu.Lock()
			offered0, stolen0 := f.prod.shards.offered, f.prod.shards.stolen
			f.prod.wmu.Unlock()
			f.measure(b, func() error {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				return f.prod.WriteRTP(pkt)
			})
			f.prod.wmu.Lock()
			offered, stolen := f.prod.shards.offered-offered0, f.prod.shards.stolen-stolen0
			f.prod.wmu.Unlock()
			if offered > 0 {
				b.ReportMetric(float64(stolen)/float64(offered), "taken-back/shard")
			}
		})
	}
}

// measure runs write in b's loop and reports BenchmarkForward's metrics
// per outgoing packet (the producer's count of packets written to its
// consumers): ns/pkt-out, cpu-ns/pkt-out, allocs/pkt-out, and
// heap-B/consumer; then checks that every subscriber still receives.
func (f *forwardBench) measure(b *testing.B, write func() error) {
	// The writing thread's CPU time is read with CLOCK_THREAD_CPUTIME_ID,
	// so keep it on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	out0 := f.prod.traffic.packetsOut.Load()
	allocs0 := heapAllocObjects()
	cpu0 := threadCPU(b)
	start := time.Now()
	for b.Loop() {
		if err := write(); err != nil {
			b.Fatalf("write: %v", err)
		}
	}
	wall := time.Since(start)
	cpu := threadCPU(b) - cpu0
	allocs := heapAllocObjects() - allocs0
	out := float64(f.prod.traffic.packetsOut.Load() - out0)
	if out == 0 {
		b.Fatal("no packet was forwarded")
	}
	b.ReportMetric(float64(wall.Nanoseconds())/out, "ns/pkt-out")
	b.ReportMetric(float64(cpu.Nanoseconds())/out, "cpu-ns/pkt-out")
	b.ReportMetric(float64(allocs)/out, "allocs/pkt-out")
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/float64(len(f.subs)), "heap-B/consumer")
	f.checkReceived(b)
}

// benchPacket returns a VP8 packet with a 1200-byte payload.
func benchPacket() *rtp.Packet {
	payload := make([]byte, benchPayloadSize)
	copy(payload, []byte{0x10, 0x00, 0x9d, 0x01, 0x2a})
	for i := 5; i < len(payload); i++ {
		payload[i] = byte(i)
	}
	return &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1234, Marker: true},
		Payload: payload,
	}
}

// heapAllocObjects returns the cumulative count of heap objects allocated
// by the process.
func heapAllocObjects() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// threadCPU returns the CPU time (user+system) of the calling OS thread.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatalf("clock_gettime: %v", err)
	}
	return time.Duration(ts.Nano())
}

// forwardBench is an engine with one remote video producer and N connected
// subscribers.
type forwardBench struct {
	e    *Engine
	prod *Producer
	subs []*benchSub
}

// newForwardBench returns an engine with n subscribers of a single-layer
// remote VP8 producer, each of them receiving media; opts adjust the
// engine's Config.
func newForwardBench(tb testing.TB, n int, opts ...func(*Config)) *forwardBench {
	tb.Helper()
	f := newBenchSubscribers(tb, n, opts...)
	f.addProducer(tb, benchProducerInfo())
	pkt := benchPacket()
	pkt.SequenceNumber = 60000
	f.warmUp(tb, func() error {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		return f.prod.WriteRTP(pkt)
	})
	return f
}

// newBenchSubscribers returns an engine with n subscribers in room "bench"
// and no producer yet; opts adjust the engine's Config.
func newBenchSubscribers(tb testing.TB, n int, opts ...func(*Config)) *forwardBench {
	tb.Helper()
	e := newTestEngine(tb, func(c *Config) {
		c.MaxParticipantsPerRoom = n + 1
		for _, o := range opts {
			o(c)
		}
	})
	f := &forwardBench{e: e}
	for i := range n {
		f.subs = append(f.subs, joinBenchSub(tb, e, "bench", fmt.Sprintf("sub-%d", i)))
	}
	return f
}

// benchProducerInfo describes the remote VP8 producer of the benchmarks.
func benchProducerInfo() ProducerInfo {
	return ProducerInfo{
		ID: "bench-video", Kind: KindVideo, ParticipantID: "bench-publisher", ParticipantName: "publisher",
		Codec: Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, Origin: "node-b", Remote: true,
	}
}

// addProducer adds the remote producer info to the room; every subscriber
// consumes it.
func (f *forwardBench) addProducer(tb testing.TB, info ProducerInfo) {
	tb.Helper()
	prod, err := f.e.Room("bench").AddProducer(info, nil)
	if err != nil {
		tb.Fatalf("AddProducer: %v", err)
	}
	tb.Cleanup(prod.Close)
	f.prod = prod
}

// warmUp calls write until every subscriber receives media (ICE, DTLS and
// the subscriber renegotiation are done).
func (f *forwardBench) warmUp(tb testing.TB, write func() error) {
	tb.Helper()
	f.writeUntil(tb, "media at every subscriber", write, func() bool {
		for _, s := range f.subs {
			if s.packets.Load() == 0 {
				return false
			}
		}
		return true
	})
}

// writeUntil calls write, ten times per poll, until cond holds.
func (f *forwardBench) writeUntil(tb testing.TB, what string, write func() error, cond func() bool) {
	tb.Helper()
	waitUntil(testContext(tb), tb, what, func() bool {
		for range 10 {
			if err := write(); err != nil {
				tb.Fatalf("write: %v", err)
			}
		}
		return cond()
	})
}

// checkReceived fails the benchmark when a subscriber stopped receiving.
func (f *forwardBench) checkReceived(b testing.TB) {
	for _, s := range f.subs {
		if s.packets.Load() == 0 {
			b.Errorf("subscriber %s received nothing", s.p.ID())
		}
	}
}

// benchSub is a lean subscriber: a pion peer connection without
// interceptors that answers subscriber offers and drains every track
// without allocating.
type benchSub struct {
	tb      testing.TB
	p       *Participant
	sub     *peer.Answerer
	offers  chan webrtc.SessionDescription
	stop    chan struct{}
	wg      sync.WaitGroup // answer loop and track readers
	packets atomic.Int64

	mu     sync.Mutex // guards closed and wg.Add from pion's goroutines
	closed bool
}

func joinBenchSub(tb testing.TB, e *Engine, room, name string) *benchSub {
	tb.Helper()
	m, err := NewMediaEngine()
	if err != nil {
		tb.Fatalf("NewMediaEngine: %v", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	// An empty registry: without one pion registers its default
	// interceptors, whose receive side allocates per packet.
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	s := &benchSub{tb: tb, offers: make(chan webrtc.SessionDescription, 16), stop: make(chan struct{})}
	s.sub = peer.NewAnswerer(api, s.drain)
	p, err := e.Join(room, JoinParams{Name: name, Events: EventHandlerFunc(func(ev Event) {
		if ev.Type == EventSubscriberOffer {
			s.offers <- *ev.SDP
		}
	})})
	if err != nil {
		tb.Fatalf("Join: %v", err)
	}
	s.p = p
	s.wg.Add(1)
	go s.answerLoop()
	tb.Cleanup(s.close)
	return s
}

func (s *benchSub) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.p.Close()
	_ = s.sub.Close()
	s.wg.Wait()
}

// answerLoop answers subscriber offers until the subscriber closes.
func (s *benchSub) answerLoop() {
	defer s.wg.Done()
	s.sub.Serve(s.offers, s.stop, s.p.SetSubscriberAnswer, func(err error) {
		if !errors.Is(err, ErrParticipantClosed) {
			s.tb.Errorf("answer: %v", err)
		}
	})
}

// drain reads a track until the peer connection closes.
func (s *benchSub) drain(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := tr.Read(buf); err != nil {
			return
		}
		s.packets.Add(1)
	}
}
