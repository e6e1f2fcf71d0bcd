package sfu

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/peer"
)

// TestFastWrite forwards media to a real pion subscriber (default
// interceptors: it decrypts, sends receiver reports and TWCC feedback)
// with and without Config.FastWrite, and checks in both that every packet
// arrives, that the sender reports count exactly what arrived (packets and
// payload octets) with an RTP time at or after the last packet's, that
// TWCC feedback reaches the subscriber's bandwidth estimator, and which
// path the media took: the selected candidate pair's byte count (pion's
// ICE connection) holds the media without the fast path and only RTCP with
// it.
func TestFastWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		fast bool
	}{
		{"pion", false},
		{"fast", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEngine(t, func(c *Config) { c.FastWrite = tc.fast })
			s := joinReportSub(t, e, "fast", "sub")
			prod, err := e.Room("fast").AddProducer(benchProducerInfo(), nil)
			if err != nil {
				t.Fatalf("AddProducer: %v", err)
			}
			t.Cleanup(prod.Close)
			ctx := testContext(t)
			pkt := benchPacket()
			write := func() {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				if err := prod.WriteRTP(pkt); err != nil {
					t.Fatalf("WriteRTP: %v", err)
				}
			}
			waitUntil(ctx, t, "first media", func() bool {
				write()
				return s.packets.Load() > 0
			})
			for range 300 {
				write()
				time.Sleep(200 * time.Microsecond) // within the receiver's socket buffer
			}
			sent := prod.traffic.packetsOut.Load()
			waitUntil(ctx, t, "every packet at the subscriber", func() bool {
				return uint64(s.packets.Load()) == sent
			})
			bytes := uint64(s.bytes.Load())
			waitUntil(ctx, t, "a sender report with every packet", func() bool {
				sr := s.lastSR()
				return sr != nil && uint64(sr.PacketCount) == sent
			})
			sr := s.lastSR()
			if uint64(sr.OctetCount) != bytes {
				t.Errorf("sender report: %d octets, want %d", sr.OctetCount, bytes)
			}
			// The report's RTP time is the last packet's, advanced by the
			// time since (at 90 kHz): not before it.
			if d := int32(sr.RTPTime - uint32(s.lastTS.Load())); d < 0 {
				t.Errorf("sender report RTP time %d is %d ticks before the last packet's", sr.RTPTime, -d)
			}
			if sr.NTPTime == 0 {
				t.Error("sender report without NTP time")
			}
			waitUntil(ctx, t, "TWCC feedback at the estimator", func() bool {
				est := s.p.bwe.Load()
				return est != nil && est.HasFeedback()
			})
			pc, err := s.p.subscriberPC()
			if err != nil {
				t.Fatalf("subscriberPC: %v", err)
			}
			pair := selectedPairBytesSent(t, pc)
			t.Logf("media %d bytes in %d packets; ICE connection %d bytes; SR %d packets %d octets", bytes, sent, pair, sr.PacketCount, sr.OctetCount)
			if tc.fast && pair >= bytes/2 {
				t.Errorf("fast write: the ICE connection sent %d bytes for %d bytes of media: media took pion's path", pair, bytes)
			}
			if !tc.fast && pair < bytes {
				t.Errorf("pion's path: the ICE connection sent %d bytes for %d bytes of media", pair, bytes)
			}
		})
	}
}

// selectedPairBytesSent returns the bytes pion's ICE connection of pc
// sent on its nominated candidate pair.
func selectedPairBytesSent(t *testing.T, pc *webrtc.PeerConnection) uint64 {
	t.Helper()
	for _, st := range pc.GetStats() {
		if ps, ok := st.(webrtc.ICECandidatePairStats); ok && ps.Nominated {
			return ps.BytesSent
		}
	}
	t.Fatal("no nominated candidate pair")
	return 0
}

// reportSub is a subscriber with pion's default interceptors that counts
// the media it receives and keeps the last sender report.
type reportSub struct {
	t       *testing.T
	p       *Participant
	sub     *peer.Answerer
	offers  chan webrtc.SessionDescription
	stop    chan struct{}
	wg      sync.WaitGroup
	packets atomic.Int64 // RTP packets with a payload
	bytes   atomic.Int64 // their payload octets
	lastTS  atomic.Uint32

	mu     sync.Mutex
	closed bool
	sr     *rtcp.SenderReport
}

func joinReportSub(t *testing.T, e *Engine, room, name string) *reportSub {
	t.Helper()
	s := &reportSub{t: t, offers: make(chan webrtc.SessionDescription, 16), stop: make(chan struct{})}
	s.sub = peer.NewAnswerer(clientAPI(t, nil), s.onTrack)
	p, err := e.Join(room, JoinParams{Name: name, Events: EventHandlerFunc(func(ev Event) {
		if ev.Type == EventSubscriberOffer {
			s.offers <- *ev.SDP
		}
	})})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	s.p = p
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sub.Serve(s.offers, s.stop, p.SetSubscriberAnswer, func(err error) {
			if !errors.Is(err, ErrParticipantClosed) {
				t.Errorf("answer: %v", err)
			}
		})
	}()
	t.Cleanup(s.close)
	return s
}

func (s *reportSub) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.p.Close()
	_ = s.sub.Close()
	s.wg.Wait()
}

func (s *reportSub) lastSR() *rtcp.SenderReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sr
}

// onTrack reads the track's media and its receiver's RTCP until the peer
// connection closes.
func (s *reportSub) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			pkts, _, err := recv.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					s.mu.Lock()
					s.sr = sr
					s.mu.Unlock()
				}
			}
		}
	}()
	defer s.wg.Done()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(pkt.Payload) > 0 {
			s.bytes.Add(int64(len(pkt.Payload)))
			s.lastTS.Store(pkt.Timestamp)
			s.packets.Add(1)
		}
	}
}
