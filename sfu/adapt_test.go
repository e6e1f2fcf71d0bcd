package sfu

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// vp8Payload builds a VP8 payload: descriptor with a 15-bit picture ID and
// TL0PICIDX, start of partition 0 when start, a keyframe header (640x360)
// when key.
func vp8Payload(pid uint16, tl0 uint8, start, key bool) []byte {
	b := []byte{0x80, 0xc0, 0x80 | byte(pid>>8), byte(pid), tl0}
	if start {
		b[0] |= 0x10
	}
	if key {
		b = append(b, 0x00, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01) // P=0, 640x360
	} else {
		b = append(b, 0x01, 0, 0, 1, 2, 3)
	}
	return append(b, make([]byte, 100)...)
}

func TestParseVP8(t *testing.T) {
	tests := []struct {
		name       string
		b          []byte
		ok, start  bool
		key        bool
		pid        uint16
		tl0        uint8
		w, h       int
		pidOff, tl int
	}{
		{"keyframe start", vp8Payload(300, 7, true, true), true, true, true, 300, 7, 640, 360, 2, 4},
		{"delta start", vp8Payload(301, 7, true, false), true, true, false, 301, 7, 0, 0, 2, 4},
		{"continuation", vp8Payload(301, 7, false, true), true, false, false, 301, 7, 0, 0, 2, 4},
		{"no extension", []byte{0x10, 0x00, 1, 2}, true, true, true, 0, 0, 0, 0, 0, 0},
		{"7-bit picture id", []byte{0x90, 0x80, 0x05, 0x01}, true, true, false, 5, 0, 0, 0, 2, 0},
		{"truncated", []byte{0x90, 0x80}, false, false, false, 0, 0, 0, 0, 0, 0},
		{"empty", nil, false, false, false, 0, 0, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := parseVP8(tt.b)
			if d.ok != tt.ok || d.start != tt.start || d.keyframe != tt.key || d.pid != tt.pid || d.tl0 != tt.tl0 ||
				d.width != tt.w || d.height != tt.h || d.pidOff != tt.pidOff || d.tl0Off != tt.tl {
				t.Fatalf("parseVP8 = %+v", d)
			}
		})
	}
}

