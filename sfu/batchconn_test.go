package sfu

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// batchPair is a batchConn on loopback and a plain socket that receives
// what it sends.
type batchPair struct {
	c    *batchConn
	rx   *net.UDPConn
	dst  netip.AddrPort
	ctx  context.Context
	recv chan []byte
}

func newBatchPair(t *testing.T, maxBatch int) *batchPair {
	t.Helper()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = rx.SetReadBuffer(8 << 20)
	p := &batchPair{
		c: newBatchConn(tx, maxBatch), rx: rx, dst: rx.LocalAddr().(*net.UDPAddr).AddrPort(),
		ctx: testContext(t), recv: make(chan []byte, 100000),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, _, err := rx.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			p.recv <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() {
		_ = p.c.Close()
		_ = rx.Close()
		wg.Wait()
	})
	return p
}

// datagram is a 1200-byte datagram carrying writer and sequence numbers.
func datagram(writer, seq int) []byte {
	b := make([]byte, 1200)
	binary.BigEndian.PutUint32(b[0:4], uint32(writer))
	binary.BigEndian.PutUint32(b[4:8], uint32(seq))
	return b
}

func (p *batchPair) write(t *testing.T, b []byte) {
	t.Helper()
	if n, err := p.c.WriteToAddrPort(b, p.dst); err != nil || n != len(b) {
		t.Fatalf("WriteToAddrPort = %d, %v", n, err)
	}
}

// expect receives n datagrams and returns their sequence numbers.
func (p *batchPair) expect(t *testing.T, n int) []int {
	t.Helper()
	var seqs []int
	for range n {
		select {
		case b := <-p.recv:
			seqs = append(seqs, int(binary.BigEndian.Uint32(b[4:8])))
		case <-p.ctx.Done():
			t.Fatalf("received %d of %d datagrams", len(seqs), n)
		}
	}
	return seqs
}

func (p *batchPair) queued() int {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.q.n
}

func checkOrder(t *testing.T, seqs []int, from int) {
	t.Helper()
	for i, s := range seqs {
		if s != from+i {
			t.Fatalf("datagram %d has sequence %d, want %d (got %v)", i, s, from+i, seqs)
		}
	}
}

// TestBatchConnBursts: outside a burst writes go straight out; inside one
// they are queued and leave when the queue is full and when the burst ends,
// in order; oversized datagrams and other address families bypass the
// queue.
func TestBatchConnBursts(t *testing.T) {
	tests := []struct {
		name       string
		maxBatch   int
		burst      bool
		writes     int
		wantQueued int // queued after the writes, before end
	}{
		{"outside a burst", 4, false, 3, 0},
		{"burst below the cap", 4, true, 3, 3},
		{"burst at the cap", 4, true, 4, 0},
		{"burst above the cap", 4, true, 10, 2},
		{"batching disabled", 1, true, 5, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBatchPair(t, tt.maxBatch)
			if tt.burst {
				p.c.begin()
			}
			for i := range tt.writes {
				p.write(t, datagram(0, i))
			}
			if tt.wantQueued >= 0 {
				if got := p.queued(); got != tt.wantQueued {
					t.Errorf("queued = %d, want %d", got, tt.wantQueued)
				}
				// Everything not queued has been sent already.
				checkOrder(t, p.expect(t, tt.writes-tt.wantQueued), 0)
			}
			if tt.burst {
				p.c.end()
			}
			if tt.wantQueued >= 0 {
				if got := p.queued(); got != 0 {
					t.Errorf("queued after end = %d, want 0", got)
				}
				checkOrder(t, p.expect(t, tt.wantQueued), tt.writes-tt.wantQueued)
			} else {
				checkOrder(t, p.expect(t, tt.writes), 0)
			}
		})
	}

	t.Run("bypass", func(t *testing.T) {
		p := newBatchPair(t, 4)
		p.c.begin()
		big := make([]byte, batchSlotSize+1)
		p.write(t, big) // too large for a slot: sent directly
		v6 := netip.AddrPortFrom(netip.IPv6Loopback(), p.dst.Port())
		if _, err := p.c.WriteToAddrPort(datagram(0, 0), v6); err == nil {
			t.Error("IPv6 destination on an IPv4 socket: no error")
		}
		if got := p.queued(); got != 0 {
			t.Errorf("queued = %d, want 0", got)
		}
		p.c.end()
		if b := <-p.recv; len(b) != len(big) {
			t.Errorf("received %d bytes, want %d", len(b), len(big))
		}
	})
}

