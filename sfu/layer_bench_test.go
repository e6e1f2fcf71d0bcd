package sfu

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pion/rtp"
)

// BenchmarkForwardLayered is BenchmarkForward with simulcast: a remote VP8
// producer with three layers (q/h/f) and N subscribers spread over them
// (subscriber i gets layer 2 - i%3, so a single one gets the top layer),
// chosen by their participants' allocators from the tile sizes they
// report. The even subscribers reached their layer by a keyframe-gated
// switch, so they are forwarded with sequence number, timestamp and VP8
// picture ID offsets: each of their packets is copied to rewrite the
// picture ID and TL0PICIDX. One op is Producer.WriteLayerRTP of the next
// packet of a simulcast stream (per frame interval 1, 2 and 7 packets of
// 1200 bytes on layers 0, 1 and 2, a keyframe on every layer each 60
// frames; a layer no subscriber receives is not sent, as dynacast pauses
// it at the source); it walks all N bindings and forwards to those on its
// layer. The metrics are BenchmarkForward's, per packet actually sent
// (the producer's count), and rewritten/pkt-out is the share of those
// packets that were copied for the rewrite. allocs/pkt-out is
// process-wide, like BenchmarkForward's; TestForwardDoesNotAllocate
// (three-layers) checks the forwarding path itself.
func BenchmarkForwardLayered(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("consumers=%d", n), func(b *testing.B) {
			f, src := newLayeredForwardBench(b, n)
			f.measure(b, func() error { return src.writePacket(f.prod) })
			b.ReportMetric(f.rewrittenShare(b), "rewritten/pkt-out")
		})
	}
}

// The simulcast stream of the layered benchmarks.
const (
	benchLayers = 3
	// benchKeyframeEvery is the keyframe interval in frames (2 s at 30
	// fps).
	benchKeyframeEvery = 60
)

// benchFramePackets is the packets per frame of each layer: about 0.3,
// 0.6 and 2 Mbit/s at 30 fps.
var benchFramePackets = [benchLayers]int{1, 2, 7}

// benchTiles are tile sizes whose best layer is 0, 1 and 2: the sizes of
// the layers' frames, which their keyframes carry.
var benchTiles = [benchLayers]VideoSettings{
	{Width: 320, Height: 180, Visible: true},
	{Width: 640, Height: 360, Visible: true},
	{Width: 1280, Height: 720, Visible: true},
}

// benchLayer is the layer subscriber i receives while measured.
func benchLayer(i int) int { return benchLayers - 1 - i%benchLayers }

// benchSwitched reports whether subscriber i starts on another layer and
// switches to benchLayer(i) before the measurement.
func benchSwitched(i int) bool { return i%2 == 0 }

// benchStartLayer is the layer subscriber i starts with.
func benchStartLayer(i int) int {
	if benchSwitched(i) {
		return (benchLayer(i) + 1) % benchLayers
	}
	return benchLayer(i)
}

// benchPacketsOut is the number of packets a frame interval sends to n
// subscribers.
func benchPacketsOut(n int) int {
	out := 0
	for i := range n {
		out += benchFramePackets[benchLayer(i)]
	}
	return out
}

// simulcastSource generates a three-layer VP8 simulcast stream as a
// browser sends it: each layer with its own sequence numbers, timestamps,
// 15-bit picture IDs and TL0PICIDX (different bases, so a switch needs
// offsets), payload descriptors with S set on a frame's first packet, the
// marker on its last, and keyframes whose VP8 header (P bit 0) carries the
// layer's frame size. A frame interval is the next frame of every active
// layer, lowest layer first. Writing reuses one packet and three payloads
// per layer, so it does not allocate.
type simulcastSource struct {
	layers [benchLayers]sourceLayer
	frames int // frame intervals begun
	layer  int // layer of the next packet
	part   int // index of the next packet in its frame
}

type sourceLayer struct {
	active bool // sent (a layer nobody receives is paused)
	pkt    rtp.Packet
	// Payloads: a keyframe's first packet, another frame's first packet,
	// any later packet of a frame.
	key, delta, cont []byte
	pid              uint16
	tl0              uint8
}

