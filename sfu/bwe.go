package sfu

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// Send-side bandwidth estimation for one subscriber peer connection, from
// the transport-wide congestion control (TWCC) feedback the receiver sends
// for the transport-wide sequence numbers twccInterceptor stamps on every
// outgoing packet (twcc.go). The design is equivalent to Google Congestion
// Control (draft-ietf-rmcat-gcc, as in libwebrtc's send-side estimator),
// written for the forwarding path: recording a sent packet never allocates
// and takes one short lock; pion's pkg/gcc allocates per packet.
//
// On each feedback the estimator matches the acknowledged sequence numbers
// with their send times, takes arrival times from the feedback's reference
// time and deltas and:
//   - groups packets sent within 5 ms (or arriving in one burst) and feeds
//     the delay variation between groups to a trendline filter (slope of
//     the smoothed accumulated delay over 20 groups) with GCC's adaptive
//     threshold: overuse, normal or underuse;
//   - measures the acknowledged (received) bitrate over the last 500 ms of
//     arrivals, and the loss fraction over at least 20 packets;
//   - runs AIMD rate control on the estimate: on overuse the estimate
//     becomes 0.85 x the acknowledged bitrate; with more than 10 % loss it
//     is multiplied by 1 - loss/2 (but not below 0.85 x acknowledged);
//     decreases are at least max(300 ms, RTT) apart unless the estimate is
//     above twice the acknowledged bitrate; on underuse or 2-10 % loss it
//     holds; otherwise it increases multiplicatively.
//
// Deviations from GCC, because the engine neither paces nor probes:
//   - the multiplicative increase starts at GCC's 8 %/s and grows by
//     4 %/s for every second without a decrease, up to 50 %/s, so that the
//     estimate recovers from a congestion episode in seconds instead of the
//     tens of seconds pure 8 %/s takes without probes;
//   - while there is no congestion signal (normal delay, under 2 % loss)
//     the estimate is at least the acknowledged bitrate: what the link
//     demonstrably carries, even when the engine sends more than the
//     estimate (its layer choice is discrete);
//   - delay and loss control lower one estimate (GCC keeps one each and
//     takes the smaller), and a loss decrease stops at 0.85 x acknowledged,
//     which only matters while more is sent than estimated.
//
// Like GCC, an increase never takes the estimate above 1.5 x the
// acknowledged bitrate + 100 kbit/s (it is not lowered to that either): a
// subscriber that is sent less than its link carries (only a low simulcast
// layer) gets an estimate near 1.5 x what it is sent, and the engine has
// to probe by switching a layer up optimistically; the start estimate
// (bweConfig.InitialBitrate) stays until feedback says otherwise.
//
// The estimator keeps no clock: send and feedback times are monotonic
// nanoseconds passed in by the caller (twccInterceptor reads the clock).

const (
	// bweHistorySize is the number of sent packets remembered for matching
	// feedback (a power of two): a second of 20 Mbit/s in 1200-byte packets.
	bweHistorySize = 2048
	// bweGroupSpan is the send-time span of a packet group.
	bweGroupSpan = 5 * time.Millisecond
	// bweBurstSpan bounds the arrival span of a group merged from bursts.
	bweBurstSpan = 100 * time.Millisecond
	// bweTrendWindow is the number of groups the trendline fits.
	bweTrendWindow = 20
	// bweTrendSmoothing is the weight of the previous smoothed delay.
	bweTrendSmoothing = 0.9
	// bweTrendGain scales the slope before comparing it with the threshold.
	bweTrendGain = 4.0
	// bweOveruseTime is how long the trend must exceed the threshold (ms).
	bweOveruseTime = 10.0
	// bweMaxDelayJump is a delay variation (ms) treated as a clock jump or
	// a pause that resets the delay filter.
	bweMaxDelayJump = 3000.0
	// bweAckedBucket and bweAckedBuckets make the acknowledged-bitrate
	// window (500 ms of arrival time, in 50 ms buckets).
	bweAckedBucket  = int64(50 * time.Millisecond / time.Microsecond)
	bweAckedBuckets = 10
	// bweAckedMinSpan is the arrival span needed for a first acknowledged
	// bitrate (µs).
	bweAckedMinSpan = int64(100 * time.Millisecond / time.Microsecond)
	// bweBeta is the multiplicative decrease applied to the acknowledged
	// bitrate on overuse.
	bweBeta = 0.85
	// bweLossHigh and bweLossLow are GCC's loss thresholds.
	bweLossHigh = 0.10
	bweLossLow  = 0.02
	// bweLossMinPackets is the number of reported packets a loss fraction
	// is computed over.
	bweLossMinPackets = 20
	// bweDecreaseHold is the shortest gap between two decreases (raised to
	// the RTT when that is longer).
	bweDecreaseHold = 300 * time.Millisecond
	// bweIncreaseMin, bweIncreaseAccel and bweIncreaseMax shape the
	// multiplicative increase: rate per second = min(Min + Accel x seconds
	// since the last decrease, Max).
	bweIncreaseMin   = 0.08
	bweIncreaseAccel = 0.04
	bweIncreaseMax   = 0.50
	// bweMaxIncreaseStep bounds the time one increase step covers, so a
	// feedback after a pause does not jump.
	bweMaxIncreaseStep = 200 * time.Millisecond
	// bweCapFloor is added to 1.5 x the acknowledged bitrate to cap
	// increases (bits/s).
	bweCapFloor = 100_000
	// bweCappedShare: an increasing estimate at least this share of its
	// cap (1.5 x acked + bweCapFloor) is reported as capped.
	bweCappedShare = 0.9
)