// TestBatchConnConcurrent: producers fanning out in bursts and goroutines
// writing outside bursts (like ICE, DTLS and RTCP) at the same time: every
// datagram arrives, each writer's in order, and nothing stays queued.
func TestBatchConnConcurrent(t *testing.T) {
	const (
		bursters   = 4
		plain      = 2
		perWriter  = 400
		burstWrite = 7
	)
	p := newBatchPair(t, 8)
	var wg sync.WaitGroup
	for w := range bursters + plain {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; seq < perWriter; {
				if w < bursters {
					p.c.begin()
					for i := 0; i < burstWrite && seq < perWriter; i++ {
						_, _ = p.c.WriteToAddrPort(datagram(w, seq), p.dst)
						seq++
					}
					p.c.end()
					continue
				}
				_, _ = p.c.WriteToAddrPort(datagram(w, seq), p.dst)
				seq++
			}
		}()
	}
	wg.Wait()
	if got := p.queued(); got != 0 {
		t.Fatalf("%d datagrams left queued after every burst ended", got)
	}
	next := make([]int, bursters+plain)
	for range (bursters + plain) * perWriter {
		select {
		case b := <-p.recv:
			w, seq := int(binary.BigEndian.Uint32(b[0:4])), int(binary.BigEndian.Uint32(b[4:8]))
			if seq != next[w] {
				t.Fatalf("writer %d: got sequence %d, want %d", w, seq, next[w])
			}
			next[w]++
		case <-p.ctx.Done():
			t.Fatalf("timed out; received per writer: %v", next)
		}
	}
}

// TestBatchConnWriteDuringOtherBurst: a write from a goroutine that is not
// in the burst is queued while the burst is open and leaves with it.
func TestBatchConnWriteDuringOtherBurst(t *testing.T) {
	p := newBatchPair(t, 64)
	p.c.begin()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.c.WriteToAddrPort(datagram(1, 0), p.dst)
	}()
	<-done // the write returned without waiting for the burst
	if got := p.queued(); got != 1 {
		t.Errorf("queued = %d, want 1", got)
	}
	p.c.end()
	p.expect(t, 1)
}

// TestBatchConnClose: Close sends what is queued; later writes fail.
func TestBatchConnClose(t *testing.T) {
	p := newBatchPair(t, 64)
	p.c.begin()
	p.write(t, datagram(0, 0))
	p.write(t, datagram(0, 1))
	if err := p.c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkOrder(t, p.expect(t, 2), 0)
	if _, err := p.c.WriteToAddrPort(datagram(0, 2), p.dst); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
	p.c.end() // a burst ending after Close is harmless
	if got := p.queued(); got != 0 {
		t.Errorf("queued after Close = %d", got)
	}
}

// TestBatchConnPacketConn: the net.PacketConn methods pass through.
func TestBatchConnPacketConn(t *testing.T) {
	p := newBatchPair(t, 64)
	if _, err := p.c.WriteTo(datagram(0, 0), net.UDPAddrFromAddrPort(p.dst)); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	p.expect(t, 1)
	if p.c.LocalAddr().String() != p.c.conn.LocalAddr().String() {
		t.Errorf("LocalAddr = %v", p.c.LocalAddr())
	}
	// Read on the batchConn's socket: send to it from the receiver.
	if _, err := p.rx.WriteToUDPAddrPort([]byte("ping"), p.c.conn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	if err := p.c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, from, err := p.c.ReadFromAddrPort(buf)
	if err != nil || string(buf[:n]) != "ping" || from != p.dst {
		t.Errorf("ReadFromAddrPort = %q from %v, %v", buf[:n], from, err)
	}
	if err := p.c.SetDeadline(time.Time{}); err != nil {
		t.Error(err)
	}
	if err := p.c.SetWriteDeadline(time.Time{}); err != nil {
		t.Error(err)
	}
}

// TestBatchConnQueueDoesNotAllocate: queueing a datagram during a burst is
// allocation-free. (Sending goes through x/net's sendmmsg, which pools its
// scratch space; BenchmarkForward reports the whole path's allocations.)
func TestBatchConnQueueDoesNotAllocate(t *testing.T) {
	p := newBatchPair(t, 16)
	b := datagram(0, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		p.c.begin()
		for range 10 {
			_, _ = p.c.WriteToAddrPort(b, p.dst)
		}
		// Drop the queue instead of sending it.
		p.c.mu.Lock()
		p.c.q.n = 0
		p.c.mu.Unlock()
		p.c.bursts.Add(-1)
	})
	if allocs != 0 {
		t.Errorf("allocations per burst of 10 = %v, want 0", allocs)
	}
}
