package pipe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/tools/host"
)

// BenchmarkPipeLink measures the cost and the delay of a producer piped
// from node a to node b and fanned out to K real subscriber peer
// connections on b, against two baselines on b alone:
//
//   - fanout: packets are written straight into a local producer on b
//     (b's fan-out alone; the delay baseline: a piped stream adds
//     piped - fanout to the one-way delay).
//   - direct: packets are written into a publisher peer connection on b
//     (what one direct publisher costs; the cost baseline of the issue's
//     "a piped stream costs the receiving node no more than 1.5x").
//   - piped: packets are written into a local producer on a; they cross
//     the real link (DTLS-SRTP over loopback) to the piped producer on b.
//
// One op is one 1200-byte RTP packet delivered to all K subscribers. The
// writer keeps at most benchWindow packets in flight, so ns/op is the
// throughput of the whole path (both nodes and the subscribers share the
// process). cpu-ns/op is the process CPU time (user+system) per op, which
// other processes on the box do not inflate. After the timed loop (once
// per setup) benchDelaySamples packets are sent 1 ms apart and their
// one-way delay from WriteRTP to the subscribers' Read is reported as
// us-delay-p50 and us-delay-p95. loss-% counts packets that never arrived.
//
// Nodes are in-process (no Consul: the pipes resolve each other through a
// map, as in the pipes tests).
func BenchmarkPipeLink(b *testing.B) {
	leaks := goleak.IgnoreCurrent()
	for _, mode := range []benchMode{benchFanout, benchDirect, benchPiped} {
		b.Run(string(mode), func(b *testing.B) {
			for _, k := range []int{1, 10} {
				// One setup serves every run of the sub-benchmark (the
				// framework calls it again with growing b.N).
				env := &benchEnv{mode: mode, k: k}
				b.Run(fmt.Sprintf("K=%d", k), func(b *testing.B) {
					if !env.ready {
						env.setup(b)
					}
					env.run(b)
				})
				env.close()
			}
		})
	}
	goleak.VerifyNone(b, leaks)
}

// benchMode selects where the benchmark's packets enter.
type benchMode string

// Benchmark modes (see BenchmarkPipeLink).
const (
	benchFanout benchMode = "fanout"
	benchDirect benchMode = "direct"
	benchPiped  benchMode = "piped"
)

const (
	benchRoom          = "bench"
	benchPacketSize    = 1200    // RTP header + payload, bytes
	benchWindow        = 64      // packets in flight at most
	benchStampRing     = 1 << 16 // send stamps kept, indexed by packet index
	benchDelaySamples  = 200     // packets of the delay phase (per subscriber)
	benchDelayInterval = time.Millisecond
	benchSetupTimeout  = 60 * time.Second
	benchStall         = 500 * time.Millisecond // no progress for this long: the missing packets are lost
)

// benchEnv is one setup of BenchmarkPipeLink: the nodes, the publisher,
// the subscribers and the measurement state shared with the subscribers'
// readers.
type benchEnv struct {
	mode  benchMode
	k     int
	ready bool
	ctx   context.Context // bounds the setup
	stops []func()        // run in reverse order by close

	write func(*rtp.Packet) error // where packets enter
	pkt   rtp.Packet
	runID uint32

	base   time.Time // monotonic clock origin of the stamps
	stamps []atomic.Int64
	cur    atomic.Pointer[benchRun]
	sig    chan struct{} // cap 1: the current run reached its target
	timer  *time.Timer

	delayP50, delayP95 float64 // microseconds, measured once per setup

	mu   sync.Mutex
	urls map[string]string // node id -> control channel URL
}

// benchRun is the measurement state of one run (a timed loop, a warm-up or
// the delay phase). Readers count only packets carrying its id.
type benchRun struct {
	id     uint32
	total  atomic.Int64   // packets received, all subscribers together
	want   atomic.Int64   // total at which readers wake the writer
	per    []atomic.Int64 // packets received per subscriber
	delays []atomic.Int64 // [sub*benchDelaySamples+index]: one-way delay in ns (delay phase only)
	lost   []int64        // per subscriber, writer only: packets given up as lost
}

// benchNode is one in-process node.
type benchNode struct {
	engine *sfu.Engine
	pipes  *Pipes
}

// benchSub is a subscriber client on b: a bare pion API (no interceptors)
// that answers subscriber offers and reads every track.
type benchSub struct {
	env    *benchEnv
	i      int
	sub    *peer.Answerer
	p      *sfu.Participant
	offers chan webrtc.SessionDescription
	stop   chan struct{}
	wg     sync.WaitGroup
}

