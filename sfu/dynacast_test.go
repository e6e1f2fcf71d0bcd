package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestDynacastDemand: a producer's active layers are the union of what its
// consumers target and desire (subscribers here and consumers pinned for
// other nodes alike); a newly needed layer is active at once, an unneeded
// one only after dynacastHold; a producer nobody consumes ends with
// nothing active. TestDynacastKeepsLowest covers the publisher's side.
// (The producer here is a remote one: it starts with its lowest layer,
// what a node asks the origin for first, and keeps it while it has
// consumers.)
func TestDynacastDemand(t *testing.T) {
	p := &Producer{
		info:   ProducerInfo{Kind: KindVideo, Layers: []string{"q", "h", "f"}},
		track:  newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "p", "s"),
		layers: testLayers(KindVideo, 3),
	}
	var reports []uint8
	p.OnDemand(func(m uint8) { reports = append(reports, m) })
	sub := p.track.want(1)  // a local subscriber
	pipe := p.track.want(2) // a consumer piping one layer to another node
	set := func(w *layerWant, target, desired int32) { w.target.Store(target); w.desired.Store(desired) }
	now := time.Unix(100, 0).UnixNano()
	at := func(d time.Duration) int64 { return now + d.Nanoseconds() }

	steps := []struct {
		name    string
		at      time.Duration
		apply   func()
		active  uint8
		reports int
	}{
		{"first evaluation: the lowest layer, which the subscriber wants", 0, func() { set(sub, 0, 0); set(pipe, -1, -1) }, 0b001, 1},
		{"after the hold: unchanged", 3 * time.Second, nil, 0b001, 1},
		{"the other node wants the top layer: at once", 3*time.Second + time.Millisecond, func() { set(pipe, 2, 2) }, 0b101, 2},
		{"a subscriber desiring a paused layer resumes it", 4 * time.Second, func() { set(sub, 0, 1) }, 0b111, 3},
		{"unchanged demand reports nothing", 4*time.Second + 250*time.Millisecond, nil, 0b111, 3},
		{"everyone paused: held", 5 * time.Second, func() { set(sub, -1, -1); set(pipe, -1, -1) }, 0b111, 3},
		{"after the hold: the lowest, for the paused consumers", 8 * time.Second, nil, 0b001, 4},
		{"no consumer: nothing after the hold", 8*time.Second + time.Millisecond, func() { p.track.dropWant(1); p.track.dropWant(2) }, 0b001, 4},
		{"nothing", 11 * time.Second, nil, 0, 5},
	}
	for _, st := range steps {
		if st.apply != nil {
			st.apply()
		}
		p.evaluateDemand(at(st.at))
		if got := p.ActiveLayers(); got != st.active || len(reports) != st.reports {
			t.Fatalf("%s: active %03b with %d reports, want %03b with %d", st.name, got, len(reports), st.active, st.reports)
		}
	}
}

// TestDynacastKeepsLowest: a local producer (a publisher's) keeps its
// lowest layer while it has consumers, even paused ones, and drops it once
// it has none.
func TestDynacastKeepsLowest(t *testing.T) {
	p := &Producer{
		info:   ProducerInfo{Kind: KindVideo, Layers: []string{"q", "h", "f"}},
		track:  newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "p", "s"),
		layers: testLayers(KindVideo, 3),
		owner:  &Participant{queue: newActionQueue(), closingCh: make(chan struct{})},
	}
	now := time.Unix(100, 0).UnixNano()
	w := p.track.want(1)
	w.target.Store(2)
	w.desired.Store(2)
	p.evaluateDemand(now)
	if got := p.ActiveLayers(); got != 0b111 {
		t.Fatalf("first evaluation: %03b, want all (held)", got)
	}
	p.evaluateDemand(now + (3 * time.Second).Nanoseconds())
	if got := p.ActiveLayers(); got != 0b101 {
		t.Fatalf("a subscriber on the top layer: %03b, want lowest and top", got)
	}
	w.target.Store(-1)
	w.desired.Store(-1)
	p.evaluateDemand(now + (6 * time.Second).Nanoseconds())
	if got := p.ActiveLayers(); got != 0b001 {
		t.Fatalf("the subscriber's tile hidden: %03b, want the lowest", got)
	}
	p.track.dropWant(1)
	p.evaluateDemand(now + (9 * time.Second).Nanoseconds())
	if got := p.ActiveLayers(); got != 0 {
		t.Fatalf("no consumer: %03b, want nothing", got)
	}
	if n := len(p.owner.queue.take(nil)); n != 4 {
		t.Errorf("%d encodings events queued for the publisher, want 4", n)
	}
}
