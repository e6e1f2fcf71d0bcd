package sfu

import (
	"fmt"
	"hash/crc32"
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sentPacket is what a subscriber was sent, as far as the tests compare it.
type sentPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	ssrc    uint32
	pt      uint8
	payload uint32 // CRC of the payload (with rewritten picture IDs)
}

// listWriter records every packet written to one sender. A binding is
// written by one goroutine at a time, so it needs no lock; the test reads
// it after the writes returned.
type listWriter struct{ got []sentPacket }

func (w *listWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.got = append(w.got, sentPacket{seq: h.SequenceNumber, ts: h.Timestamp, marker: h.Marker,
		ssrc: h.SSRC, pt: h.PayloadType, payload: crc32.ChecksumIEEE(payload)})
	return len(payload), nil
}

func (w *listWriter) Write(b []byte) (int, error) { return len(b), nil }

// newShardProducer returns a VP8 producer with layers layers whose
// fan-outs use pool (nil: never split), as Producer.WriteLayerRTP sees it.
func newShardProducer(pool *fanoutPool, layers int) *Producer {
	p := &Producer{
		info:   ProducerInfo{Kind: KindVideo},
		track:  newFanoutTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "p", "s"),
		layers: testLayers(KindVideo, layers),
		codec:  codecVP8,
		clock:  90000,
		fanout: pool,
	}
	p.track.layered = layers > 1
	pool.initShards(&p.shards)
	return p
}

// bindList binds a listWriter sender with SSRC ssrc to p's track.
func bindList(t *testing.T, p *Producer, ssrc uint32) *listWriter {
	t.Helper()
	w := &listWriter{}
	ctx := &fakeBindContext{id: fmt.Sprint("s", ssrc), ssrc: webrtc.SSRC(ssrc),
		codecs: []webrtc.RTPCodecParameters{vp8Params(webrtc.PayloadType(96 + ssrc%8))}}
	if _, err := p.track.Bind(&listBindContext{fakeBindContext: ctx, w: w}); err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return w
}

// listBindContext is a fakeBindContext writing to a listWriter.
type listBindContext struct {
	*fakeBindContext
	w *listWriter
}

func (c *listBindContext) WriteStream() webrtc.TrackLocalWriter { return c.w }

// closePool closes pool when the test ends.
func closePool(t *testing.T, pool *fanoutPool) {
	t.Cleanup(pool.close)
}

func TestShardCount(t *testing.T) {
	tests := []struct {
		workers, shardMin, n, want int
	}{
		{1, 64, 1000, 1}, // no workers: never split
		{2, 64, 100, 1},  // below 2 x 64
		{2, 64, 127, 1},
		{2, 64, 128, 2},
		{2, 64, 400, 2}, // at most one shard per worker, the writer included
		{4, 64, 200, 3},
		{4, 1, 3, 3},
		{4, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("workers=%d/min=%d/n=%d", tt.workers, tt.shardMin, tt.n), func(t *testing.T) {
			pool := newFanoutPool(tt.workers, tt.shardMin)
			closePool(t, pool)
			if got := pool.shardCount(tt.n); got != tt.want {
				t.Errorf("shardCount(%d) = %d, want %d", tt.n, got, tt.want)
			}
		})
	}
}