// onClose registers f to run when the environment closes.
func (e *benchEnv) onClose(f func()) { e.stops = append(e.stops, f) }

// close releases everything setup built, in reverse order. Safe after a
// failed or partial setup.
func (e *benchEnv) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
	e.stops = nil
}

// setup builds the nodes, subscribers and publisher of e.mode and warms
// the path up until every subscriber receives the benchmark's packets.
func (e *benchEnv) setup(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchSetupTimeout)
	e.onClose(cancel)
	e.ctx = ctx
	e.base = time.Now()
	e.stamps = make([]atomic.Int64, benchStampRing)
	e.sig = make(chan struct{}, 1)
	e.timer = time.NewTimer(time.Hour)
	e.timer.Stop()
	e.urls = make(map[string]string)
	e.pkt = rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x5eed, Marker: true},
		Payload: make([]byte, benchPacketSize-12),
	}
	copy(e.pkt.Payload, []byte{0x10, 0x00, 0x9d, 0x01, 0x2a}) // a VP8 payload descriptor and keyframe start

	nb := e.addNode(b, "b")
	for i := range e.k {
		e.join(b, nb, i)
	}
	origin := nb
	if e.mode == benchPiped {
		origin = e.addNode(b, "a")
	}
	track, prod := e.publish(b, origin)
	switch e.mode {
	case benchDirect:
		e.write = track.WriteRTP
	default:
		e.write = prod.WriteRTP
	}
	if e.mode == benchPiped {
		if err := nb.pipes.PipeIn(ctx, benchRoom, prod.Info()); err != nil {
			b.Fatalf("PipeIn: %v", err)
		}
	}

	// Warm up: every subscriber negotiated and receives packets.
	r := e.newRun(false)
	for i := uint32(0); ; i++ {
		if i%4 == 0 && e.everyone(r, 3) {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("warm-up: subscribers received %v packets", e.perSub(r))
		case <-time.After(2 * time.Millisecond):
		}
		if err := e.send(r, i); err != nil {
			b.Fatalf("warm-up write: %v", err)
		}
	}
	e.ready = true
}

