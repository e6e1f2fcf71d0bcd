package sfu

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// bweLink is a bottleneck: a FIFO drained at capacity(t) bit/s that drops
// packets which would wait more than maxQueue (like tbf), plus a fixed
// one-way propagation delay.
type bweLink struct {
	capacity func(t time.Duration) float64
	maxQueue time.Duration
	prop     time.Duration
	free     time.Duration // the link is busy until then
}

// send returns when a packet of size bytes sent at t arrives, or false
// when the queue drops it.
func (l *bweLink) send(t time.Duration, size int) (time.Duration, bool) {
	start := max(t, l.free)
	if start-t > l.maxQueue {
		return 0, false
	}
	l.free = start + time.Duration(float64(size*8)/l.capacity(start)*1e9)
	return l.free + l.prop, true
}

// bweSample is the simulation state at one instant.
type bweSample struct {
	t                     time.Duration
	capacity, send        float64
	target, acked         int
	state                 bweState
	capped                bool
	decreasedBeforeSample bool
}

// bweSimConfig describes one simulated run.
type bweSimConfig struct {
	duration time.Duration
	capacity func(t time.Duration) float64
	// rate is the sender's bitrate for the next frame given the estimate.
	rate func(target int) float64
}

// simulateBWE runs a 30 fps video sender through a bweLink into a pion
// twcc.Recorder that sends feedback every 50 ms (marshalled and parsed
// like real RTCP) back to a bweEstimator, in simulated time, and samples
// the estimate every 500 ms.
func simulateBWE(t *testing.T, sc bweSimConfig) []bweSample {
	t.Helper()
	const (
		tick       = time.Millisecond
		frame      = time.Second / 30
		feedback   = 50 * time.Millisecond
		sample     = 500 * time.Millisecond
		packetSize = 1200
		origin     = time.Second // the estimator's clock starts here
	)
	est := newBWEEstimator(bweConfig{})
	link := &bweLink{capacity: sc.capacity, maxQueue: 100 * time.Millisecond, prop: 20 * time.Millisecond}
	rec := twcc.NewRecorder(1)
	type inflight struct {
		arrival time.Duration
		seq     uint16
	}
	type delivery struct {
		at  time.Duration
		pkt []byte
	}
	var (
		pending    []inflight
		deliveries []delivery
		samples    []bweSample
		seq        uint16
		sent       int // bytes in the current sample period
		decreased  bool
	)
	for now := time.Duration(0); now <= sc.duration; now += tick {
		if now%frame < tick { // a frame: packets paced at 2.5 x the rate
			rate := sc.rate(est.TargetBitrate())
			bytes := int(rate / 8 / 30)
			gap := time.Duration(float64(packetSize*8) / (2.5 * rate) * 1e9)
			for i, at := 0, now; bytes > 0; i, at = i+1, at+gap {
				size := min(bytes, packetSize)
				bytes -= size
				est.OnSent(seq, int64(origin+at), size)
				if arrival, ok := link.send(at, size); ok {
					pending = append(pending, inflight{arrival, seq})
				}
				seq++
				sent += size
			}
		}
		for len(pending) > 0 && pending[0].arrival <= now {
			rec.Record(1, pending[0].seq, int64(pending[0].arrival/time.Microsecond))
			pending = pending[1:]
		}
		if now%feedback == 0 {
			if pkts := rec.BuildFeedbackPacket(); len(pkts) > 0 {
				b, err := rtcp.Marshal(pkts)
				if err != nil {
					t.Fatalf("marshal feedback: %v", err)
				}
				deliveries = append(deliveries, delivery{now + link.prop, b})
			}
		}
		for len(deliveries) > 0 && deliveries[0].at <= now {
			pkts, err := rtcp.Unmarshal(deliveries[0].pkt)
			if err != nil {
				t.Fatalf("unmarshal feedback: %v", err)
			}
			for _, p := range pkts {
				if fb, ok := p.(*rtcp.TransportLayerCC); ok {
					est.OnFeedback(fb, int64(origin+now))
				}
			}
			deliveries = deliveries[1:]
			decreased = decreased || est.State() == bweDecrease
		}
		if now%sample == 0 && now > 0 {
			samples = append(samples, bweSample{
				t: now, capacity: sc.capacity(now), send: float64(sent*8) / sample.Seconds(),
				target: est.TargetBitrate(), acked: est.AckedBitrate(), state: est.State(), capped: est.Capped(),
				decreasedBeforeSample: decreased,
			})
			sent, decreased = 0, false
		}
	}
	return samples
}

// formatBWESamples renders samples as a table.
func formatBWESamples(samples []bweSample) string {
	var b strings.Builder
	b.WriteString("    t   capacity     send   target    acked state\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%5.1fs %8.0fk %7.0fk %7dk %7dk %s\n", s.t.Seconds(), s.capacity/1e3, s.send/1e3,
			s.target/1000, s.acked/1000, s.state)
	}
	return b.String()
}

