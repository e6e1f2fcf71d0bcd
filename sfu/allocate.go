package sfu

import "time"

// Layer allocation: which layer of each video producer a subscriber gets.
//
// Every allocInterval (and when the subscriber reports a tile change, or a
// consumer is added) the participant's goroutine runs its allocator over
// its video consumers:
//
//  1. a size cap per track: none for a hidden tile (the consumer is
//     paused; audio is never paused), else the smallest layer that covers
//     the tile's rendered size (within sizeSlack), or the top layer when
//     the size is unknown;
//  2. a bandwidth budget, the subscriber's send-side estimate (bwe.go)
//     minus its audio: every visible track gets its lowest layer, then the
//     tracks are raised one layer at a time, lowest first (fair share),
//     while the sum of layer bitrates fits;
//  3. what exists: the chosen ("desired") layer is the target if its source
//     sends it, else the nearest live layer below it (or above, if none is
//     below). The desired layer also counts as demand (dynacast.go), so a
//     paused layer is resumed for it.
//
// Hysteresis: going down is immediate; going up after a bandwidth-driven
// step down waits for a backoff (upBackoffMin doubling to upBackoffMax,
// reset once a raise held for upHold). The estimate of a link that carries
// less than it could is capped near 1.5x what is sent, so raising a layer
// can need more than the estimate: when the estimate is within reach of a
// raise (probeReach), or the estimator says it is only capped by what is
// sent (no congestion: bweEstimator.Capped), the lowest track is raised
// one layer anyway, and within probeGrace the estimate follows (the raise
// holds) or the raise is undone and further raises are backed off. The
// second rule waits cappedQuiet after the estimate last fell; without it
// a subscriber on a cheap middle layer (a still picture: 60 kbit/s) could
// never reach a top layer ten times its rate. A probe is judged no sooner
// than probeMin: a resumed layer's rate is not measured at first.

const (
	allocInterval = 250 * time.Millisecond
	// sizeSlack: a layer covers a tile up to this much larger than itself.
	sizeSlack = 1.15
	// audioBitrate is the least budget kept for each audio consumer (its
	// measured rate when higher: Producer.audioBudget).
	audioBitrate = 48_000
	upBackoffMin = 2 * time.Second
	upBackoffMax = 8 * time.Second
	upHold       = 10 * time.Second
	// probeReach: a probing raise is made when the estimate is at least
	// this share of the raised use (the estimate of a link carrying less
	// than it could is capped near 1.5x what is sent plus 100 kbit/s).
	probeReach = 0.5
)

// layerInfo is a layer as the allocator sees it.
type layerInfo struct {
	bitrate int // bit/s: measured when live, else nominal
	width   int
	height  int
	live    bool
}

// allocTrack is one video consumer to allocate.
type allocTrack struct {
	layers  []layerInfo
	visible bool
	width   int // tile size in device pixels; 0 unknown
	height  int
	current int // the layer currently desired (for hysteresis); -1 none
}

// sizeCap returns the highest layer worth sending to t's tile (-1: none).
func sizeCap(t *allocTrack) int {
	n := len(t.layers)
	if !t.visible || n == 0 {
		return -1
	}
	if t.width <= 0 && t.height <= 0 {
		return n - 1
	}
	for i, l := range t.layers {
		if float64(l.width)*sizeSlack >= float64(t.width) && float64(l.height)*sizeSlack >= float64(t.height) {
			return i
		}
	}
	return n - 1
}

// allocate returns the desired layer of each track for a budget in bit/s
// (<= 0: unlimited). Pure function.
func allocate(tracks []allocTrack, budget int) []int {
	out := make([]int, len(tracks))
	caps := make([]int, len(tracks))
	used := 0
	for i := range tracks {
		caps[i] = sizeCap(&tracks[i])
		out[i] = -1
		if caps[i] >= 0 {
			out[i] = 0
			used += tracks[i].layers[0].bitrate
		}
	}
	for {
		best := -1
		for i := range tracks {
			if out[i] < 0 || out[i] >= caps[i] {
				continue
			}
			cost := tracks[i].layers[out[i]+1].bitrate - tracks[i].layers[out[i]].bitrate
			if budget > 0 && used+cost > budget {
				continue
			}
			if best < 0 || out[i] < out[best] {
				best = i
			}
		}
		if best < 0 {
			return out
		}
		used += tracks[best].layers[out[best]+1].bitrate - tracks[best].layers[out[best]].bitrate
		out[best]++
	}
}

// liveTarget returns the layer to forward for a desired one: itself when
// live, else the nearest live layer below, else above, else desired.
func liveTarget(layers []layerInfo, desired int) int {
	if desired < 0 {
		return -1
	}
	for i := desired; i >= 0; i-- {
		if layers[i].live {
			return i
		}
	}
	for i := desired + 1; i < len(layers); i++ {
		if layers[i].live {
			return i
		}
	}
	return desired
}