// bweConfig bounds the estimate. Zero fields take the defaults.
type bweConfig struct {
	// InitialBitrate is the estimate before any feedback, in bits/s.
	// Default 1 Mbit/s: Chromium starts at 300 kbit/s but probes to about
	// 1-2 Mbit/s within the first second; the engine does not probe, so
	// it starts where those probes typically land, which allows a middle
	// simulcast layer plus audio and lets the estimate rise from there.
	InitialBitrate int
	// MinBitrate is the lowest estimate (default 50 kbit/s).
	MinBitrate int
	// MaxBitrate is the highest estimate (default 50 Mbit/s).
	MaxBitrate int
}

// withDefaults returns c with zero fields set to their defaults and the
// initial bitrate inside the bounds.
func (c bweConfig) withDefaults() bweConfig {
	if c.InitialBitrate <= 0 {
		c.InitialBitrate = 1_000_000
	}
	if c.MinBitrate <= 0 {
		c.MinBitrate = 50_000
	}
	if c.MaxBitrate <= 0 {
		c.MaxBitrate = 50_000_000
	}
	c.MaxBitrate = max(c.MaxBitrate, c.MinBitrate)
	c.InitialBitrate = min(max(c.InitialBitrate, c.MinBitrate), c.MaxBitrate)
	return c
}

// bweState is the rate control state of a bweEstimator.
type bweState int32

const (
	// bweHold: no feedback yet, or the estimate is held (underuse, queues
	// draining, or 2-10 % loss).
	bweHold bweState = iota
	// bweIncrease: no congestion signal, the estimate grows.
	bweIncrease
	// bweDecrease: overuse or heavy loss; the estimate was lowered (or
	// waits for the next decrease to be allowed).
	bweDecrease
)

// String returns the state's name.
func (s bweState) String() string {
	switch s {
	case bweIncrease:
		return "increase"
	case bweDecrease:
		return "decrease"
	default:
		return "hold"
	}
}

// bweUsage is the delay detector's verdict.
type bweUsage int

const (
	bweNormal bweUsage = iota
	bweOverusing
	bweUnderusing
)

// Reported status of a sent packet.
const (
	bweUnreported uint8 = iota
	bweLost
	bweReceived
)

// bweSent is one sent packet of the history ring.
type bweSent struct {
	sent   int64 // monotonic ns
	size   int32 // bytes of the RTP packet
	seq    uint16
	status uint8
	valid  bool
}

// bwePacket is an acknowledged packet of the feedback being processed.
type bwePacket struct {
	sent    int64 // ns
	arrival int64 // µs, receiver clock
	size    int32
}

// bweGroup is a group of packets sent within bweGroupSpan.
type bweGroup struct {
	firstSent, lastSent       int64 // ns
	firstArrival, lastArrival int64 // µs
	valid                     bool
}