// addNode starts node id: engine, Pipes and the control channel server.
func (e *benchEnv) addNode(b *testing.B, id string) *benchNode {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	engine, err := sfu.New(sfu.Config{NodeID: id, UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: quiet})
	if err != nil {
		b.Fatalf("sfu.New(%s): %v", id, err)
	}
	e.onClose(func() {
		if err := engine.Close(); err != nil {
			b.Errorf("engine %s Close: %v", id, err)
		}
	})
	pipes, err := NewPipes(PipesConfig{
		NodeID:         id,
		Secret:         ptSecret,
		Resolve:        e.resolve,
		RequestTimeout: 10 * time.Second,
		Logger:         quiet,
	}, engine)
	if err != nil {
		b.Fatalf("NewPipes(%s): %v", id, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/cluster/", pipes.Handler())
	srv := httptest.NewServer(mux)
	e.onClose(srv.Close)
	e.onClose(func() {
		if err := pipes.Close(); err != nil {
			b.Errorf("pipes %s Close: %v", id, err)
		}
	})
	e.mu.Lock()
	e.urls[id] = srv.URL
	e.mu.Unlock()
	return &benchNode{engine: engine, pipes: pipes}
}

// resolve is the PipesConfig.Resolve of the benchmark's nodes.
func (e *benchEnv) resolve(id string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.urls[id]
	return u, ok
}

// benchSettingEngine returns the settings of the benchmark's client peer
// connections: loopback UDP4 only, no mDNS.
func benchSettingEngine() webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return se
}

// publish has a client on n publish one VP8 track (sfu.NewAPI: the default
// interceptors, like a browser) and sends packets until n's room lists its
// producer. It returns the client's track and n's local producer; the
// client sends nothing more on its own.
func (e *benchEnv) publish(b *testing.B, n *benchNode) (*webrtc.TrackLocalStaticRTP, *sfu.Producer) {
	b.Helper()
	api, err := sfu.NewAPI(benchSettingEngine())
	if err != nil {
		b.Fatalf("sfu.NewAPI: %v", err)
	}
	p, err := n.engine.Join(benchRoom, sfu.JoinParams{Name: "publisher", Events: sfu.EventHandlerFunc(func(sfu.Event) {})})
	if err != nil {
		b.Fatalf("Join publisher: %v", err)
	}
	e.onClose(p.Close)
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatalf("publisher pc: %v", err)
	}
	var wg sync.WaitGroup
	e.onClose(func() {
		_ = pc.Close()
		wg.Wait()
	})
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "cam")
	if err != nil {
		b.Fatalf("track: %v", err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		b.Fatalf("AddTrack: %v", err)
	}
	wg.Add(1)
	go func() { // drive the sender's interceptors (RTCP in)
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	publishOffer(e.ctx, b, p, pc)

	r := e.newRun(false) // nobody subscribes to these yet
	for i := uint32(0); ; i++ {
		if room := n.engine.Room(benchRoom); room != nil {
			for _, info := range room.Producers() {
				if info.ParticipantID == p.ID() {
					return track, room.Producer(info.ID)
				}
			}
		}
		select {
		case <-e.ctx.Done():
			b.Fatal("timed out waiting for the publisher's producer")
		case <-time.After(5 * time.Millisecond):
		}
		e.stamp(r, i)
		if err := track.WriteRTP(&e.pkt); err != nil && !errors.Is(err, net.ErrClosed) {
			b.Fatalf("publisher write: %v", err)
		}
	}
}

// join adds subscriber i to the room on n.
func (e *benchEnv) join(b *testing.B, n *benchNode, i int) {
	b.Helper()
	m, err := sfu.NewMediaEngine()
	if err != nil {
		b.Fatalf("media engine: %v", err)
	}
	s := &benchSub{
		env:    e,
		i:      i,
		offers: make(chan webrtc.SessionDescription, 16),
		stop:   make(chan struct{}),
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(benchSettingEngine()))
	s.sub = peer.NewAnswerer(api, func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { s.read(tr) })
	p, err := n.engine.Join(benchRoom, sfu.JoinParams{Name: fmt.Sprintf("sub%d", i), Events: sfu.EventHandlerFunc(s.handle)})
	if err != nil {
		b.Fatalf("Join subscriber %d: %v", i, err)
	}
	s.p = p
	s.wg.Add(1)
	go s.answerLoop(b)
	e.onClose(s.close)
}

// handle is the subscriber's sfu.EventHandler: it queues offers.
func (s *benchSub) handle(ev sfu.Event) {
	if ev.Type != sfu.EventSubscriberOffer {
		return
	}
	select {
	case s.offers <- *ev.SDP:
	case <-s.stop:
	}
}

// answerLoop answers subscriber offers until the subscriber closes.
func (s *benchSub) answerLoop(b *testing.B) {
	defer s.wg.Done()
	s.sub.Serve(s.offers, s.stop, s.p.SetSubscriberAnswer, func(err error) {
		if !errors.Is(err, sfu.ErrParticipantClosed) {
			b.Errorf("subscriber %d: answering offer: %v", s.i, err)
		}
	})
}

// read counts the packets of the current run on tr (a pion goroutine; it
// ends when the PC closes). The run id and packet index are the last 8
// bytes of every packet.
func (s *benchSub) read(tr *webrtc.TrackRemote) {
	e := s.env
	buf := make([]byte, 1500)
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := int64(time.Since(e.base))
		r := e.cur.Load()
		if n < 20 || r == nil || binary.BigEndian.Uint32(buf[n-8:]) != r.id {
			continue
		}
		idx := int(binary.BigEndian.Uint32(buf[n-4:]))
		if r.delays != nil && idx < benchDelaySamples {
			r.delays[s.i*benchDelaySamples+idx].Store(now - e.stamps[idx%benchStampRing].Load())
		}
		r.per[s.i].Add(1)
		if r.total.Add(1) >= r.want.Load() {
			select {
			case e.sig <- struct{}{}:
			default:
			}
		}
	}
}

// close leaves the room, stops the answer loop and closes the subscriber
// PC (which ends its readers). Called once, by benchEnv.close.
func (s *benchSub) close() {
	s.p.Close()
	close(s.stop)
	s.wg.Wait()
	_ = s.sub.Close()
}

// newRun starts a run with a fresh id: from now on readers count only its
// packets.
func (e *benchEnv) newRun(delays bool) *benchRun {
	e.runID++
	r := &benchRun{id: e.runID, per: make([]atomic.Int64, e.k), lost: make([]int64, e.k)}
	r.want.Store(1 << 62)
	if delays {
		r.delays = make([]atomic.Int64, e.k*benchDelaySamples)
	}
	e.cur.Store(r)
	return r
}

