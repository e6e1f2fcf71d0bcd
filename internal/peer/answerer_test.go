package peer

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// testTimeout bounds every wait of a test.
const testTimeout = 30 * time.Second

// testAPI returns a pion API with the default codecs that gathers loopback
// UDP4 host candidates only; nw (nil for the real network) is its network.
func testAPI(t *testing.T, nw transport.Net) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatalf("RegisterDefaultCodecs: %v", err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if nw != nil {
		se.SetNet(nw)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

// gatedNet is the real network, except that opening a UDP socket (which
// only ICE gathering does) waits until gate closes; started closes when
// the first one is attempted. It holds an Answer in its gathering wait.
type gatedNet struct {
	transport.Net
	gate     chan struct{}
	started  chan struct{}
	once     sync.Once // closes started
	openOnce sync.Once // closes gate
}

func newGatedNet(t *testing.T) *gatedNet {
	t.Helper()
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatalf("stdnet.NewNet: %v", err)
	}
	return &gatedNet{Net: n, gate: make(chan struct{}), started: make(chan struct{})}
}

// open lets gathering go on; it may be called more than once.
func (g *gatedNet) open() { g.openOnce.Do(func() { close(g.gate) }) }

// ListenUDP implements transport.Net.
func (g *gatedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	g.once.Do(func() { close(g.started) })
	<-g.gate
	return g.Net.ListenUDP(network, laddr)
}

// offerer is the offering side: a plain pion peer connection sending VP8
// tracks, as the confab node's subscriber peer connection does.
type offerer struct {
	t      *testing.T
	pc     *webrtc.PeerConnection
	tracks []*webrtc.TrackLocalStaticRTP
}

func newOfferer(t *testing.T) *offerer {
	t.Helper()
	pc, err := testAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("offerer NewPeerConnection: %v", err)
	}
	t.Cleanup(func() {
		if err := pc.Close(); err != nil {
			t.Errorf("offerer Close: %v", err)
		}
	})
	return &offerer{t: t, pc: pc}
}

// addTrack adds a VP8 track with id to the offerer.
func (o *offerer) addTrack(id string) {
	o.t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, id, "stream")
	if err != nil {
		o.t.Fatalf("NewTrackLocalStaticRTP: %v", err)
	}
	if _, err := o.pc.AddTrack(tr); err != nil {
		o.t.Fatalf("AddTrack: %v", err)
	}
	o.tracks = append(o.tracks, tr)
}

// offer returns an offer with every candidate in it.
func (o *offerer) offer() webrtc.SessionDescription {
	o.t.Helper()
	offer, err := o.pc.CreateOffer(nil)
	if err != nil {
		o.t.Fatalf("CreateOffer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(o.pc)
	if err := o.pc.SetLocalDescription(offer); err != nil {
		o.t.Fatalf("offerer SetLocalDescription: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(testTimeout):
		o.t.Fatal("offerer gathering timed out")
	}
	return *o.pc.LocalDescription()
}

// writeAll writes one VP8 packet on every track.
func (o *offerer) writeAll(seq uint16) {
	for _, tr := range o.tracks {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true},
			Payload: []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3}}
		if err := tr.WriteRTP(pkt); err != nil && !errors.Is(err, net.ErrClosed) {
			o.t.Errorf("WriteRTP: %v", err)
		}
	}
}

// receiver is an OnTrack handler that reads every track until its peer
// connection closes and reports each track id once its first packet came.
type receiver struct {
	wg  sync.WaitGroup
	got chan string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan string, 16)}
	t.Cleanup(r.wg.Wait) // after the Answerer's Close (cleanups run last first)
	return r
}

func (r *receiver) onTrack(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	r.wg.Add(1)
	defer r.wg.Done()
	first := true
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			return
		}
		if first {
			first = false
			r.got <- tr.ID()
		}
	}
}