// bweEstimator estimates the bandwidth available towards one peer
// connection. OnSent may be called from any goroutine and never allocates;
// OnFeedback serialises itself; TargetBitrate, AckedBitrate, State and
// HasFeedback are lock-free reads for any goroutine.
type bweEstimator struct {
	cfg bweConfig

	target atomic.Int64 // bits/s
	acked  atomic.Int64 // bits/s, 0 = unknown
	state  atomic.Int32 // bweState
	fed    atomic.Bool  // feedback matched a sent packet
	lossPM atomic.Int32 // last evaluated loss fraction, per mille
	overN  atomic.Int64 // overuse verdicts so far
	capped atomic.Bool  // the estimate is bounded by the acknowledged rate

	sentMu sync.Mutex // guards sent
	sent   [bweHistorySize]bweSent

	mu sync.Mutex // serialises OnFeedback; guards the fields below

	refUS   int64  // unwrapped reference time of the last feedback, µs
	lastRef uint32 // its 24-bit wire value
	haveRef bool
	pkts    []bwePacket // scratch: the newly acknowledged packets

	group, prev bweGroup
	trend       bweTrendline
	rate        bweAckedRate

	lost, reported int     // loss accounting since the last evaluation
	loss           float64 // last evaluated loss fraction
	rtt            int64   // smoothed feedback RTT, ns (0 = none yet)

	est          float64 // the estimate, bits/s
	rc           bweState
	running      bool  // rate control ran at least once
	lastUpdate   int64 // ns of the last rate control update
	lastDecrease int64 // ns of the last decrease (long ago at start)
	rampStart    int64 // ns: the first update, or the last decrease
}

// newBWEEstimator returns an estimator at cfg's initial bitrate.
func newBWEEstimator(cfg bweConfig) *bweEstimator {
	e := &bweEstimator{cfg: cfg.withDefaults(), pkts: make([]bwePacket, 0, 256)}
	e.est = float64(e.cfg.InitialBitrate)
	e.lastDecrease = math.MinInt64 / 2
	e.trend.reset()
	e.target.Store(int64(e.cfg.InitialBitrate))
	return e
}

// TargetBitrate returns the current estimate in bits/s.
func (e *bweEstimator) TargetBitrate() int { return int(e.target.Load()) }

// AckedBitrate returns the bitrate the receiver acknowledged over the last
// 500 ms of arrivals, in bits/s, or 0 before there is one.
func (e *bweEstimator) AckedBitrate() int { return int(e.acked.Load()) }

// State returns the rate control state after the last feedback.
func (e *bweEstimator) State() bweState { return bweState(e.state.Load()) }

// Loss returns the last evaluated loss fraction (0..1).
func (e *bweEstimator) Loss() float64 { return float64(e.lossPM.Load()) / 1000 }

// Capped reports whether the estimate is growing but held near 1.5 x the
// acknowledged bitrate: the link shows no congestion and carries all that
// is sent, so the estimate says how much is sent, not how much it could
// carry. Only sending more (a probe) finds out.
func (e *bweEstimator) Capped() bool { return e.capped.Load() }

// Overuses returns how many times the delay detector signalled overuse.
func (e *bweEstimator) Overuses() int64 { return e.overN.Load() }

// HasFeedback reports whether TWCC feedback for sent packets has arrived.
// Without it (the peer did not negotiate transport-cc, or sends no
// feedback) the estimate stays at the initial bitrate and means nothing.
func (e *bweEstimator) HasFeedback() bool { return e.fed.Load() }

// OnSent records a packet sent with transport-wide sequence number seq at
// sent (monotonic ns), size bytes. Never allocates.
func (e *bweEstimator) OnSent(seq uint16, sent int64, size int) {
	e.sentMu.Lock()
	e.sent[seq%bweHistorySize] = bweSent{sent: sent, size: int32(size), seq: seq, valid: true}
	e.sentMu.Unlock()
}

// report marks packet seq as reported lost or received and returns its
// send time, size and previous status, and false when it is not in the
// history or was already reported (received, or lost and lost again).
func (e *bweEstimator) report(seq uint16, received bool) (int64, int32, uint8, bool) {
	e.sentMu.Lock()
	defer e.sentMu.Unlock()
	s := &e.sent[seq%bweHistorySize]
	if !s.valid || s.seq != seq || s.status == bweReceived || (!received && s.status == bweLost) {
		return 0, 0, 0, false
	}
	prev := s.status
	if received {
		s.status = bweReceived
	} else {
		s.status = bweLost
	}
	return s.sent, s.size, prev, true
}

