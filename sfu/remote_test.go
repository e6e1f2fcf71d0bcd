package sfu

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func remoteInfo(id, participant string) ProducerInfo {
	return ProducerInfo{
		ID: id, Kind: KindVideo, ParticipantID: participant, ParticipantName: "zed",
		Codec:  Codec{MimeType: "video/VP8", ClockRate: 90000},
		Origin: "node-b", Remote: true,
	}
}

// feed writes synthetic VP8 packets to prod every 10ms until stop.
func feed(prod *Producer, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 99, Marker: true},
			Payload: []byte{0x10, 0, 0x9d, 0x01, 0x2a, 1, 2, 3}}
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			if prod.WriteRTP(pkt) != nil {
				return
			}
		}
	}()
}

// TestRemoteProducer: a producer piped in with Room.AddProducer reaches a
// local subscriber; its remote participant appears and disappears.
func TestRemoteProducer(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	sub := joinClient(t, e, "r", "bob")
	room := sub.p.Room()

	kr := &countingRequester{}
	info := remoteInfo("rp-1", "remote-alice")
	prod, err := room.AddProducer(info, kr)
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	feed(prod, stop, &wg)

	waitMedia(ctx, t, sub, info)
	if kr.n.Load() < 1 {
		t.Error("consumer creation did not request a keyframe")
	}
	if n := sub.rec.count(isParticipantEvent(EventParticipantJoined, "remote-alice")); n != 1 {
		t.Errorf("participant-joined for remote = %d, want 1", n)
	}
	for _, ev := range sub.rec.snapshot() {
		if ev.Type == EventParticipantJoined && !ev.Participant.Remote {
			t.Errorf("remote participant not marked Remote: %+v", ev.Participant)
		}
	}
	if n := sub.rec.count(isProducerEvent(EventProducerAdded, "rp-1")); n != 1 {
		t.Errorf("producer-added = %d, want 1", n)
	}
	wantParts := []ParticipantInfo{
		{ID: sub.p.ID(), Name: "bob", Origin: "node-a", Since: sub.p.Info().Since},
		{ID: "remote-alice", Name: "zed", Origin: "node-b", Remote: true},
	}
	if got := room.Participants(); !equalInfos(got, wantParts) {
		t.Errorf("Participants = %+v, want %+v", got, wantParts)
	}
	if got := room.LocalParticipants(); len(got) != 1 || got[0].ID != sub.p.ID() {
		t.Errorf("LocalParticipants = %+v", got)
	}

	// Second producer of the same remote participant: no second join.
	prod2, err := room.AddProducer(remoteInfo("rp-2", "remote-alice"), nil)
	if err != nil {
		t.Fatalf("AddProducer 2: %v", err)
	}
	if _, err := room.AddProducer(remoteInfo("rp-2", "remote-alice"), nil); !errors.Is(err, ErrDuplicateProducer) {
		t.Errorf("duplicate AddProducer = %v, want ErrDuplicateProducer", err)
	}
	waitUntil(ctx, t, "producer-added rp-2", func() bool {
		return sub.rec.count(isProducerEvent(EventProducerAdded, "rp-2")) == 1
	})
	prod.Close()
	<-prod.Done()
	if err := prod.WriteRTP(&rtp.Packet{}); !errors.Is(err, ErrProducerClosed) {
		t.Errorf("WriteRTP after Close = %v", err)
	}
	waitUntil(ctx, t, "producer-removed rp-1", func() bool {
		return sub.rec.count(isProducerEvent(EventProducerRemoved, "rp-1")) == 1
	})
	if n := sub.rec.count(isParticipantEvent(EventParticipantLeft, "remote-alice")); n != 0 {
		t.Errorf("participant-left after first of two producers closed")
	}
	prod2.Close()
	waitUntil(ctx, t, "participant-left", func() bool {
		return sub.rec.count(isParticipantEvent(EventParticipantLeft, "remote-alice")) == 1
	})
	if got := room.Participants(); len(got) != 1 {
		t.Errorf("Participants = %+v, want only bob", got)
	}
	if calls := obs.snapshot(); len(calls) != 1 || calls[0] != "opened r" {
		t.Errorf("observer calls = %q, want only the room opening (remote producers are not reported)", calls)
	}
}

func equalInfos(a, b []ParticipantInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRemoteProducersClosedWithRoom: the room's remote producers close when
// the last local participant leaves.
func TestRemoteProducersClosedWithRoom(t *testing.T) {
	e := newTestEngine(t, nil)
	c := joinClient(t, e, "r", "bob")
	prod, err := c.p.Room().AddProducer(remoteInfo("rp", "ra"), nil)
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	c.close()
	select {
	case <-prod.Done():
	default:
		t.Error("remote producer still open after the room closed")
	}
}

func TestAddProducerInvalid(t *testing.T) {
	e := newTestEngine(t, nil)
	c := joinClient(t, e, "r", "bob")
	tests := []struct {
		name   string
		mutate func(*ProducerInfo)
		want   error
	}{
		{"not remote", func(p *ProducerInfo) { p.Remote = false }, ErrInvalidArgument},
		{"no origin", func(p *ProducerInfo) { p.Origin = "" }, ErrInvalidArgument},
		{"no id", func(p *ProducerInfo) { p.ID = "" }, ErrInvalidArgument},
		{"no participant", func(p *ProducerInfo) { p.ParticipantID = "" }, ErrInvalidArgument},
		{"no codec", func(p *ProducerInfo) { p.Codec = Codec{} }, ErrInvalidArgument},
		{"kind mismatch", func(p *ProducerInfo) { p.Kind = KindAudio }, ErrInvalidArgument},
		{"local participant id", func(p *ProducerInfo) { p.ParticipantID = c.p.ID() }, ErrInvalidArgument},
		{"kind derived", func(p *ProducerInfo) { p.Kind = "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := remoteInfo("p-"+tt.name, "ra")
			tt.mutate(&info)
			prod, err := c.p.Room().AddProducer(info, nil)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("AddProducer = %v, want %v", err, tt.want)
			}
			if prod != nil {
				if prod.Info().Kind != KindVideo {
					t.Errorf("kind = %q", prod.Info().Kind)
				}
				prod.Close()
			}
		})
	}
}