func TestH264Keyframe(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"IDR", []byte{0x65, 1}, true},
		{"SPS", []byte{0x67, 1}, true},
		{"non-IDR slice", []byte{0x41, 1}, false},
		{"STAP-A with SPS", []byte{0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 1}, true},
		{"STAP-A without", []byte{0x78, 0, 2, 0x41, 1}, false},
		{"FU-A start IDR", []byte{0x7c, 0x85, 1}, true},
		{"FU-A middle IDR", []byte{0x7c, 0x05, 1}, false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := h264Keyframe(tt.b); got != tt.want {
			t.Errorf("%s: h264Keyframe = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOrderLayers(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"f", "h", "q"}, []string{"q", "h", "f"}},
		{[]string{"h", "m", "l"}, []string{"l", "m", "h"}},
		{[]string{"a", "b"}, []string{"a", "b"}},
		{[]string{"x", "y", "z", "w"}, []string{"x", "y", "z"}},
	}
	for _, tt := range tests {
		if got := OrderLayers(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("OrderLayers(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// layeredTrack is a fan-out track of a 3-layer VP8 producer with one
// bound sender, and a generator of each layer's packets.
type layeredTrack struct {
	tr      *fanoutTrack
	b       *trackBinding
	w       *recordingWriter
	seq     [maxLayers]uint16
	ts      [maxLayers]uint32
	pid     [maxLayers]uint16
	scratch [maxCachedPayload]byte
	now     int64
	out     []rtp.Header
	pids    []uint16
}

func newLayeredTrack(t *testing.T) *layeredTrack {
	t.Helper()
	lt := &layeredTrack{tr: newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "p", "s"), w: &recordingWriter{}}
	lt.tr.layered = true
	if _, err := lt.tr.Bind(&fakeBindContext{id: "a", ssrc: 9, w: lt.w, codecs: []webrtc.RTPCodecParameters{vp8Params(96)}}); err != nil {
		t.Fatal(err)
	}
	lt.b = lt.tr.binding(9)
	// Each layer numbers its packets independently.
	lt.seq = [maxLayers]uint16{100, 20000, 65000}
	lt.ts = [maxLayers]uint32{1000, 500000, 4294960000}
	lt.pid = [maxLayers]uint16{10, 2000, 32760}
	lt.now = time.Second.Nanoseconds()
	return lt
}

// frame sends one frame of every layer (two packets each, key frames
// where key[layer]) and advances time by 33 ms.
func (lt *layeredTrack) frame(key [maxLayers]bool) {
	for l := range maxLayers {
		for part := range 2 {
			payload := vp8Payload(lt.pid[l], uint8(lt.pid[l]), part == 0, key[l] && part == 0)
			pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: lt.seq[l], Timestamp: lt.ts[l], Marker: part == 1}, Payload: payload}
			fi := inspect(codecVP8, payload)
			before := lt.w.writes
			lt.tr.write(lt.tr.snapshot(), int8(l), pkt, &fi, 90000, lt.now, lt.scratch[:], new(rtp.Header))
			if lt.w.writes > before {
				lt.out = append(lt.out, lt.w.last)
				lt.pids = append(lt.pids, parseVP8(lt.w.payload).pid)
			}
			lt.seq[l]++
		}
		lt.ts[l] += 3000
		lt.pid[l] = (lt.pid[l] + 1) & 0x7fff
	}
	lt.now += (33 * time.Millisecond).Nanoseconds()
}

// TestLayerSwitchContinuity: across switches up and down, a pause and a
// resume, the receiver sees consecutive sequence numbers, increasing
// timestamps and consecutive picture IDs, and a switch only happens at a
// keyframe of the target layer.
func TestLayerSwitchContinuity(t *testing.T) {
	lt := newLayeredTrack(t)
	none := [maxLayers]bool{}
	all := [maxLayers]bool{true, true, true}
	steps := []struct {
		target int32
		key    [maxLayers]bool
		frames int
		want   int32 // layer forwarded afterwards
	}{
		{0, none, 3, -1}, // waits for a keyframe
		{0, all, 3, 0},   // starts at the keyframe
		{2, none, 3, 0},  // up: keeps layer 0 until layer 2's keyframe
		{2, [maxLayers]bool{false, false, true}, 3, 2},
		{1, none, 2, 2}, // down: waits too
		{1, [maxLayers]bool{false, true, false}, 3, 1},
		{-1, none, 3, -1}, // paused
		{1, none, 2, -1},  // resume waits for a keyframe
		{1, [maxLayers]bool{false, true, false}, 3, 1},
		{-1, none, 2, -1}, // paused again
		{2, [maxLayers]bool{true, false, false}, 3, 0}, // resumes at a lower layer's keyframe
		{2, [maxLayers]bool{false, false, true}, 3, 2}, // and switches up at the target's
	}
	for i, st := range steps {
		lt.b.want.target.Store(st.target)
		lt.frame(st.key)
		for range st.frames - 1 {
			lt.frame(none)
		}
		if got := lt.b.want.current.Load(); got != st.want {
			t.Fatalf("step %d: forwarding layer %d, want %d", i, got, st.want)
		}
	}
	if len(lt.out) < 20 {
		t.Fatalf("only %d packets forwarded", len(lt.out))
	}
	for i := 1; i < len(lt.out); i++ {
		p, c := lt.out[i-1], lt.out[i]
		if c.SequenceNumber != p.SequenceNumber+1 {
			t.Fatalf("packet %d: seq %d after %d", i, c.SequenceNumber, p.SequenceNumber)
		}
		if d := int32(c.Timestamp - p.Timestamp); d < 0 || d > 90000 {
			t.Fatalf("packet %d: timestamp step %d", i, d)
		}
		if d := (lt.pids[i] - lt.pids[i-1]) & 0x7fff; d > 1 {
			t.Fatalf("packet %d: picture id %d after %d", i, lt.pids[i], lt.pids[i-1])
		}
		if c.SSRC != 9 || c.PayloadType != 96 {
			t.Fatalf("packet %d: ssrc %d pt %d", i, c.SSRC, c.PayloadType)
		}
	}
}

// TestMungerLookup: a NACK maps back to the layer and input sequence number
// of the mapping it was sent with, before and after a switch.
func TestMungerLookup(t *testing.T) {
	m := newMunger()
	fi := frameInfo{keyframe: true}
	pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: 500, Timestamp: 10}}
	m.switchTo(0, pkt, &fi, 90000, 1)
	for s := uint16(500); s < 510; s++ {
		pkt.SequenceNumber = s
		m.forward(pkt, &fi, 2)
	}
	pkt.SequenceNumber, pkt.Timestamp = 7000, 99
	m.switchTo(2, pkt, &fi, 90000, 3)
	m.forward(pkt, &fi, 3)
	tests := []struct {
		out   uint16
		layer int8
		in    uint16
		ok    bool
	}{
		{505, 0, 505, true},
		{510, 2, 7000, true},
		{499, 0, 0, false},
	}
	for _, tt := range tests {
		mp, in, ok := m.lookup(tt.out)
		if ok != tt.ok || (ok && (mp.layer != tt.layer || in != tt.in)) {
			t.Errorf("lookup(%d) = %v, %d, %v; want layer %d, %d, %v", tt.out, mp, in, ok, tt.layer, tt.in, tt.ok)
		}
	}
}

