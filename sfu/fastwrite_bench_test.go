package sfu

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// BenchmarkWritePathFloor measures what a forwarded packet costs on the
// wire side, per outgoing packet, for N real subscriber peer connections
// on the engine's socket (loopback), by path:
//
//   - pion: Producer.WriteRTP as in BenchmarkForward (munging, pion's
//     interceptor chain with the engine's TWCC stamp, SRTP session, mux
//     endpoint, ICE connection, batchConn);
//   - srtp: the floor of a path that skips pion: marshal the header and
//     payload into a reused buffer, encrypt it with a pion/srtp Context of
//     the subscriber's own (AES-128-GCM, random keys: the subscriber drops
//     the packets, which does not change the sender's cost), write it to
//     the subscriber's selected remote address through the engine's
//     batchConn, one burst per packet as the producer does;
//   - srtp+twcc: the same plus the transport-cc extension and the send
//     record in a bandwidth estimator, as the engine's TWCC interceptor
//     does;
//   - fast: Producer.WriteRTP with Config.FastWrite (fastwrite.go).
//
// cpu-ns/pkt-out is the writing thread's CPU time (including the kernel's
// loopback delivery) per outgoing packet.
func BenchmarkWritePathFloor(b *testing.B) {
	for _, n := range []int{10, 100} {
		for _, path := range []string{"pion", "srtp", "srtp+twcc", "fast"} {
			b.Run(fmt.Sprintf("consumers=%d/path=%s", n, path), func(b *testing.B) {
				benchWritePath(b, n, path)
			})
		}
	}
}

func benchWritePath(b *testing.B, n int, path string) {
	var f *forwardBench
	// One packet for the warm-up and the measurement: its sequence
	// numbers go on, so the measured packets are not taken for old ones.
	pkt := benchPacket()
	if path == "fast" {
		f = newBenchSubscribersWith(b, n, func(c *Config) { c.FastWrite = true })
		f.addProducer(b, benchProducerInfo())
		f.warmUp(b, func() error {
			pkt.SequenceNumber++
			return f.prod.WriteRTP(pkt)
		})
	} else {
		f = newForwardBench(b, n)
	}
	if path == "pion" || path == "fast" {
		f.measure(b, func() error {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			return f.prod.WriteRTP(pkt)
		})
		return
	}
	dsts := make([]floorDest, len(f.subs))
	for i, s := range f.subs {
		dsts[i] = newFloorDest(b, s)
	}
	twcc := path == "srtp+twcc"
	batch := f.e.tr.batch
	buf := make([]byte, 1500)
	var h rtp.Header
	var tw [2]byte
	ext := make([]rtp.Extension, 0, 4)
	clock := time.Now()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	allocs0 := heapAllocObjects()
	cpu0 := threadCPU(b)
	start := time.Now()
	out := 0
	for b.Loop() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		batch.begin()
		for i := range dsts {
			d := &dsts[i]
			h = rtp.Header{Version: 2, Marker: pkt.Marker, PayloadType: 96,
				SequenceNumber: pkt.SequenceNumber, Timestamp: pkt.Timestamp, SSRC: d.ssrc}
			if twcc {
				h.Extensions = ext[:0]
				if err := h.SetExtension(3, tw[:]); err != nil {
					b.Fatal(err)
				}
				ext = h.Extensions
				d.twSeq++
				tw[0], tw[1] = byte(d.twSeq>>8), byte(d.twSeq)
				d.est.OnSent(d.twSeq, int64(time.Since(clock))+1, h.MarshalSize()+len(pkt.Payload))
			}
			n, err := rtp.MarshalPacketTo(buf, &h, pkt.Payload)
			if err != nil {
				b.Fatal(err)
			}
			enc, err := d.ctx.EncryptRTP(buf, buf[:n], &h)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = batch.WriteToAddrPort(enc, d.addr)
			out++
		}
		batch.end()
	}
	wall := time.Since(start)
	cpu := threadCPU(b) - cpu0
	allocs := heapAllocObjects() - allocs0
	b.ReportMetric(float64(wall.Nanoseconds())/float64(out), "ns/pkt-out")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(out), "cpu-ns/pkt-out")
	b.ReportMetric(float64(allocs)/float64(out), "allocs/pkt-out")
}

// floorDest is one subscriber as the srtp paths of BenchmarkWritePathFloor
// see it.
type floorDest struct {
	ssrc  uint32
	addr  netip.AddrPort
	ctx   *srtp.Context
	est   *bweEstimator
	twSeq uint16
}

func newFloorDest(tb testing.TB, s *benchSub) floorDest {
	tb.Helper()
	pc, err := s.p.subscriberPC()
	if err != nil {
		tb.Fatalf("subscriberPC: %v", err)
	}
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		tb.Fatalf("selected candidate pair: %v", err)
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		tb.Fatalf("remote address: %v", err)
	}
	key, salt := make([]byte, 16), make([]byte, 12)
	_, _ = rand.Read(key)
	_, _ = rand.Read(salt)
	ctx, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		tb.Fatalf("srtp context: %v", err)
	}
	var ssrc [4]byte
	_, _ = rand.Read(ssrc[:])
	return floorDest{
		ssrc: uint32(ssrc[0])<<24 | uint32(ssrc[1])<<16 | uint32(ssrc[2])<<8 | uint32(ssrc[3]),
		addr: netip.AddrPortFrom(ip, pair.Remote.Port),
		ctx:  ctx,
		est:  newBWEEstimator(bweConfig{}),
	}
}

// newBenchSubscribersWith is newBenchSubscribers with a Config mutation.
func newBenchSubscribersWith(tb testing.TB, n int, mutate func(*Config)) *forwardBench {
	tb.Helper()
	e := newTestEngine(tb, func(c *Config) {
		c.MaxParticipantsPerRoom = n + 1
		mutate(c)
	})
	f := &forwardBench{e: e}
	for i := range n {
		f.subs = append(f.subs, joinBenchSub(tb, e, "bench", fmt.Sprintf("sub-%d", i)))
	}
	return f
}