// TestAnswerMedia answers real offers (the first creates the peer
// connection, later ones renegotiate it) and checks that media of every
// offered track reaches the OnTrack handler.
func TestAnswerMedia(t *testing.T) {
	tests := []struct {
		name   string
		rounds [][]string // track ids added before each offer
	}{
		{"one track", [][]string{{"video"}}},
		{"two tracks in one offer", [][]string{{"cam", "screen"}}},
		{"renegotiated", [][]string{{"cam"}, {"screen"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newReceiver(t)
			a := NewAnswerer(testAPI(t, nil), rec.onTrack)
			t.Cleanup(func() {
				if err := a.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			o := newOfferer(t)
			if a.PC() != nil {
				t.Fatal("PC() before the first offer is not nil")
			}
			var pc *webrtc.PeerConnection
			seen := map[string]bool{}
			var seq uint16
			for i, ids := range tt.rounds {
				for _, id := range ids {
					o.addTrack(id)
				}
				answer, err := a.Answer(o.offer(), nil)
				if err != nil {
					t.Fatalf("round %d: Answer: %v", i, err)
				}
				if answer.Type != webrtc.SDPTypeAnswer || !strings.Contains(answer.SDP, "a=candidate:") {
					t.Fatalf("round %d: answer is a %s without candidates:\n%s", i, answer.Type, answer.SDP)
				}
				if i == 0 {
					pc = a.PC()
				}
				if a.PC() == nil || a.PC() != pc {
					t.Fatalf("round %d: PC() = %p, want the first offer's %p", i, a.PC(), pc)
				}
				if err := o.pc.SetRemoteDescription(answer); err != nil {
					t.Fatalf("round %d: offerer SetRemoteDescription: %v", i, err)
				}
				tick := time.NewTicker(10 * time.Millisecond)
				timeout := time.After(testTimeout)
				for len(seen) < len(o.tracks) {
					select {
					case id := <-rec.got:
						seen[id] = true
					case <-tick.C:
						seq++
						o.writeAll(seq)
					case <-timeout:
						tick.Stop()
						t.Fatalf("round %d: media arrived on %v of %d tracks", i, seen, len(o.tracks))
					}
				}
				tick.Stop()
			}
		})
	}
}

// moment is when a test stops an Answer or closes its Answerer.
type moment int

const (
	never          moment = iota
	beforeOffer           // before Answer is called
	whileGathering        // once Answer waits for ICE gathering (held by gatedNet)
)

// TestAnswerErrors checks how an Answer ends when it is stopped or the
// Answerer is closed, before the offer is applied or while ICE gathering
// is held, and when the offer is unusable.
func TestAnswerErrors(t *testing.T) {
	tests := []struct {
		name          string
		stop, close   moment
		edit          func(webrtc.SessionDescription) webrtc.SessionDescription // of the offer, or nil
		want          error                                                     // nil: a negotiation error
		wantPCCreated bool
	}{
		{name: "stopped before the offer", stop: beforeOffer, want: ErrStopped},
		{name: "closed before the offer", close: beforeOffer, want: ErrClosed},
		{name: "stopped while gathering", stop: whileGathering, want: ErrStopped, wantPCCreated: true},
		{name: "closed while gathering", close: whileGathering, want: ErrClosed, wantPCCreated: true},
		{
			name: "not an offer",
			edit: func(d webrtc.SessionDescription) webrtc.SessionDescription {
				return webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: d.SDP}
			},
			wantPCCreated: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gn := newGatedNet(t)
			a := NewAnswerer(testAPI(t, gn), nil)
			t.Cleanup(func() { // after a failure; Close waits for gathering
				gn.open()
				_ = a.Close()
			})
			o := newOfferer(t)
			o.addTrack("video")
			offer := o.offer()
			if tt.edit != nil {
				offer = tt.edit(offer)
			}
			stop := make(chan struct{})
			var closing sync.WaitGroup
			closeAnswerer := func() {
				closing.Go(func() { // Close waits for the held gathering to end
					if err := a.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
			}
			if tt.stop == beforeOffer {
				close(stop)
			}
			if tt.close == beforeOffer {
				closeAnswerer()
				closing.Wait()
			}
			errc := make(chan error, 1)
			var answering sync.WaitGroup
			answering.Go(func() {
				_, err := a.Answer(offer, stop)
				errc <- err
			})
			if tt.stop == whileGathering || tt.close == whileGathering {
				select {
				case <-gn.started:
				case err := <-errc:
					t.Fatalf("Answer returned before gathering began: %v", err)
				}
				if tt.stop == whileGathering {
					close(stop)
				}
				if tt.close == whileGathering {
					closeAnswerer()
				}
			}
			var err error
			select {
			case err = <-errc:
			case <-time.After(testTimeout):
				t.Fatal("Answer did not return")
			}
			answering.Wait()
			gn.open()
			closeAnswerer()
			closing.Wait()
			switch {
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("Answer: %v, want %v", err, tt.want)
			case tt.want == nil && (err == nil || errors.Is(err, ErrStopped) || errors.Is(err, ErrClosed)):
				t.Errorf("Answer: %v, want a negotiation error", err)
			}
			if got := a.PC() != nil; got != tt.wantPCCreated {
				t.Errorf("peer connection created: %v, want %v", got, tt.wantPCCreated)
			}
		})
	}
}

// TestCloseIdempotent closes Answerers in each state twice and answers
// after Close.
func TestCloseIdempotent(t *testing.T) {
	tests := []struct {
		name     string
		answered bool
	}{
		{"before any offer", false},
		{"after an answer", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAnswerer(testAPI(t, nil), nil)
			o := newOfferer(t)
			o.addTrack("video")
			offer := o.offer()
			if tt.answered {
				if _, err := a.Answer(offer, nil); err != nil {
					t.Fatalf("Answer: %v", err)
				}
			}
			for i := range 2 {
				if err := a.Close(); err != nil {
					t.Errorf("Close #%d: %v", i+1, err)
				}
			}
			if pc := a.PC(); tt.answered && pc.ConnectionState() != webrtc.PeerConnectionStateClosed {
				t.Errorf("peer connection %s after Close", pc.ConnectionState())
			}
			if _, err := a.Answer(offer, nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Answer after Close: %v, want ErrClosed", err)
			}
		})
	}
}

// TestConcurrentAnswerClose races Answer, PC and Close (run with -race):
// every Answer either succeeds or fails with ErrClosed, and nothing leaks.
func TestConcurrentAnswerClose(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			a := NewAnswerer(testAPI(t, nil), nil)
			o := newOfferer(t)
			o.addTrack("video")
			offer := o.offer()
			closed := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					for ctx.Err() == nil {
						_, err := a.Answer(offer, ctx.Done())
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("Answer: %v", err)
							return
						}
					}
				})
			}
			wg.Go(func() {
				for {
					select {
					case <-closed:
						return
					case <-time.After(100 * time.Microsecond):
						_ = a.PC()
					}
				}
			})
			time.Sleep(delay)
			if err := a.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			close(closed)
			wg.Wait()
		})
	}
}