// OnFeedback processes a TWCC feedback packet received at now (monotonic
// ns, same clock as OnSent).
func (e *bweEstimator) OnFeedback(fb *rtcp.TransportLayerCC, now int64) {
	if fb == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.decode(fb, now) {
		return
	}
	slices.SortFunc(e.pkts, func(a, b bwePacket) int {
		return cmp.Or(cmp.Compare(a.arrival, b.arrival), cmp.Compare(a.sent, b.sent))
	})
	for _, p := range e.pkts {
		e.rate.add(p.arrival, p.size)
		e.onPacket(p)
	}
	e.update(now)
}

// decode walks the feedback's packet statuses, collecting the newly
// received packets into e.pkts and counting losses. It reports whether the
// feedback said anything new.
func (e *bweEstimator) decode(fb *rtcp.TransportLayerCC, now int64) bool {
	ref := fb.ReferenceTime & 0xffffff
	if !e.haveRef {
		e.refUS, e.haveRef = (1<<24+int64(ref))*64000, true
	} else {
		d := int64((ref - e.lastRef) & 0xffffff)
		if d >= 1<<23 {
			d -= 1 << 24
		}
		e.refUS += d * 64000
	}
	e.lastRef = ref
	arrival := e.refUS
	e.pkts = e.pkts[:0]
	seq, remaining, next := fb.BaseSequenceNumber, int(fb.PacketStatusCount), 0
	news := false
	minRTT := int64(math.MaxInt64)
	status := func(sym uint16) bool {
		if remaining <= 0 {
			return false
		}
		received := sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta
		if received {
			if next >= len(fb.RecvDeltas) || fb.RecvDeltas[next] == nil {
				return false // malformed: stop
			}
			arrival += fb.RecvDeltas[next].Delta
			next++
		}
		if sent, size, prev, ok := e.report(seq, received); ok {
			news = true
			switch {
			case !received:
				e.reported++
				e.lost++
			case prev == bweLost: // late: counted as lost already
				e.lost = max(e.lost-1, 0)
			default:
				e.reported++
			}
			if received {
				e.pkts = append(e.pkts, bwePacket{sent: sent, arrival: arrival, size: size})
				minRTT = min(minRTT, now-sent)
			}
		}
		seq++
		remaining--
		return remaining > 0
	}
chunks:
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				if !status(c.PacketStatusSymbol) {
					break chunks
				}
			}
		case *rtcp.StatusVectorChunk:
			for _, sym := range c.SymbolList {
				if !status(sym) {
					break chunks
				}
			}
		}
		if remaining <= 0 {
			break
		}
	}
	if minRTT != math.MaxInt64 && minRTT >= 0 {
		if e.rtt == 0 {
			e.rtt = minRTT
		} else {
			e.rtt += (minRTT - e.rtt) / 8
		}
	}
	return news
}

// onPacket adds an acknowledged packet to the send groups and feeds each
// completed group's delay variation to the trendline.
func (e *bweEstimator) onPacket(p bwePacket) {
	g := &e.group
	switch {
	case !g.valid:
		*g = bweGroup{firstSent: p.sent, lastSent: p.sent, firstArrival: p.arrival, lastArrival: p.arrival, valid: true}
		return
	case p.sent < g.firstSent:
		return // sent before the current group: reordered, ignored
	case e.inGroup(p):
		g.lastSent = max(g.lastSent, p.sent)
		g.lastArrival = p.arrival
		return
	}
	if e.prev.valid {
		sendDelta := float64(g.lastSent-e.prev.lastSent) / 1e6
		arrivalDelta := float64(g.lastArrival-e.prev.lastArrival) / 1e3
		if math.Abs(arrivalDelta-sendDelta) > bweMaxDelayJump {
			e.trend.reset()
		} else {
			e.trend.update(sendDelta, arrivalDelta, float64(g.lastArrival)/1e3)
		}
	}
	e.prev = *g
	*g = bweGroup{firstSent: p.sent, lastSent: p.sent, firstArrival: p.arrival, lastArrival: p.arrival, valid: true}
}

// inGroup reports whether p belongs to the current group: sent within
// bweGroupSpan of its first packet, or part of a burst (arriving less than
// 5 ms after the previous packet and earlier than its send spacing says).
func (e *bweEstimator) inGroup(p bwePacket) bool {
	g := &e.group
	if p.sent-g.firstSent <= int64(bweGroupSpan) {
		return true
	}
	arrivalDelta := (p.arrival - g.lastArrival) * 1000 // ns
	sendDelta := p.sent - g.lastSent
	if sendDelta == 0 {
		return true
	}
	return arrivalDelta-sendDelta < 0 && arrivalDelta <= int64(bweGroupSpan) &&
		(p.arrival-g.firstArrival)*1000 < int64(bweBurstSpan)
}