// bweExpect is a condition on the target bitrate of the samples in
// [from, to]: every one (or, with any, at least one) in [min, max].
type bweExpect struct {
	from, to time.Duration
	min, max float64
	any      bool
}

func constRate(r float64) func(int) float64 { return func(int) float64 { return r } }

// stepRate is a capacity of before until at, after from then on.
func stepRate(before, after float64, at time.Duration) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		if t < at {
			return before
		}
		return after
	}
}

// TestBWESimulatedLink runs the estimator against a simulated bottleneck.
func TestBWESimulatedLink(t *testing.T) {
	follow := func(target int) float64 { return min(float64(target), 2.5e6) }
	tests := []struct {
		name   string
		sim    bweSimConfig
		expect []bweExpect
		// noDecrease: the estimator must never decrease.
		noDecrease bool
		// capped: from 2 s on, Capped must say this ("yes" or "no").
		capped string
	}{
		{
			name: "1.5M into 600k converges within 2 s",
			sim:  bweSimConfig{duration: 6 * time.Second, capacity: stepRate(600e3, 600e3, 0), rate: constRate(1.5e6)},
			expect: []bweExpect{
				{from: 2 * time.Second, to: 6 * time.Second, min: 300e3, max: 660e3},
			},
			capped: "no",
		},
		{
			// A cheap layer on a wide link: the estimate stays near what is
			// sent, and says so (the allocator probes above it).
			name: "150k through 3M: capped near what is sent",
			sim:  bweSimConfig{duration: 8 * time.Second, capacity: stepRate(3e6, 3e6, 0), rate: constRate(150e3)},
			expect: []bweExpect{
				{from: 2 * time.Second, to: 8 * time.Second, min: 150e3, max: 1.5e6},
			},
			noDecrease: true,
			capped:     "yes",
		},
		{
			name: "2.5M through 3M: no false decrease",
			sim:  bweSimConfig{duration: 10 * time.Second, capacity: stepRate(3e6, 3e6, 0), rate: constRate(2.5e6)},
			expect: []bweExpect{
				{from: 2 * time.Second, to: 10 * time.Second, min: 2.4e6, max: 50e6},
			},
			noDecrease: true,
		},
		{
			name: "capacity drop 3M to 300k: below 400k within 1.5 s",
			sim:  bweSimConfig{duration: 12 * time.Second, capacity: stepRate(3e6, 300e3, 8*time.Second), rate: follow},
			expect: []bweExpect{
				{from: 6 * time.Second, to: 8 * time.Second, min: 2e6, max: 50e6},
				{from: 9500 * time.Millisecond, to: 12 * time.Second, min: 0, max: 400e3},
			},
		},
		{
			name: "sender following on 1M tracks it",
			sim:  bweSimConfig{duration: 15 * time.Second, capacity: stepRate(1e6, 1e6, 0), rate: follow},
			expect: []bweExpect{
				{from: 2 * time.Second, to: 15 * time.Second, min: 700e3, max: 1.2e6},
			},
		},
		{
			name: "recovery 300k to 3M: over 1.5M within 10 s",
			sim:  bweSimConfig{duration: 18 * time.Second, capacity: stepRate(300e3, 3e6, 6*time.Second), rate: follow},
			expect: []bweExpect{
				{from: 3 * time.Second, to: 6 * time.Second, min: 150e3, max: 400e3},
				{from: 6 * time.Second, to: 16 * time.Second, min: 1.5e6, max: 50e6, any: true},
				{from: 16 * time.Second, to: 18 * time.Second, min: 1.5e6, max: 50e6},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			samples := simulateBWE(t, tt.sim)
			t.Logf("\n%s", formatBWESamples(samples))
			for _, ex := range tt.expect {
				hit, miss := false, ""
				for _, s := range samples {
					if s.t < ex.from || s.t > ex.to {
						continue
					}
					if in := float64(s.target) >= ex.min && float64(s.target) <= ex.max; in {
						hit = true
					} else if miss == "" {
						miss = fmt.Sprintf("target %d at %v", s.target, s.t)
					}
				}
				if ex.any && !hit || !ex.any && miss != "" {
					t.Errorf("between %v and %v want target in [%.0f, %.0f] (any: %v); %s", ex.from, ex.to,
						ex.min, ex.max, ex.any, miss)
				}
			}
			for _, s := range samples {
				if tt.capped != "" && s.t >= 2*time.Second && s.capped != (tt.capped == "yes") {
					t.Errorf("capped = %v at %v, want %s", s.capped, s.t, tt.capped)
				}
			}
			if tt.noDecrease {
				for _, s := range samples {
					if s.decreasedBeforeSample {
						t.Errorf("decrease before %v", s.t)
					}
				}
			}
		})
	}
}

