package sfu

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// TestPublisherLeave: when the publisher leaves, subscribers lose the
// consumer, get producer-removed and participant-left, and their subscriber
// PC is renegotiated.
func TestPublisherLeave(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	pub := joinClient(t, e, "r", "alice")
	subs := []*client{joinClient(t, e, "r", "bob"), joinClient(t, e, "r", "carol")}
	pub.publishVP8(ctx)
	room := pub.p.Room()
	prod := waitProducers(ctx, t, room, 1)[0]
	answeredBefore := make([]int64, len(subs))
	for i, s := range subs {
		waitMedia(ctx, t, s, prod)
		if n := pub.rec.count(isParticipantEvent(EventParticipantJoined, s.p.ID())); n != 1 {
			t.Errorf("alice: participant-joined for %s = %d, want 1", s.p.Info().Name, n)
		}
		waitUntil(ctx, t, "first answer", func() bool { return s.answered.Load() >= 1 })
		answeredBefore[i] = s.answered.Load()
	}

	pub.p.Close()
	select {
	case <-pub.p.Done():
	default:
		t.Fatal("Done not closed after Close returned")
	}
	for _, s := range subs {
		waitUntil(ctx, t, "producer-removed and participant-left", func() bool {
			return s.rec.count(isProducerEvent(EventProducerRemoved, prod.ID)) == 1 &&
				s.rec.count(isParticipantEvent(EventParticipantLeft, pub.p.ID())) == 1
		})
		// producer-removed comes before participant-left.
		var order []EventType
		for _, ev := range s.rec.snapshot() {
			if ev.Type == EventProducerRemoved || ev.Type == EventParticipantLeft {
				order = append(order, ev.Type)
			}
		}
		if want := []EventType{EventProducerRemoved, EventParticipantLeft}; !reflect.DeepEqual(order, want) {
			t.Errorf("event order = %v, want %v", order, want)
		}
		s.p.mu.Lock()
		nc := len(s.p.consumers)
		s.p.mu.Unlock()
		if nc != 0 {
			t.Errorf("%s still has %d consumers", s.p.Info().Name, nc)
		}
	}
	for i, s := range subs {
		waitUntil(ctx, t, "renegotiation after removal", func() bool {
			return s.answered.Load() > answeredBefore[i]
		})
	}
	// The last subscriber offer no longer sends the track.
	for _, s := range subs {
		last := lastOffer(s.rec)
		if strings.Contains(last, "a=msid:"+pub.p.ID()) {
			t.Errorf("last offer still carries the producer's stream:\n%s", last)
		}
	}
	if ps := room.Producers(); len(ps) != 0 {
		t.Errorf("room producers = %+v, want none", ps)
	}
	if got := room.Participants(); len(got) != 2 {
		t.Errorf("room participants = %+v, want 2", got)
	}
	sd := webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: lastOffer(subs[0].rec)}
	if err := pub.p.SetSubscriberAnswer(sd); !errors.Is(err, ErrParticipantClosed) {
		t.Errorf("SetSubscriberAnswer after close = %v, want ErrParticipantClosed", err)
	}
	if _, err := pub.p.Publish(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.SDP}); !errors.Is(err, ErrParticipantClosed) {
		t.Errorf("Publish after close = %v, want ErrParticipantClosed", err)
	}
}

func lastOffer(r *recorder) string {
	last := ""
	for _, ev := range r.snapshot() {
		if ev.Type == EventSubscriberOffer {
			last = ev.SDP.SDP
		}
	}
	return last
}

// TestPeerClosedConnection: a client closing its peer connection closes the
// participant (EventClosed with ErrConnectionFailed; others get
// participant-left).
func TestPeerClosedConnection(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	pub := joinClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	pub.publishVP8(ctx)
	prod := waitProducers(ctx, t, pub.p.Room(), 1)[0]
	waitMedia(ctx, t, sub, prod)

	pub.mu.Lock()
	pc := pub.pub
	pub.mu.Unlock()
	if err := pc.Close(); err != nil {
		t.Fatalf("client close: %v", err)
	}
	select {
	case <-pub.p.Done():
	case <-ctx.Done():
		t.Fatal("participant not closed after its peer closed the connection")
	}
	var closed []Event
	waitUntil(ctx, t, "EventClosed", func() bool {
		closed = nil
		for _, ev := range pub.rec.snapshot() {
			if ev.Type == EventClosed {
				closed = append(closed, ev)
			}
		}
		return len(closed) > 0
	})
	if len(closed) != 1 || !errors.Is(closed[0].Err, ErrConnectionFailed) {
		t.Errorf("closed events = %+v, want one with ErrConnectionFailed", closed)
	}
	waitUntil(ctx, t, "participant-left", func() bool {
		return sub.rec.count(isParticipantEvent(EventParticipantLeft, pub.p.ID())) == 1
	})
}