// TestShardedFanout: a sharded fan-out sends every subscriber exactly what
// the fan-out on one goroutine sends (sequence numbers, markers, SSRC,
// payload type and payloads with their rewritten VP8 picture IDs), across
// the threshold, on a three-layer simulcast stream in which subscribers
// start on one layer and switch to another at its keyframe halfway.
func TestShardedFanout(t *testing.T) {
	tests := []struct {
		name              string
		workers, shardMin int
		subscribers       int
		split             bool // the fan-out is expected to reach a worker
	}{
		{"one worker", 1, 1, 12, false},
		{"below threshold", 4, 8, 15, false},
		{"at threshold", 4, 8, 16, true},
		{"uneven shards", 4, 2, 11, true},
		{"more workers than pairs", 8, 1, 3, true},
		{"default threshold", 2, DefaultFanoutShardMin, 130, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := newShardProducer(nil, benchLayers)
			pool := newFanoutPool(tt.workers, tt.shardMin)
			closePool(t, pool)
			sharded := newShardProducer(pool, benchLayers)
			run := func(p *Producer) []*listWriter {
				ws := make([]*listWriter, tt.subscribers)
				for i := range ws {
					ws[i] = bindList(t, p, uint32(i+1))
					p.track.binding(uint32(i + 1)).want.target.Store(int32(benchStartLayer(i)))
				}
				src := newSimulcastSource()
				if err := src.writeFrames(p, 2*benchKeyframeEvery); err != nil {
					t.Fatalf("WriteLayerRTP: %v", err)
				}
				for i := range ws {
					p.track.binding(uint32(i + 1)).want.target.Store(int32(benchLayer(i)))
				}
				if err := src.writeFrames(p, 2*benchKeyframeEvery); err != nil {
					t.Fatalf("WriteLayerRTP: %v", err)
				}
				return ws
			}
			want, got := run(ref), run(sharded)
			for i := range want {
				w, g := want[i].got, got[i].got
				if len(w) == 0 {
					t.Fatalf("subscriber %d got nothing on one goroutine", i)
				}
				if len(g) != len(w) {
					t.Fatalf("subscriber %d got %d packets, want %d", i, len(g), len(w))
				}
				for k := range w {
					// Timestamps after a switch depend on the wall clock
					// (munger.switchTo); the rest must be identical.
					g[k].ts, w[k].ts = 0, 0
					if g[k] != w[k] {
						t.Fatalf("subscriber %d packet %d: %+v, want %+v", i, k, g[k], w[k])
					}
					if k > 0 && g[k].seq != g[k-1].seq+1 {
						t.Fatalf("subscriber %d packet %d: sequence %d after %d", i, k, g[k].seq, g[k-1].seq)
					}
				}
			}
			if out, want := sharded.traffic.packetsOut.Load(), ref.traffic.packetsOut.Load(); out != want {
				t.Errorf("packets out counted %d, want %d", out, want)
			}
			// Who wrote an offered shard (a worker or the writer) depends
			// on timing; that shards were offered does not.
			if split := sharded.shards.offered > 0; split != tt.split {
				t.Errorf("%d shards offered to workers; split %v, want %v", sharded.shards.offered, split, tt.split)
			}
		})
	}
}