// TestEstimatorFeedbackAccounting checks feedback matching: losses count
// once, duplicate and unknown sequence numbers are ignored, a sequence
// number wrap and a reference time wrap are followed.
func TestEstimatorFeedbackAccounting(t *testing.T) {
	const ms = int64(time.Millisecond)
	// fb acknowledges seqs from base on: true = received (deltas of 1 ms).
	fb := func(base uint16, ref uint32, recv ...bool) *rtcp.TransportLayerCC {
		f := &rtcp.TransportLayerCC{BaseSequenceNumber: base, PacketStatusCount: uint16(len(recv)), ReferenceTime: ref}
		for _, r := range recv {
			sym := uint16(rtcp.TypeTCCPacketNotReceived)
			if r {
				sym = rtcp.TypeTCCPacketReceivedSmallDelta
				f.RecvDeltas = append(f.RecvDeltas, &rtcp.RecvDelta{Type: sym, Delta: 1000})
			}
			f.PacketChunks = append(f.PacketChunks, &rtcp.RunLengthChunk{PacketStatusSymbol: sym, RunLength: 1})
		}
		return f
	}
	n := func(v bool, k int) []bool {
		s := make([]bool, k)
		for i := range s {
			s[i] = v
		}
		return s
	}
	tests := []struct {
		name      string
		base      uint16 // first seq sent
		sent      int
		feedbacks []*rtcp.TransportLayerCC
		wantLoss  float64
		wantPkts  int // packets of the last feedback that were new and received
	}{
		{"all received", 100, 20, []*rtcp.TransportLayerCC{fb(100, 5, n(true, 20)...)}, 0, 20},
		{"half lost", 100, 40, []*rtcp.TransportLayerCC{fb(100, 5, append(n(true, 20), n(false, 20)...)...)}, 0.5, 20},
		{"duplicate feedback is ignored", 100, 20,
			[]*rtcp.TransportLayerCC{fb(100, 5, n(true, 20)...), fb(100, 5, n(true, 20)...)}, 0, 0},
		{"lost, then received late: not a loss", 100, 25,
			[]*rtcp.TransportLayerCC{fb(100, 5, append(n(true, 10), n(false, 5)...)...), fb(110, 6, n(true, 15)...)}, 0, 15},
		{"lost twice counts once", 100, 40, []*rtcp.TransportLayerCC{
			fb(100, 5, append(n(true, 5), n(false, 10)...)...),
			fb(105, 6, n(false, 10)...),
			fb(115, 7, n(true, 25)...)}, 0.25, 25},
		{"unknown sequence numbers are ignored", 100, 20,
			[]*rtcp.TransportLayerCC{fb(5000, 5, n(false, 30)...), fb(100, 5, n(true, 20)...)}, 0, 20},
		{"sequence number and reference time wrap", 65530, 20,
			[]*rtcp.TransportLayerCC{fb(65530, 0xffffff, n(true, 10)...), fb(65540-65536, 0, n(true, 10)...)}, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newBWEEstimator(bweConfig{})
			for i := range tt.sent {
				e.OnSent(tt.base+uint16(i), int64(i+1)*ms, 1000)
			}
			for i, f := range tt.feedbacks {
				e.OnFeedback(f, int64(tt.sent+100+i*50)*ms)
			}
			if e.loss != tt.wantLoss {
				t.Errorf("loss = %v, want %v", e.loss, tt.wantLoss)
			}
			if got := len(e.pkts); got != tt.wantPkts {
				t.Errorf("last feedback acknowledged %d new packets, want %d", got, tt.wantPkts)
			}
			for i := 1; i < len(e.pkts); i++ {
				if d := e.pkts[i].arrival - e.pkts[i-1].arrival; d != 1000 {
					t.Fatalf("arrival delta %d µs between packets %d and %d, want 1000", d, i-1, i)
				}
			}
		})
	}
}

// TestEstimatorOnSentDoesNotAllocate: recording a sent packet is
// allocation-free.
func TestEstimatorOnSentDoesNotAllocate(t *testing.T) {
	e := newBWEEstimator(bweConfig{})
	var seq uint16
	if allocs := testing.AllocsPerRun(1000, func() { seq++; e.OnSent(seq, int64(seq)+1, 1200) }); allocs != 0 {
		t.Errorf("OnSent: %v allocations, want 0", allocs)
	}
}

// TestBWEConfigDefaults checks the bounds of the configuration.
func TestBWEConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   bweConfig
		want bweConfig
	}{
		{"zero", bweConfig{}, bweConfig{InitialBitrate: 1_000_000, MinBitrate: 50_000, MaxBitrate: 50_000_000}},
		{"initial clamped to max", bweConfig{InitialBitrate: 5e6, MaxBitrate: 2e6},
			bweConfig{InitialBitrate: 2e6, MinBitrate: 50_000, MaxBitrate: 2e6}},
		{"max raised to min", bweConfig{MinBitrate: 3e6, MaxBitrate: 2e6},
			bweConfig{InitialBitrate: 3e6, MinBitrate: 3e6, MaxBitrate: 3e6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.withDefaults(); got != tt.want {
				t.Errorf("withDefaults = %+v, want %+v", got, tt.want)
			}
			if got := newBWEEstimator(tt.in).TargetBitrate(); got != tt.want.InitialBitrate {
				t.Errorf("TargetBitrate before feedback = %d, want %d", got, tt.want.InitialBitrate)
			}
		})
	}
}