// update runs rate control after a feedback and publishes the results.
func (e *bweEstimator) update(now int64) {
	if e.reported >= bweLossMinPackets {
		e.loss = float64(e.lost) / float64(e.reported)
		e.lost, e.reported = 0, 0
		e.lossPM.Store(int32(e.loss * 1000))
	}
	acked := float64(e.rate.rate())
	if !e.running {
		e.running, e.lastUpdate, e.rampStart = true, now, now
	}
	usage := e.trend.usage
	hold := max(int64(bweDecreaseHold), e.rtt)
	canDecrease := now-e.lastDecrease >= hold || (acked > 0 && e.est > 2*acked)
	est, decreased := e.est, false
	if usage == bweOverusing {
		e.overN.Add(1)
	}
	if usage == bweOverusing && canDecrease {
		d := est * bweBeta
		if acked > 0 {
			d = bweBeta * acked
		}
		est, decreased = min(est, d), true
	}
	if e.loss > bweLossHigh && canDecrease {
		d := e.est * (1 - e.loss/2)
		if acked > 0 {
			d = max(d, bweBeta*acked)
		}
		est, decreased = min(est, d), true
	}
	switch {
	case decreased:
		e.rc, e.lastDecrease, e.rampStart = bweDecrease, now, now
	case usage == bweOverusing || e.loss > bweLossHigh:
		e.rc = bweDecrease // waiting for the hold to end
	case usage == bweUnderusing || e.loss >= bweLossLow:
		e.rc = bweHold
	default:
		e.rc = bweIncrease
		est = e.increase(now, acked)
	}
	e.est = min(max(est, float64(e.cfg.MinBitrate)), float64(e.cfg.MaxBitrate))
	e.lastUpdate = now
	e.capped.Store(e.rc == bweIncrease && acked > 0 && e.est >= bweCappedShare*bweCap(acked))
	e.target.Store(int64(e.est))
	e.acked.Store(int64(acked))
	e.state.Store(int32(e.rc))
	e.fed.Store(true)
}

// increase returns the estimate grown for the time since the last update,
// at least the acknowledged bitrate and, if grown, at most 1.5 x acked +
// bweCapFloor.
func (e *bweEstimator) increase(now int64, acked float64) float64 {
	dt := float64(min(now-e.lastUpdate, int64(bweMaxIncreaseStep))) / 1e9
	since := float64(now-e.rampStart) / 1e9
	r := min(bweIncreaseMin+bweIncreaseAccel*since, bweIncreaseMax)
	est := e.est * math.Pow(1+r, max(dt, 0))
	if acked <= 0 {
		return est
	}
	est = max(est, acked)
	if upper := bweCap(acked); est > e.est && est > upper {
		est = max(e.est, upper)
	}
	return est
}

// bweCap is the most an increase may take the estimate to, given the
// acknowledged bitrate acked (bits/s).
func bweCap(acked float64) float64 { return 1.5*acked + bweCapFloor }

// bweAckedRate measures the acknowledged bitrate over the last
// bweAckedBuckets buckets of arrival time.
type bweAckedRate struct {
	bytes   [bweAckedBuckets]int64
	bucket  [bweAckedBuckets]int64 // bucket number held by each slot
	first   int64                  // first arrival, µs
	newest  int64                  // newest arrival, µs
	started bool
}

// add counts size bytes arriving at arrival (µs). Arrivals older than the
// window are dropped.
func (a *bweAckedRate) add(arrival int64, size int32) {
	if !a.started {
		a.first, a.newest, a.started = arrival, arrival, true
		for i := range a.bucket {
			a.bucket[i] = -1
		}
	}
	b := arrival / bweAckedBucket
	slot := b % bweAckedBuckets
	if a.bucket[slot] != b {
		if a.bucket[slot] > b {
			return
		}
		a.bucket[slot], a.bytes[slot] = b, 0
	}
	a.bytes[slot] += int64(size)
	a.newest = max(a.newest, arrival)
}