// threeLayers is a live three-layer producer at nominal rates and sizes.
func threeLayers() []layerInfo {
	return []layerInfo{
		{bitrate: 150_000, width: 320, height: 180, live: true},
		{bitrate: 500_000, width: 640, height: 360, live: true},
		{bitrate: 1_700_000, width: 1280, height: 720, live: true},
	}
}

func TestAllocate(t *testing.T) {
	vis := func(w, h int) allocTrack {
		return allocTrack{layers: threeLayers(), visible: true, width: w, height: h, current: -1}
	}
	hidden := allocTrack{layers: threeLayers(), current: -1}
	single := allocTrack{layers: threeLayers()[:1], visible: true, current: -1}
	tests := []struct {
		name   string
		tracks []allocTrack
		budget int
		want   []int
	}{
		{"unlimited, unknown size", []allocTrack{vis(0, 0), vis(0, 0)}, 0, []int{2, 2}},
		{"tile 320x180 gets the low layer", []allocTrack{vis(320, 180)}, 0, []int{0}},
		{"tile 360x200 is covered by low within slack", []allocTrack{vis(360, 200)}, 0, []int{0}},
		{"tile 640x360", []allocTrack{vis(640, 360)}, 0, []int{1}},
		{"tile 1920x1080 gets the top", []allocTrack{vis(1920, 1080)}, 0, []int{2}},
		{"hidden gets nothing", []allocTrack{hidden, vis(0, 0)}, 0, []int{-1, 2}},
		{"600k for three: low each", []allocTrack{vis(0, 0), vis(0, 0), vis(0, 0)}, 600_000, []int{0, 0, 0}},
		{"1M for three: one raised", []allocTrack{vis(0, 0), vis(0, 0), vis(0, 0)}, 1_000_000, []int{1, 0, 0}},
		{"1.2M for three: fair raise", []allocTrack{vis(0, 0), vis(0, 0), vis(0, 0)}, 1_200_000, []int{1, 1, 0}},
		{"1.6M for three: all middle", []allocTrack{vis(0, 0), vis(0, 0), vis(0, 0)}, 1_600_000, []int{1, 1, 1}},
		{"too little still sends the low layers", []allocTrack{vis(0, 0), vis(0, 0)}, 100_000, []int{0, 0}},
		{"single layer", []allocTrack{single}, 50_000, []int{0}},
		{"3M for a small tile stays small", []allocTrack{vis(320, 180), vis(0, 0)}, 3_000_000, []int{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := allocate(tt.tracks, tt.budget)
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("allocate = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestLiveTarget(t *testing.T) {
	ls := threeLayers()
	ls[2].live = false
	tests := []struct{ desired, want int }{{2, 1}, {1, 1}, {0, 0}, {-1, -1}}
	for _, tt := range tests {
		if got := liveTarget(ls, tt.desired); got != tt.want {
			t.Errorf("liveTarget(%d) = %d, want %d", tt.desired, got, tt.want)
		}
	}
	ls[0].live, ls[1].live = false, false
	ls[2].live = true
	if got := liveTarget(ls, 0); got != 2 {
		t.Errorf("only the top is live: liveTarget(0) = %d, want 2", got)
	}
}

// TestAllocatorHysteresis: a collapse steps down at once, raises wait for
// the backoff, a probing raise is given time for the estimate to follow,
// and a link that stays narrow does not make the layers oscillate.
func TestAllocatorHysteresis(t *testing.T) {
	var a allocator
	now := time.Unix(1000, 0)
	tracks := []allocTrack{{layers: threeLayers(), visible: true, current: -1}}
	const audio = 48_000
	step := func(est int) int {
		got := a.decide(tracks, est, false, audio, now)
		tracks[0].current = got[0]
		now = now.Add(allocInterval)
		return got[0]
	}
	if got := step(3_000_000); got != 2 {
		t.Fatalf("3 Mbit/s: layer %d, want 2", got)
	}
	if got := step(300_000); got != 0 {
		t.Fatalf("collapse to 300 kbit/s: layer %d, want 0 at once", got)
	}
	// The estimate stays at 300k (a 300k link): probes are bounded by the
	// backoff.
	changes := 0
	last := 0
	for range 60 { // 30 s
		if got := step(300_000); got != last {
			changes++
			last = got
		}
	}
	if changes > 6 {
		t.Errorf("narrow link: %d layer changes in 30 s, want few", changes)
	}
	// Bandwidth returns: the estimate follows the probes.
	var up time.Duration
	for i := range 40 {
		// What the estimator allows while the link is wider than the use.
		est := 1.5*float64(usage(tracks, []int{tracks[0].current})+audio) + 100_000
		if got := step(int(est)); got == 2 {
			up = time.Duration(i+1) * allocInterval
			break
		}
	}
	if up == 0 || up > 10*time.Second {
		t.Fatalf("did not climb back to the top layer (after %v)", up)
	}
	t.Logf("climbed back to the top in %v of simulated time", up)
}

// TestAllocatorProbesWhenCapped: a subscriber on a cheap middle layer (a
// still picture) has an estimate near 1.5x that, far below the top layer;
// only an estimate the estimator reports as capped by what is sent (no
// congestion) lets the allocator probe up to the top.
func TestAllocatorProbesWhenCapped(t *testing.T) {
	layers := threeLayers()
	layers[1].bitrate = 60_000
	const audio = 48_000
	est := int(1.5*float64(60_000+audio)) + 100_000 // what the estimator allows
	tests := []struct {
		name   string
		capped bool
		want   int
		fell   time.Duration // the estimate fell this long ago (0: never)
	}{
		{"capped estimate: probe to the top", true, 2, 0},
		{"congested estimate: stay", false, 1, 0},
		{"capped, but fell 5 s ago: stay", true, 1, 5 * time.Second},
		{"capped, fell 11 s ago: probe", true, 2, 11 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a allocator
			now := time.Unix(1000, 0)
			tracks := []allocTrack{{layers: layers, visible: true, current: 1}}
			if tt.fell > 0 {
				a.lastFall = now.Add(-tt.fell)
			}
			got := a.decide(tracks, est, tt.capped, audio, now)
			if got[0] != tt.want {
				t.Fatalf("layer %d, want %d", got[0], tt.want)
			}
		})
	}
}

// TestLayerRateAfterPause: a layer's bitrate is measured afresh when it
// resumes after a pause (dynacast), not averaged over the pause.
func TestLayerRateAfterPause(t *testing.T) {
	var l layer
	now := time.Unix(1000, 0).UnixNano()
	send := func(d time.Duration) { // 1 Mbit/s in 10 ms packets of 1250 bytes
		for end := now + d.Nanoseconds(); now < end; now += (10 * time.Millisecond).Nanoseconds() {
			l.account(1250, now)
		}
	}
	send(3 * time.Second)
	if r := l.bitrate.Load(); r < 900_000 || r > 1_100_000 {
		t.Fatalf("steady 1 Mbit/s measured as %d", r)
	}
	now += (10 * time.Second).Nanoseconds() // paused
	send(20 * time.Millisecond)
	if r := l.bitrate.Load(); r != 0 {
		t.Fatalf("just resumed: bitrate %d, want 0 (unknown: the allocator assumes the nominal rate)", r)
	}
	send(time.Second)
	if r := l.bitrate.Load(); r < 900_000 || r > 1_100_000 {
		t.Fatalf("a second after resuming at 1 Mbit/s: measured %d", r)
	}
}

// TestAllocatorProbeMinimum: a probing raise is not judged a success
// before probeMin, even when the raised layer looks cheap at first.
func TestAllocatorProbeMinimum(t *testing.T) {
	var a allocator
	now := time.Unix(1000, 0)
	const audio = 48_000
	tracks := []allocTrack{{layers: threeLayers(), visible: true, current: 0}}
	est := 300_000 // within probeReach of the middle layer
	got := a.decide(tracks, est, false, audio, now)
	if got[0] != 1 || !a.probing {
		t.Fatalf("no probe to the middle layer: %v", got)
	}
	// The resumed middle layer measures cheap in its first moments; the
	// capped estimate would allow another probe at once.
	tracks[0].current = 1
	tracks[0].layers[1].bitrate = 50_000
	now = now.Add(allocInterval)
	if got := a.decide(tracks, est, true, audio, now); got[0] != 1 {
		t.Fatalf("%v after a probe: layer %d, want 1 (the probe is not judged yet)", allocInterval, got[0])
	}
}

// TestAudioBudget: an audio consumer is budgeted at its producer's
// measured rate, at least audioBitrate.
func TestAudioBudget(t *testing.T) {
	tests := []struct {
		name     string
		measured int64
		want     int
	}{
		{"not measured yet", 0, audioBitrate},
		{"Opus with DTX", 20_000, audioBitrate},
		{"RED", 70_000, 70_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Producer{info: ProducerInfo{Kind: KindAudio}, layers: testLayers(KindAudio, 1)}
			p.layers[0].bitrate.Store(tt.measured)
			if got := p.audioBudget(); got != tt.want {
				t.Fatalf("audioBudget = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestResendBudget: a consumer's retransmissions per second are bounded by
// a quarter of what it was forwarded in the previous second (at least
// minResendBudget).
func TestResendBudget(t *testing.T) {
	tests := []struct {
		name string
		sent uint64 // packets forwarded in the first second
		want int    // retransmissions allowed in the second one
	}{
		{"idle consumer", 0, minResendBudget},
		{"200 packets", 200, 50},
		{"40 packets", 40, minResendBudget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b trackBinding
			now := time.Second.Nanoseconds()
			b.allowResend(now) // opens the first window
			b.sent = tt.sent
			now += time.Second.Nanoseconds()
			got := 0
			for range 1000 {
				if b.allowResend(now) {
					got++
				}
			}
			if got != tt.want {
				t.Fatalf("allowed %d retransmissions, want %d", got, tt.want)
			}
		})
	}
}

// TestMungerLongStream: a mapping keeps forwarding (and answering NACKs
// for recent packets) long after its switch point, across sequence
// number wrap-arounds.
func TestMungerLongStream(t *testing.T) {
	m := newMunger()
	fi := frameInfo{keyframe: true}
	pkt := &rtp.Packet{Header: rtp.Header{SequenceNumber: 60000, Timestamp: 10}}
	m.switchTo(0, pkt, &fi, 90000, 1)
	var last uint16
	for i := range 200_000 {
		pkt.SequenceNumber = uint16(60000 + i)
		pkt.Timestamp += 3000
		seq, _, ok := m.forward(pkt, &fi, int64(i))
		if !ok {
			t.Fatalf("packet %d (seq %d) not forwarded", i, pkt.SequenceNumber)
		}
		if i > 0 && seq != last+1 {
			t.Fatalf("packet %d: seq %d after %d", i, seq, last)
		}
		last = seq
	}
	if mp, in, ok := m.lookup(last - 5); !ok || mp.layer != 0 || in != pkt.SequenceNumber-5 {
		t.Fatalf("lookup of a recent packet = %v, %d, %v", mp, in, ok)
	}
	// An old packet from before the switch point is still refused.
	pkt.SequenceNumber -= seqHorizon + 10
	if _, _, ok := m.forward(pkt, &fi, 1); ok {
		t.Fatal("a packet far behind the stream was forwarded")
	}
}
