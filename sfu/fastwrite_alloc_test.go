//go:build !race

package sfu

import "testing"

// TestFastWriteDoesNotAllocate is TestForwardDoesNotAllocate's one-layer
// case with Config.FastWrite: Producer.WriteRTP to 10 real subscribers
// whose media takes the fast write path (the engine's SRTP context and
// batchConn) allocates nothing.
func TestFastWriteDoesNotAllocate(t *testing.T) {
	f := newBenchSubscribersWith(t, 10, func(c *Config) { c.FastWrite = true })
	f.addProducer(t, benchProducerInfo())
	pkt := benchPacket()
	write := func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := f.prod.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
	}
	f.warmUp(t, func() error { write(); return nil })
	for range 3000 {
		write()
	}
	if allocs := testing.AllocsPerRun(2000, write); allocs != 0 {
		t.Errorf("Producer.WriteRTP to 10 fast-write subscribers: %v allocations per packet, want 0", allocs)
	}
	f.checkReceived(t)
	// The media took the fast path: pion's ICE connection carried far
	// less than the 5000 packets of 1200 bytes.
	pc, err := f.subs[0].p.subscriberPC()
	if err != nil {
		t.Fatalf("subscriberPC: %v", err)
	}
	if b := selectedPairBytesSent(t, pc); b > 1_000_000 {
		t.Errorf("the ICE connection sent %d bytes: media took pion's path", b)
	}
}