// rate returns the acknowledged bitrate in bits/s, or 0 before the
// arrivals span bweAckedMinSpan.
func (a *bweAckedRate) rate() int64 {
	if !a.started || a.newest-a.first < bweAckedMinSpan {
		return 0
	}
	nb := a.newest / bweAckedBucket
	start := max((nb-bweAckedBuckets+1)*bweAckedBucket, a.first)
	var sum int64
	for i, b := range a.bucket {
		if b > nb-bweAckedBuckets && b <= nb {
			sum += a.bytes[i]
		}
	}
	span := max(a.newest-start, bweAckedMinSpan)
	return sum * 8 * 1_000_000 / span
}

// bweTrendline is GCC's delay-based detector: a linear regression of the
// smoothed accumulated inter-group delay variation over the last
// bweTrendWindow groups, compared with an adaptive threshold.
type bweTrendline struct {
	x, y         [bweTrendWindow]float64 // arrival ms since first, smoothed delay ms
	n, next      int
	numDeltas    int
	firstArrival float64
	acc          float64 // accumulated delay variation, ms
	smoothed     float64
	prevTrend    float64
	threshold    float64 // ms
	lastAdapt    float64 // arrival ms of the last threshold update (-1: none)
	overuseTime  float64 // ms over the threshold (-1: not over)
	overuseCount int
	usage        bweUsage
}

// reset returns the filter to its initial state.
func (t *bweTrendline) reset() {
	*t = bweTrendline{threshold: 12.5, lastAdapt: -1, overuseTime: -1, firstArrival: math.NaN()}
}

// update adds one group's delay variation: send and arrival deltas from
// the previous group (ms) and the group's arrival time (ms).
func (t *bweTrendline) update(sendDelta, arrivalDelta, arrival float64) {
	t.numDeltas = min(t.numDeltas+1, 1000)
	if math.IsNaN(t.firstArrival) {
		t.firstArrival = arrival
	}
	t.acc += arrivalDelta - sendDelta
	t.smoothed = bweTrendSmoothing*t.smoothed + (1-bweTrendSmoothing)*t.acc
	t.x[t.next], t.y[t.next] = arrival-t.firstArrival, t.smoothed
	t.next = (t.next + 1) % bweTrendWindow
	t.n = min(t.n+1, bweTrendWindow)
	trend := t.prevTrend
	if t.n == bweTrendWindow {
		trend = t.slope()
	}
	t.detect(trend, sendDelta, arrival)
}

// slope is the least-squares slope of y over x.
func (t *bweTrendline) slope() float64 {
	var sx, sy float64
	for i := range t.n {
		sx += t.x[i]
		sy += t.y[i]
	}
	mx, my := sx/float64(t.n), sy/float64(t.n)
	var num, den float64
	for i := range t.n {
		dx := t.x[i] - mx
		num += dx * (t.y[i] - my)
		den += dx * dx
	}
	if den == 0 {
		return t.prevTrend
	}
	return num / den
}

// detect updates the usage verdict from the trend (GCC's overuse detector).
func (t *bweTrendline) detect(trend, sendDelta, now float64) {
	if t.numDeltas < 2 {
		t.usage = bweNormal
		return
	}
	m := float64(min(t.numDeltas, 60)) * trend * bweTrendGain
	switch {
	case m > t.threshold:
		if t.overuseTime < 0 {
			t.overuseTime = sendDelta / 2
		} else {
			t.overuseTime += sendDelta
		}
		t.overuseCount++
		if t.overuseTime > bweOveruseTime && t.overuseCount > 1 && trend >= t.prevTrend {
			t.overuseTime, t.overuseCount = 0, 0
			t.usage = bweOverusing
		}
	case m < -t.threshold:
		t.overuseTime, t.overuseCount = -1, 0
		t.usage = bweUnderusing
	default:
		t.overuseTime, t.overuseCount = -1, 0
		t.usage = bweNormal
	}
	t.prevTrend = trend
	t.adapt(m, now)
}

// adapt moves the threshold towards |m| (GCC's adaptive threshold: fast
// down, slow up, ignoring spikes far above it).
func (t *bweTrendline) adapt(m, now float64) {
	if t.lastAdapt < 0 {
		t.lastAdapt = now
	}
	am := math.Abs(m)
	if am > t.threshold+15 {
		t.lastAdapt = now
		return
	}
	k := 0.0087
	if am < t.threshold {
		k = 0.039
	}
	dt := min(now-t.lastAdapt, 100)
	t.threshold = min(max(t.threshold+k*(am-t.threshold)*dt, 6), 600)
	t.lastAdapt = now
}
