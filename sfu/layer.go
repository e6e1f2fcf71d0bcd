package sfu

import (
	"strings"
	"sync/atomic"
	"time"
)

// Simulcast layers. A video producer has up to maxLayers layers, ordered by
// quality (0 = lowest). A browser publishing simulcast names its encodings
// by RID; the engine orders the conventional names (q/h/f, l/m/h and
// low/mid/high) and otherwise keeps the order of the SDP. A producer
// without simulcast has one layer.

// maxLayers is the most layers a producer has.
const maxLayers = 3

// nominal returns the bitrate (bit/s) and height assumed for layer i of n
// until it was measured: the usual three-layer camera simulcast (the top
// layer of any producer is taken for 720p at 1.7 Mbit/s).
func nominal(i, n int) (bitrate, height int) {
	switch n - 1 - i {
	case 0:
		return 1_700_000, 720
	case 1:
		return 500_000, 360
	default:
		return 100_000, 180
	}
}

// rateWindow is the window of a layer's bitrate measurement.
const rateWindow = 500 * time.Millisecond

// rateSmoothing is the weight of the past in a layer's bitrate (each
// window counts 1/rateSmoothing).
const rateSmoothing = 4

// layerLive is how long after its last packet a layer counts as sending.
const layerLive = time.Second

// OrderLayers returns rids ordered from the lowest to the highest quality
// (at most maxLayers; extra ones are dropped). Conventional names are
// ordered by meaning, others keep their order. Pure function.
func OrderLayers(rids []string) []string {
	rank := func(r string) int {
		switch strings.ToLower(r) {
		case "q", "l", "low", "0":
			return 0
		case "h":
			// "h" is half in q/h/f and high in l/m/h.
			for _, o := range rids {
				if strings.EqualFold(o, "f") {
					return 1
				}
			}
			return 2
		case "m", "mid", "1":
			return 1
		case "f", "high", "2":
			return 2
		}
		return -1
	}
	out := make([]string, 0, len(rids))
	known := true
	for _, r := range rids {
		if rank(r) < 0 {
			known = false
		}
	}
	out = append(out, rids...)
	if known {
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && rank(out[j]) < rank(out[j-1]); j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
	}
	if len(out) > maxLayers {
		out = out[:maxLayers]
	}
	return out
}

// layer is one encoding of a video producer (or the only stream of any
// producer): its packet cache, keyframe source and measurements.
type layer struct {
	index int
	cache *packetCache // nil for audio

	kr           atomic.Pointer[KeyframeRequester]
	lastKeyframe atomic.Int64 // unix nanos of the last forwarded request
	lastPacket   atomic.Int64 // unix nanos of the last packet
	bitrate      atomic.Int64 // bit/s, smoothed over rateWindows (rateSmoothing)
	width        atomic.Int32 // from the last keyframe (VP8), 0 unknown
	height       atomic.Int32

	// Writer-owned (Producer.wmu) rate window.
	winStart int64
	winBytes int64
}

// account adds a packet of size bytes at now to the layer's measurements.
// Called with the producer's wmu held.
func (l *layer) account(size int, now int64) {
	if last := l.lastPacket.Load(); last != 0 && now-last > int64(rateWindow) {
		// Resumed after a pause: measure afresh (dividing by the pause
		// would report a fraction of the rate for seconds), and until
		// the first window ends the allocator assumes the nominal rate.
		l.winStart, l.winBytes = now, 0
		l.bitrate.Store(0)
	}
	l.lastPacket.Store(now)
	if l.winStart == 0 {
		l.winStart = now
	}
	l.winBytes += int64(size)
	if d := now - l.winStart; d >= int64(rateWindow) {
		r := l.winBytes * 8 * int64(time.Second) / d
		if old := l.bitrate.Load(); old > 0 && d < 2*int64(rateWindow) {
			// An exponential average: a keyframe burst or a quiet
			// moment does not swing the allocation.
			r = (old*(rateSmoothing-1) + r) / rateSmoothing
		}
		l.bitrate.Store(r)
		l.winStart, l.winBytes = now, 0
	}
}

// live reports whether the layer received a packet within layerLive.
func (l *layer) live(now int64) bool {
	t := l.lastPacket.Load()
	return t != 0 && now-t < int64(layerLive)
}

// LayerStatus describes one layer of a producer as it is now. Addition to
// the spec (for /api/cluster and tests).
type LayerStatus struct {
	Layer   int    // 0 = lowest quality
	RID     string // "" without simulcast
	Live    bool   // packets arrived within the last second
	Bitrate int    // bit/s over the last half second
	Width   int    // 0 when unknown
	Height  int
}
