package load

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Clock gives monotonic timestamps as nanoseconds since its creation. Every
// client of one run shares one Clock, so a send stamp taken by a publisher
// and a receive stamp taken by a subscriber are directly comparable (both
// sides live in this process; no wall clock is involved).
type Clock struct{ base time.Time }

// NewClock returns a Clock starting now.
func NewClock() *Clock { return &Clock{base: time.Now()} }

// Now returns the nanoseconds elapsed since the Clock was created.
func (c *Clock) Now() int64 { return int64(time.Since(c.base)) }

// SendTimes holds the send stamp (Clock.Now) of the latest RTP packet sent
// with each sequence number on one publisher track. The SFU forwards packets
// with their sequence numbers unchanged, so a subscriber finds the send time
// of what it receives at ring[seq]. Written by the publisher's pacer, read
// concurrently by every subscriber's track reader.
type SendTimes struct {
	ring [1 << 16]atomic.Int64
}

// Store records that the packet with sequence number seq was sent at t.
func (s *SendTimes) Store(seq uint16, t int64) { s.ring[seq].Store(t) }

// Load returns the send stamp of seq (0 when nothing was sent with it yet).
func (s *SendTimes) Load(seq uint16) int64 { return s.ring[seq].Load() }

// regKey names one publisher track: the publisher's participant id (the
// stream id on the subscriber side) and the track kind.
type regKey struct {
	participant string
	kind        webrtc.RTPCodecType
}

// Registry maps publisher tracks to their SendTimes. Publishers register
// their rings right after joining (before they publish); subscribers look a
// track up once, when it starts. Safe for concurrent use.
type Registry struct {
	mu sync.RWMutex
	m  map[regKey]*SendTimes
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{m: make(map[regKey]*SendTimes)} }

// Register records the rings of participant's video and audio tracks.
func (r *Registry) Register(participant string, video, audio *SendTimes) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[regKey{participant, webrtc.RTPCodecTypeVideo}] = video
	r.m[regKey{participant, webrtc.RTPCodecTypeAudio}] = audio
}

// Unregister forgets participant's rings.
func (r *Registry) Unregister(participant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, regKey{participant, webrtc.RTPCodecTypeVideo})
	delete(r.m, regKey{participant, webrtc.RTPCodecTypeAudio})
}

// Lookup returns the ring of participant's track of kind, or nil.
func (r *Registry) Lookup(participant string, kind webrtc.RTPCodecType) *SendTimes {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[regKey{participant, kind}]
}

// Window gates what the track readers count: packets received before Start
// (warm-up) or after Stop are not part of the measurement. Safe for
// concurrent use; the readers only do one atomic load per packet.
type Window struct {
	phase atomic.Int32 // 0 before Start, 1 measuring, 2 after Stop
	start atomic.Int64 // Clock.Now at Start
	stop  atomic.Int64 // Clock.Now at Stop
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// Start opens the window at t (a Clock.Now value).
func (w *Window) Start(t int64) {
	w.start.Store(t)
	w.phase.CompareAndSwap(phaseWarmup, phaseMeasure)
}

// Stop closes the window at t. Stopping a window that never started leaves
// it empty.
func (w *Window) Stop(t int64) {
	if w.phase.Swap(phaseDone) == phaseMeasure {
		w.stop.Store(t)
	}
}

// measuring reports whether packets count now.
func (w *Window) measuring() bool { return w.phase.Load() == phaseMeasure }

// Length returns how long the window was open (0 if it never closed).
func (w *Window) Length() time.Duration {
	if w.phase.Load() != phaseDone || w.stop.Load() == 0 {
		return 0
	}
	return time.Duration(w.stop.Load() - w.start.Load())
}