// usage is the bitrate of the desired layers.
func usage(tracks []allocTrack, layers []int) int {
	u := 0
	for i, l := range layers {
		if l >= 0 {
			u += tracks[i].layers[l].bitrate
		}
	}
	return u
}

// allocator is a participant's hysteresis state, owned by its goroutine.
type allocator struct {
	backoff    time.Duration
	upAllowed  time.Time // no raise before this
	lastChange time.Time
	lastRaise  time.Time
	lastEst    int       // the estimate of the previous decision
	probing    bool      // a probing raise was made and not yet judged
	lastFall   time.Time // the last falling estimate or failed probe
	probeStart time.Time // when the probing raise was made
	probeUntil time.Time // until then the estimate may follow the probe
	probeFloor int       // the estimate below which the probe failed
}

// probeGrace is how long the estimate gets to follow a probing raise, and
// probeMin how long a probe lasts before it can be judged a success.
// cappedQuiet is how long after the estimate last fell a raise beyond
// probeReach may be tried because the estimate is capped: on a link that
// just proved narrow, a jump to a layer many times the current rate would
// only cost the viewer a frozen picture.
const (
	probeGrace  = 3 * time.Second
	probeMin    = time.Second
	cappedQuiet = 10 * time.Second
)

// decide turns a fresh allocation into the layers to apply: lower ones at
// once, higher ones only outside the backoff, and a probing raise when the
// estimate is not congested. estimate <= 0 means unknown (no bandwidth
// limit); capped means the estimate only reflects what is sent.
func (a *allocator) decide(tracks []allocTrack, estimate int, capped bool, audio int, now time.Time) []int {
	current := make([]int, len(tracks))
	for i := range tracks {
		current[i] = tracks[i].current
	}
	falling := estimate > 0 && a.lastEst > 0 && float64(estimate) < 0.9*float64(a.lastEst)
	a.lastEst = estimate
	if a.probing && estimate > 0 {
		switch {
		case estimate < a.probeFloor || falling:
			a.probing, falling = false, true // congested: the probe failed
		case now.Sub(a.probeStart) < probeMin || now.Before(a.probeUntil) && estimate-audio < usage(tracks, current):
			// Too early to judge (a resumed layer's rate is not measured
			// yet), or the estimate is still following the raised use:
			// keep the layers (new or hidden tracks apart).
			next := allocate(tracks, 0)
			for i := range next {
				if cur := current[i]; cur >= 0 && next[i] >= 0 {
					next[i] = min(cur, next[i])
				}
			}
			return next
		default:
			// Judged: the estimate caught up (success) or the grace
			// ran out (failure: the estimate cannot reach the raise).
			falling = estimate-audio < usage(tracks, current)
			a.probing = false
		}
	}
	budget := 0
	if estimate > 0 {
		budget = max(estimate-audio, 1)
	}
	next := allocate(tracks, budget)
	unlimited := allocate(tracks, 0)
	down, up := false, false
	for i := range tracks {
		switch cur := current[i]; {
		case next[i] < cur && next[i] < unlimited[i]: // bandwidth-driven step down
			down = true
		case next[i] > cur && cur >= 0:
			up = true
		}
	}
	if falling {
		a.lastFall = now
	}
	if down && falling {
		// Congestion: back off raising, longer each time.
		a.backoff = min(max(2*a.backoff, upBackoffMin), upBackoffMax)
		a.upAllowed = now.Add(a.backoff)
	} else if !a.lastRaise.IsZero() && now.Sub(a.lastChange) >= upHold {
		a.backoff = 0 // the last raise held
	}
	if up && now.Before(a.upAllowed) {
		for i := range tracks {
			if cur := current[i]; cur >= 0 && next[i] > cur {
				next[i] = cur
			}
		}
		up = false
	}
	if !up && !down && estimate > 0 && !now.Before(a.upAllowed) {
		// Probe: raise the lowest track the budget held back by one,
		// if the estimate is within reach of the raised use.
		best := -1
		for i := range tracks {
			if next[i] >= 0 && next[i] < unlimited[i] && (best < 0 || next[i] < next[best]) {
				best = i
			}
		}
		if best >= 0 {
			before := usage(tracks, next) + audio
			next[best]++
			reach := float64(estimate) >= probeReach*float64(usage(tracks, next)+audio)
			if reach || capped && now.Sub(a.lastFall) >= cappedQuiet {
				a.probeFloor = before
				a.probing, a.probeStart, a.probeUntil = true, now, now.Add(probeGrace)
				up = true
			} else {
				next[best]--
			}
		}
	}
	if up {
		a.lastRaise = now
	}
	if up || down {
		a.lastChange = now
	}
	return next
}