// TestServe feeds offers to Serve and checks where answers and errors go
// and what ends it.
func TestServe(t *testing.T) {
	errSend := errors.New("send failed")
	tests := []struct {
		name      string
		offers    int
		notOffer  bool  // the offers are sent as answers
		sendErr   error // what send returns
		closed    bool  // the Answerer is closed before the first offer
		wantSent  int
		wantFails int
	}{
		{name: "answers every offer", offers: 2, wantSent: 2},
		{name: "a send error goes to fail", offers: 1, sendErr: errSend, wantSent: 1, wantFails: 1},
		{name: "a bad offer goes to fail", offers: 1, notOffer: true, wantFails: 1},
		{name: "Close ends serving", offers: 1, closed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAnswerer(testAPI(t, nil), nil)
			t.Cleanup(func() { _ = a.Close() })
			o := newOfferer(t)
			offers := make(chan webrtc.SessionDescription)
			stop := make(chan struct{})
			sent := make(chan webrtc.SessionDescription, 1)
			fails := make(chan error, 1)
			var serving sync.WaitGroup
			served := make(chan struct{})
			serving.Go(func() {
				defer close(served)
				a.Serve(offers, stop, func(d webrtc.SessionDescription) error {
					select {
					case sent <- d:
					case <-stop:
					}
					return tt.sendErr
				}, func(err error) {
					select {
					case fails <- err:
					case <-stop:
					}
				})
			})
			var stopOnce sync.Once
			stopServing := func() { stopOnce.Do(func() { close(stop) }) }
			defer func() { // also after a failure
				stopServing()
				serving.Wait()
			}()
			if tt.closed {
				if err := a.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			var nSent, nFails int
			for i := range tt.offers {
				o.addTrack(string(rune('a' + i)))
				offer := o.offer()
				if tt.notOffer {
					offer.Type = webrtc.SDPTypeAnswer
				}
				select {
				case offers <- offer:
				case <-served:
					t.Fatal("Serve returned before the offer")
				}
				if tt.closed {
					break
				}
				if !tt.notOffer {
					select {
					case answer := <-sent:
						nSent++
						if err := o.pc.SetRemoteDescription(answer); err != nil {
							t.Fatalf("offerer SetRemoteDescription: %v", err)
						}
					case <-served:
						t.Fatal("Serve returned before the stop")
					case <-time.After(testTimeout):
						t.Fatal("no answer")
					}
				}
				if tt.notOffer || tt.sendErr != nil {
					select {
					case err := <-fails:
						nFails++
						if err == nil || tt.sendErr != nil && !errors.Is(err, tt.sendErr) {
							t.Errorf("fail(%v), want %v", err, tt.sendErr)
						}
					case <-time.After(testTimeout):
						t.Fatal("no failure reported")
					}
				}
			}
			if !tt.closed {
				stopServing()
			}
			select {
			case <-served:
			case <-time.After(testTimeout):
				t.Fatal("Serve did not return")
			}
			if nSent != tt.wantSent || nFails != tt.wantFails {
				t.Errorf("%d answers sent and %d failures, want %d and %d", nSent, nFails, tt.wantSent, tt.wantFails)
			}
		})
	}
}