// vp8DescLen is the payload descriptor's length: X, I (15-bit picture ID)
// and L (TL0PICIDX).
const vp8DescLen = 5

// newSimulcastSource returns a source with every layer active, at the
// start of a frame interval that begins with keyframes.
func newSimulcastSource() *simulcastSource {
	s := &simulcastSource{frames: 1}
	for i := range s.layers {
		l := &s.layers[i]
		l.active = true
		l.pkt.Header = rtp.Header{Version: 2, PayloadType: 96, SSRC: uint32(0x5000 + i),
			SequenceNumber: uint16(10000 * (i + 1)), Timestamp: uint32(1_000_000 * (i + 1))}
		l.pid = uint16(1000 + 7000*i)
		l.tl0 = uint8(10 + 80*i)
		w, h := benchTiles[i].Width, benchTiles[i].Height
		l.key = benchVP8Payload(true, []byte{0x00, 0, 0, 0x9d, 0x01, 0x2a,
			byte(w), byte(w >> 8), byte(h), byte(h >> 8)}) // P=0, size
		l.delta = benchVP8Payload(true, []byte{0x01, 0, 0}) // P=1
		l.cont = benchVP8Payload(false, nil)
	}
	return s
}

// benchVP8Payload is a benchPayloadSize-byte VP8 payload: the descriptor
// (start: S=1, partition 0), then head, then filler.
func benchVP8Payload(start bool, head []byte) []byte {
	b := make([]byte, benchPayloadSize)
	b[0], b[1] = 0x80, 0xc0 // X; I and L
	if start {
		b[0] |= 0x10
	}
	n := vp8DescLen + copy(b[vp8DescLen:], head)
	for i := n; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

// writePacket writes the stream's next packet to p.
func (s *simulcastSource) writePacket(p *Producer) error {
	for !s.layers[s.layer].active {
		s.nextLayer()
	}
	i := s.layer
	l := &s.layers[i]
	n := benchFramePackets[i]
	payload := l.cont
	if s.part == 0 {
		l.pid = (l.pid + 1) & 0x7fff
		l.tl0++
		l.pkt.Timestamp += 3000
		payload = l.delta
		if (s.frames-1)%benchKeyframeEvery == 0 {
			payload = l.key
		}
	}
	binary.BigEndian.PutUint16(payload[2:], 0x8000|l.pid)
	payload[4] = l.tl0
	l.pkt.Payload = payload
	l.pkt.SequenceNumber++
	l.pkt.Marker = s.part == n-1
	if s.part++; s.part == n {
		s.nextLayer()
	}
	return p.WriteLayerRTP(i, &l.pkt)
}

// nextLayer moves on to the first packet of the next layer's frame.
func (s *simulcastSource) nextLayer() {
	s.part = 0
	if s.layer = (s.layer + 1) % benchLayers; s.layer == 0 {
		s.frames++
	}
}

// writeFrames writes the rest of the current frame interval and n-1
// more.
func (s *simulcastSource) writeFrames(p *Producer, n int) error {
	for end := s.frames + n; s.frames < end; {
		if err := s.writePacket(p); err != nil {
			return err
		}
	}
	return nil
}

// sendOnly makes the layers the subscribers receive (benchLayer) the
// active ones.
func (s *simulcastSource) sendOnly(n int) {
	for i := range s.layers {
		s.layers[i].active = false
	}
	for i := range n {
		s.layers[benchLayer(i)].active = true
	}
}

// newLayeredForwardBench returns an engine with n subscribers of a
// three-layer remote VP8 producer and the source that feeds it: subscriber
// i receives layer benchLayer(i), the switched ones (benchSwitched) after
// a keyframe-gated switch from benchStartLayer(i), so with picture ID
// offsets.
func newLayeredForwardBench(tb testing.TB, n int) (*forwardBench, *simulcastSource) {
	tb.Helper()
	f := newBenchSubscribers(tb, n)
	info := benchProducerInfo()
	info.Layers = []string{"q", "h", "f"}
	for i, s := range f.subs {
		s.withoutEstimate(tb)
		s.showTile(tb, info.ID, benchStartLayer(i))
	}
	f.addProducer(tb, info)
	// Each consumer's target is set when it is added; while no layer
	// has sent, the allocator takes the one it asks for (once some
	// have, it would take the nearest one that sends).
	f.waitLayers(tb, "every subscriber targeting its first layer", nil, benchStartLayer, false)
	src := newSimulcastSource()
	write := func() error { return src.writeFrames(f.prod, 1) }
	f.warmUp(tb, write)
	f.waitLayers(tb, "every subscriber on its first layer", write, benchStartLayer, true)
	for i, s := range f.subs {
		if benchSwitched(i) {
			s.showTile(tb, info.ID, benchLayer(i))
		}
	}
	f.waitLayers(tb, "every subscriber on its layer", write, benchLayer, true)
	for i := range f.subs {
		if benchSwitched(i) && f.pictureIDOffset(tb, i) == 0 {
			tb.Fatalf("subscriber %d switched layers without a picture ID offset", i)
		}
	}
	src.sendOnly(n)
	return f, src
}

// waitLayers waits, calling write if not nil, until every subscriber i
// targets layer(i) and, with current, forwards it.
func (f *forwardBench) waitLayers(tb testing.TB, what string, write func() error, layer func(int) int, current bool) {
	tb.Helper()
	cond := func() bool {
		for i, s := range f.subs {
			c := s.consumer(f.prod.info.ID)
			if c == nil {
				return false
			}
			cur, target := c.Layer()
			if target != layer(i) || (current && cur != layer(i)) {
				return false
			}
		}
		return true
	}
	if write == nil {
		waitUntil(testContext(tb), tb, what, cond)
		return
	}
	f.writeUntil(tb, what, write, cond)
}

// pictureIDOffset returns the VP8 picture ID offset with which subscriber
// i is forwarded.
func (f *forwardBench) pictureIDOffset(tb testing.TB, i int) uint16 {
	tb.Helper()
	c := f.subs[i].consumer(f.prod.info.ID)
	if c == nil {
		tb.Fatalf("subscriber %d: no consumer", i)
	}
	f.prod.wmu.Lock()
	defer f.prod.wmu.Unlock()
	b := f.prod.track.binding(c.ssrc)
	if b == nil {
		tb.Fatalf("subscriber %d: consumer not bound", i)
	}
	return b.m.cur.pidOff
}

// rewrittenShare is the share of the packets of a frame interval that go
// to subscribers forwarded with a picture ID offset (so copied to
// rewrite it).
func (f *forwardBench) rewrittenShare(tb testing.TB) float64 {
	tb.Helper()
	all, rewritten := 0, 0
	for i := range f.subs {
		p := benchFramePackets[benchLayer(i)]
		all += p
		if f.pictureIDOffset(tb, i) != 0 {
			rewritten += p
		}
	}
	return float64(rewritten) / float64(all)
}

// withoutEstimate makes the subscriber's allocator see no bandwidth
// estimate, so that it chooses layers by tile size alone: a benchSub
// sends no TWCC feedback, and against the estimator's initial value the
// benchmark's layer rates (far above real time) would hold every
// subscriber on the lowest layer. Called before the first consumer.
func (s *benchSub) withoutEstimate(tb testing.TB) {
	tb.Helper()
	if _, err := s.p.subscriberPC(); err != nil {
		tb.Fatalf("subscriber peer connection: %v", err)
	}
	s.p.bwe.Store(nil)
}

// showTile reports producer id's tile at the size of layer.
func (s *benchSub) showTile(tb testing.TB, id string, layer int) {
	tb.Helper()
	if err := s.p.SetVideoSettings(id, benchTiles[layer]); err != nil {
		tb.Fatalf("SetVideoSettings: %v", err)
	}
}

// consumer returns the subscriber's consumer of producer id, or nil.
func (s *benchSub) consumer(id string) *Consumer {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.p.consumers[id]
}
