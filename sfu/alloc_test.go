//go:build !race

package sfu

import "testing"

// TestForwardDoesNotAllocate checks the zero-allocation goal of the
// forwarding path end to end: Producer.WriteRTP to 10 real subscriber peer
// connections (fan-out track, NACK cache, pion's interceptors and SRTP, the
// batching socket under the ICE mux). testing.AllocsPerRun counts the whole
// process and rounds down, so time-driven allocations elsewhere (ICE
// keepalives, RTCP timers) do not count unless they reach one per fan-out,
// while a single allocation per packet, or per subscriber, does.
//
// Not built with -race: the race detector makes sync.Pool drop items on
// purpose, which pion's SRTP buffers then allocate again. `make gotest`
// runs this file in a second, race-free pass.
func TestForwardDoesNotAllocate(t *testing.T) {
	f := newForwardBench(t, 10)
	pkt := benchPacket()
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
}
