//go:build !race

package sfu

import "testing"

// TestForwardDoesNotAllocate checks the zero-allocation goal of the
// forwarding path end to end, to 10 real subscriber peer connections
// (fan-out track, NACK cache, pion's interceptors and SRTP, the batching
// socket under the ICE mux): "one-layer" is Producer.WriteRTP of a
// single-layer producer; "three-layers" is Producer.WriteLayerRTP of a
// three-layer simulcast stream (newLayeredForwardBench: the subscribers
// split over the layers, half of them switched before the measurement, so
// that their packets take the munger's offsets and the picture ID rewrite
// copy, and keyframes arrive on the way). testing.AllocsPerRun counts the
// whole process and rounds down, so time-driven allocations elsewhere
// (ICE keepalives, RTCP timers, the participants' layer allocators) do
// not count unless they reach one per run, while a single allocation per
// packet, or per subscriber, does. "sharded" is "one-layer" with the
// fan-out split over the engine's fan-out workers (shard.go).
//
// Not built with -race: the race detector makes sync.Pool drop items on
// purpose, which pion's SRTP buffers then allocate again. `make gotest`
// runs this file in a second, race-free pass.
func TestForwardDoesNotAllocate(t *testing.T) {
	t.Run("one-layer", func(t *testing.T) {
		f := newForwardBench(t, 10)
		pkt := benchPacket()
		// The in-process receivers' buffers grow to what they need (once,
		// more so on a busy box where they fall behind) before the count.
		for range 3000 {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if err := f.prod.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
		allocs := testing.AllocsPerRun(2000, func() {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if err := f.prod.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		})
		if allocs != 0 {
			t.Errorf("Producer.WriteRTP to 10 subscribers: %v allocations per packet, want 0", allocs)
		}
		f.checkReceived(t)
	})
	t.Run("sharded", func(t *testing.T) {
		// Three workers, shards of at least 3: the 10 subscribers are
		// written in three shards, two of them by fan-out workers.
		f := newForwardBench(t, 10, func(c *Config) { c.FanoutWorkers, c.FanoutShardMin = 3, 3 })
		if k := f.e.fanout.shardCount(10); k != 3 {
			t.Fatalf("shardCount(10) = %d, want 3", k)
		}
		pkt := benchPacket()
		for range 3000 {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if err := f.prod.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		}
		out0 := f.prod.traffic.packetsOut.Load()
		allocs := testing.AllocsPerRun(2000, func() {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if err := f.prod.WriteRTP(pkt); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
		})
		if allocs != 0 {
			t.Errorf("sharded Producer.WriteRTP to 10 subscribers: %v allocations per packet, want 0", allocs)
		}
		if out, want := f.prod.traffic.packetsOut.Load()-out0, uint64(2001*10); out != want {
			t.Errorf("%d packets forwarded, want %d", out, want)
		}
		f.prod.wmu.Lock()
		offered := f.prod.shards.offered
		f.prod.wmu.Unlock()
		if offered == 0 {
			t.Error("no shard was offered to a fan-out worker")
		}
		f.checkReceived(t)
	})
	t.Run("three-layers", func(t *testing.T) {
		f, src := newLayeredForwardBench(t, 10)
		// As above; the layers' bursts need more.
		if err := src.writeFrames(f.prod, 300); err != nil {
			t.Fatalf("WriteLayerRTP: %v", err)
		}
		out0 := f.prod.traffic.packetsOut.Load()
		start := src.frames
		allocs := testing.AllocsPerRun(6000, func() {
			if err := src.writePacket(f.prod); err != nil {
				t.Fatalf("WriteLayerRTP: %v", err)
			}
		})
		if allocs != 0 {
			t.Errorf("Producer.WriteLayerRTP to 10 subscribers on 3 layers: %v allocations per packet, want 0", allocs)
		}
		// Every subscriber stayed on its layer and got each of its packets
		// (counted over whole frame intervals).
		for src.part != 0 || src.layer != 0 {
			if err := src.writePacket(f.prod); err != nil {
				t.Fatalf("WriteLayerRTP: %v", err)
			}
		}
		frames := src.frames - start
		if out, want := f.prod.traffic.packetsOut.Load()-out0, uint64(frames*benchPacketsOut(10)); out != want {
			t.Errorf("%d packets forwarded in %d frame intervals, want %d", out, frames, want)
		}
		f.checkReceived(t)
	})
}