// TestObserverOrder: observer calls and room removal follow the room's
// local lifecycle.
func TestObserverOrder(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)

	alice := joinClient(t, e, "r", "alice")
	alice.publishVP8(ctx)
	room := alice.p.Room()
	waitProducers(ctx, t, room, 1)
	bob := joinClient(t, e, "r", "bob")
	if e.Room("r") != room || len(e.Rooms()) != 1 {
		t.Fatalf("Room(r) = %v, Rooms = %v", e.Room("r"), e.Rooms())
	}
	alice.close()
	if e.Room("r") == nil {
		t.Fatal("room removed while bob is still in it")
	}
	bob.close()
	if e.Room("r") != nil || len(e.Rooms()) != 0 {
		t.Fatalf("room not removed after last participant: %v", e.Rooms())
	}
	want := []string{"opened r", "added r alice", "removed r alice", "closed r"}
	if got := obs.snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("observer calls = %q, want %q", got, want)
	}
	if _, err := room.AddProducer(ProducerInfo{ID: "x", ParticipantID: "y", Origin: "b", Remote: true,
		Codec: Codec{MimeType: "video/VP8", ClockRate: 90000}}, nil); !errors.Is(err, ErrRoomClosed) {
		t.Errorf("AddProducer on closed room = %v, want ErrRoomClosed", err)
	}

	// The name can be reused: a new room opens.
	carol := joinClient(t, e, "r", "carol")
	if carol.p.Room() == room {
		t.Error("closed room was reused")
	}
	carol.close()
	want = append(want, "opened r", "closed r")
	if got := obs.snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("observer calls = %q, want %q", got, want)
	}
}

// TestConcurrentJoinLeave exercises the join/leave races under -race.
func TestConcurrentJoinLeave(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.MaxParticipantsPerRoom = 1000 })
	obs := &fakeObserver{}
	e.SetObserver(obs)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				p, err := e.Join(fmt.Sprintf("room-%d", i%2), JoinParams{Name: fmt.Sprint(i, j), Events: newRecorder()})
				if err != nil {
					t.Errorf("Join: %v", err)
					return
				}
				p.Close()
			}
		}()
	}
	wg.Wait()
	if rooms := e.Rooms(); len(rooms) != 0 {
		t.Errorf("rooms left: %v", rooms)
	}
	calls := obs.snapshot()
	opened := map[string]int{}
	for _, c := range calls {
		name := c[strings.LastIndex(c, " ")+1:]
		switch {
		case strings.HasPrefix(c, "opened"):
			if opened[name] != 0 {
				t.Errorf("room %s opened twice without close: %q", name, calls)
			}
			opened[name]++
		case strings.HasPrefix(c, "closed"):
			if opened[name] != 1 {
				t.Errorf("room %s closed while not open: %q", name, calls)
			}
			opened[name]--
		}
	}
}

// TestEngineClose: Engine.Close closes every participant (EventClosed with
// ErrEngineClosed), reports the rooms closed and leaves no goroutines.
func TestEngineClose(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	pub := joinClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	other := joinClient(t, e, "r2", "dave")
	pub.publishVP8(ctx)
	prod := waitProducers(ctx, t, pub.p.Room(), 1)[0]
	waitMedia(ctx, t, sub, prod)

	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range []*client{pub, sub, other} {
		select {
		case <-c.p.Done():
		default:
			t.Errorf("%s not closed", c.p.Info().Name)
		}
		var errs []error
		for _, ev := range c.rec.snapshot() {
			if ev.Type == EventClosed {
				errs = append(errs, ev.Err)
			}
		}
		if len(errs) != 1 || !errors.Is(errs[0], ErrEngineClosed) {
			t.Errorf("%s closed events: %v", c.p.Info().Name, errs)
		}
	}
	if _, err := e.Join("r", JoinParams{Name: "late", Events: newRecorder()}); !errors.Is(err, ErrEngineClosed) {
		t.Errorf("Join after Close = %v, want ErrEngineClosed", err)
	}
	if _, err := e.NewPeerConnection(); !errors.Is(err, ErrEngineClosed) {
		t.Errorf("NewPeerConnection after Close = %v, want ErrEngineClosed", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	calls := obs.snapshot()
	for _, want := range []string{"removed r alice", "closed r", "closed r2"} {
		found := false
		for _, c := range calls {
			found = found || c == want
		}
		if !found {
			t.Errorf("observer calls %q miss %q", calls, want)
		}
	}
	for _, c := range []*client{pub, sub, other} {
		c.close()
	}
	goleak.VerifyNone(t)
}

// TestUnpublishByRenegotiation: a publisher removing its track with a new
// offer closes the producer; subscribers get producer-removed, the
// publisher stays in the room.
func TestUnpublishByRenegotiation(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	pub := joinClient(t, e, "r", "alice")
	sub := joinClient(t, e, "r", "bob")
	pub.publishVP8(ctx)
	room := pub.p.Room()
	prod := waitProducers(ctx, t, room, 1)[0]
	waitMedia(ctx, t, sub, prod)

	pub.mu.Lock()
	pc, sender := pub.pub, pub.sender
	pub.mu.Unlock()
	if err := pc.RemoveTrack(sender); err != nil {
		t.Fatalf("RemoveTrack: %v", err)
	}
	pub.renegotiatePublisher(ctx)
	waitProducers(ctx, t, room, 0)
	waitUntil(ctx, t, "producer-removed", func() bool {
		return sub.rec.count(isProducerEvent(EventProducerRemoved, prod.ID)) == 1
	})
	if n := sub.rec.count(isType(EventParticipantLeft)); n != 0 {
		t.Errorf("participant-left events = %d, want 0", n)
	}
	if len(room.LocalParticipants()) != 2 {
		t.Errorf("participants = %+v", room.LocalParticipants())
	}
	want := []string{"opened r", "added r alice", "removed r alice"}
	waitUntil(ctx, t, "observer", func() bool { return len(obs.snapshot()) >= len(want) })
	if got := obs.snapshot(); !reflect.DeepEqual(got, want) {
		t.Errorf("observer calls = %q, want %q", got, want)
	}
}