// TestShardedFanoutChurn: senders bound and unbound while a sharded
// producer writes do not disturb the others, each of which gets every
// packet in order; a sender bound meanwhile gets an unbroken run.
func TestShardedFanoutChurn(t *testing.T) {
	pool := newFanoutPool(3, 2)
	closePool(t, pool)
	p := newShardProducer(pool, 1)
	const stable, packets = 9, 3000
	ws := make([]*listWriter, stable)
	for i := range ws {
		ws[i] = bindList(t, p, uint32(i+1))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churned []*listWriter
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Each sender is unbound when the next is bound, but one in 50
		// stays; at most 1000 are bound, fewer if the writer ends first.
		var prev *listBindContext
		for i := uint32(100); i < 1100; i++ {
			select {
			case <-stop:
				return
			default:
			}
			w := &listWriter{}
			ctx := &listBindContext{fakeBindContext: &fakeBindContext{id: fmt.Sprint("c", i), ssrc: webrtc.SSRC(i),
				codecs: []webrtc.RTPCodecParameters{vp8Params(96)}}, w: w}
			if _, err := p.track.Bind(ctx); err != nil {
				t.Errorf("Bind: %v", err)
				return
			}
			if prev != nil {
				if err := p.track.Unbind(prev); err != nil {
					t.Errorf("Unbind: %v", err)
					return
				}
			}
			prev = ctx
			if i%50 == 0 {
				prev = nil
			}
			churned = append(churned, w)
		}
	}()
	pkt := benchPacket()
	for range packets {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := p.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	for i, w := range ws {
		if len(w.got) != packets {
			t.Fatalf("stable subscriber %d got %d packets, want %d", i, len(w.got), packets)
		}
		checkRun(t, fmt.Sprint("stable subscriber ", i), w.got)
	}
	for i, w := range churned {
		checkRun(t, fmt.Sprint("churned subscriber ", i), w.got)
	}
}

// checkRun fails unless got is an unbroken run: consecutive sequence
// numbers, timestamps 3000 apart.
func checkRun(t *testing.T, who string, got []sentPacket) {
	t.Helper()
	for k := 1; k < len(got); k++ {
		if got[k].seq != got[k-1].seq+1 || got[k].ts != got[k-1].ts+3000 {
			t.Fatalf("%s packet %d: seq %d ts %d after seq %d ts %d", who, k, got[k].seq, got[k].ts, got[k-1].seq, got[k-1].ts)
		}
	}
}

// TestShardedResend: NACKs answered while a sharded producer writes see
// each binding's state between two packets (the writer holds wmu across
// the shards), and are answered from the packets the subscriber was sent.
func TestShardedResend(t *testing.T) {
	pool := newFanoutPool(2, 2)
	closePool(t, pool)
	p := newShardProducer(pool, 1)
	const subs, packets = 6, 2000
	ws := make([]*listWriter, subs)
	for i := range ws {
		ws[i] = bindList(t, p, uint32(i+1))
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	resent := make([]int, subs)
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := p.track.binding(uint32(i + 1))
			var h rtp.Header
			var buf [maxCachedPayload + 2]byte
			for {
				select {
				case <-done:
					return
				default:
				}
				p.wmu.Lock()
				started, seq := b.m.started, b.m.lastSeq
				p.wmu.Unlock()
				if started && p.resend(b, seq, &h, buf[:]) {
					if h.SSRC != b.ssrc || h.SequenceNumber != seq {
						t.Errorf("resend of %d to %d: seq %d ssrc %d", seq, b.ssrc, h.SequenceNumber, h.SSRC)
						return
					}
					resent[i]++
				}
			}
		}()
	}
	pkt := benchPacket()
	for range packets {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := p.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
	}
	close(done)
	wg.Wait()
	for i, w := range ws {
		// Answers are resends of packets already sent: the forwarded run
		// is unbroken once they are taken out.
		var fwd []sentPacket
		seen := map[uint16]bool{}
		for _, g := range w.got {
			if !seen[g.seq] {
				fwd = append(fwd, g)
				seen[g.seq] = true
			}
		}
		if len(fwd) != packets {
			t.Fatalf("subscriber %d: %d packets forwarded, want %d", i, len(fwd), packets)
		}
		checkRun(t, fmt.Sprint("subscriber ", i), fwd)
		if len(w.got) != packets+resent[i] {
			t.Errorf("subscriber %d: %d packets written, want %d forwarded + %d resent", i, len(w.got), packets, resent[i])
		}
	}
}

// TestFanoutPoolClose: a closed pool's workers have returned (goleak checks
// the package's goroutines at the end), and producers still forward, on
// their writer alone.
func TestFanoutPoolClose(t *testing.T) {
	pool := newFanoutPool(3, 1)
	p := newShardProducer(pool, 1)
	ws := []*listWriter{bindList(t, p, 1), bindList(t, p, 2), bindList(t, p, 3)}
	pkt := benchPacket()
	write := func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := p.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
	}
	write()
	pool.close()
	pool.close() // idempotent
	write()
	for i, w := range ws {
		if len(w.got) != 2 {
			t.Fatalf("subscriber %d got %d packets, want 2", i, len(w.got))
		}
		checkRun(t, fmt.Sprint("subscriber ", i), w.got)
	}
}