// stamp marks e.pkt as packet idx of run r, sent now.
func (e *benchEnv) stamp(r *benchRun, idx uint32) {
	e.pkt.SequenceNumber++
	e.pkt.Timestamp += 90
	tail := e.pkt.Payload[len(e.pkt.Payload)-8:]
	binary.BigEndian.PutUint32(tail, r.id)
	binary.BigEndian.PutUint32(tail[4:], idx)
	e.stamps[idx%benchStampRing].Store(int64(time.Since(e.base)))
}

// send writes packet idx of run r where e.mode has packets enter.
func (e *benchEnv) send(r *benchRun, idx uint32) error {
	e.stamp(r, idx)
	if err := e.write(&e.pkt); err != nil {
		return fmt.Errorf("write packet %d: %w", idx, err)
	}
	return nil
}

// await waits until every subscriber received target packets of r (less
// those already given up), so the slowest subscriber bounds what is in
// flight. When nothing arrives for benchStall the missing packets are
// counted as lost and await returns.
func (e *benchEnv) await(r *benchRun, target int64) {
	var want int64
	for i := range r.lost {
		want += target - r.lost[i]
	}
	r.want.Store(want)
	last := r.total.Load()
	for !e.reached(r, target) {
		e.timer.Reset(benchStall)
		select {
		case <-e.sig:
		case <-e.timer.C:
			if r.total.Load() == last {
				for i := range r.per {
					if got := r.per[i].Load(); got < target-r.lost[i] {
						r.lost[i] = target - got
					}
				}
				return
			}
		}
		e.timer.Stop()
		last = r.total.Load()
	}
}

// reached reports whether every subscriber received target packets of r,
// less those given up.
func (e *benchEnv) reached(r *benchRun, target int64) bool {
	for i := range r.per {
		if r.per[i].Load() < target-r.lost[i] {
			return false
		}
	}
	return true
}

// everyone reports whether every subscriber received at least n packets
// of r.
func (e *benchEnv) everyone(r *benchRun, n int64) bool {
	for i := range r.per {
		if r.per[i].Load() < n {
			return false
		}
	}
	return true
}

// perSub returns the per-subscriber counts of r.
func (e *benchEnv) perSub(r *benchRun) []int64 {
	out := make([]int64, len(r.per))
	for i := range r.per {
		out[i] = r.per[i].Load()
	}
	return out
}

// run is one timed run of b.N packets, then (once per setup) the delay
// phase; it reports the metrics.
func (e *benchEnv) run(b *testing.B) {
	k := int64(e.k)
	const half = benchWindow / 2
	r := e.newRun(false)
	b.ReportAllocs()
	cpu0, cpuErr := host.SelfCPU()
	cpuOK := cpuErr == nil
	b.ResetTimer()
	for i := range b.N {
		// Every half window, wait until at most half a window is in
		// flight: at most benchWindow packets are ever outstanding.
		if i >= benchWindow && i%half == 0 {
			e.await(r, int64(i-half))
		}
		if err := e.send(r, uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
	e.await(r, int64(b.N))
	b.StopTimer()
	cpu1, _ := host.SelfCPU()

	if cpuOK {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
	}
	b.ReportMetric(100*float64(k*int64(b.N)-r.total.Load())/float64(k*int64(b.N)), "loss-%")
	if e.delayP50 == 0 {
		e.measureDelay(b)
	}
	b.ReportMetric(e.delayP50, "us-delay-p50")
	b.ReportMetric(e.delayP95, "us-delay-p95")
}

// measureDelay sends benchDelaySamples packets benchDelayInterval apart
// and records the p50 and p95 of their one-way delay (write to subscriber
// read) over all subscribers.
func (e *benchEnv) measureDelay(b *testing.B) {
	r := e.newRun(true)
	for i := range uint32(benchDelaySamples) {
		if err := e.send(r, i); err != nil {
			b.Fatal(err)
		}
		time.Sleep(benchDelayInterval)
	}
	e.await(r, benchDelaySamples)
	var ds []int64
	for i := range r.delays {
		if d := r.delays[i].Load(); d > 0 {
			ds = append(ds, d)
		}
	}
	if len(ds) == 0 {
		b.Fatal("delay phase: no packet arrived")
	}
	slices.Sort(ds)
	pct := func(p float64) float64 { return float64(ds[int(p*float64(len(ds)-1))]) / 1e3 }
	e.delayP50, e.delayP95 = pct(0.50), pct(0.95)
}
