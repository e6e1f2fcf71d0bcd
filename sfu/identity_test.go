package sfu

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// names lists the names of infos.
func names(infos []ParticipantInfo) []string {
	out := make([]string, 0, len(infos))
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

// TestJoinIdentityReplaces: joining with the identity of a participant
// already in the room closes the older one with ErrReplaced; other
// identities, other rooms and the empty identity are untouched.
func TestJoinIdentityReplaces(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.MaxParticipantsPerRoom = 2 })
	join := func(room, name, identity string) (*Participant, *recorder) {
		t.Helper()
		rec := newRecorder()
		p, err := e.Join(room, JoinParams{Name: name, Events: rec, Identity: identity})
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		t.Cleanup(p.Close)
		return p, rec
	}
	old, oldRec := join("r", "alice (laptop)", "alice")
	bob, _ := join("r", "bob", "bob")
	elsewhere, _ := join("other", "alice elsewhere", "alice")
	anon1, _ := join("anon", "a1", "")
	anon2, _ := join("anon", "a2", "")
	// The room is full (2), but the newcomer takes the place of its own
	// older session.
	fresh, _ := join("r", "alice (phone)", "alice")
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the older session of alice was not closed")
	}
	closed := oldRec.snapshot()
	if last := closed[len(closed)-1]; last.Type != EventClosed || !errors.Is(last.Err, ErrReplaced) {
		t.Fatalf("older session's last event = %+v, want EventClosed with ErrReplaced", last)
	}
	for _, p := range []*Participant{bob, elsewhere, anon1, anon2, fresh} {
		select {
		case <-p.Done():
			t.Fatalf("%s was closed", p.Info().Name)
		default:
		}
	}
	waitUntil(ctx, t, "room r holds bob and the new alice", func() bool {
		return slices.Equal(names(fresh.Room().Participants()), []string{"bob", "alice (phone)"})
	})
}

// TestJoinHidden: a hidden participant is in no one's list or events and
// is not reported to the Observer, but sees the others and their chat.
func TestJoinHidden(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	alice, aliceRec := joinBare(t, e, "r", "alice", MediaState{})
	rec := newRecorder()
	ghost, err := e.Join("r", JoinParams{Name: "recorder", Events: rec, Hidden: true})
	if err != nil {
		t.Fatal(err)
	}
	peers, _ := ghost.InitialState()
	if got := names(peers); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("the hidden participant's snapshot = %q, want alice", got)
	}
	if err := ghost.SetMediaState(MediaState{AudioMuted: true}); err != nil {
		t.Fatal(err)
	}
	bob, _ := joinBare(t, e, "r", "bob", MediaState{})
	if got := names(bob.Room().Participants()); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("room list = %q, want alice and bob only", got)
	}
	peers, _ = bob.InitialState()
	if got := names(peers); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("bob's snapshot = %q, want alice", got)
	}
	if _, err := alice.SendChat("hello"); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "the hidden participant gets bob's arrival and the chat", func() bool {
		return rec.count(isType(EventParticipantJoined)) == 1 && rec.count(isType(EventChat)) == 1
	})
	ghost.Close()
	// A barrier: carol's arrival on alice's page comes after any event
	// about the hidden one's leaving would have.
	joinBare(t, e, "r", "carol", MediaState{})
	waitUntil(ctx, t, "alice sees carol", func() bool {
		return aliceRec.count(func(ev Event) bool { return ev.Type == EventParticipantJoined && ev.Participant.Name == "carol" }) == 1
	})
	for _, ev := range aliceRec.snapshot() {
		if ev.Participant != nil && ev.Participant.Name == "recorder" {
			t.Errorf("alice got %s about the hidden participant", ev.Type)
		}
	}
	for _, line := range obs.peopleSnapshot() {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "recorder" {
			t.Errorf("observer heard of the hidden participant: %q", line)
		}
	}
}

// TestJoinNoSubscribe: a participant without subscribe rights hears of
// producers but gets no consumers and no subscriber offer.
func TestJoinNoSubscribe(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	pub := joinClient(t, e, "r", "pub")
	pub.publishVP8(ctx)
	rec := newRecorder()
	viewer, err := e.Join("r", JoinParams{Name: "viewer", Events: rec, NoSubscribe: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(viewer.Close)
	watcher := joinClient(t, e, "r", "watcher")
	prods := waitProducers(ctx, t, pub.p.Room(), 1)
	waitMedia(ctx, t, watcher, prods[0]) // the others do receive it
	_, initial := viewer.InitialState()
	if len(initial)+rec.count(isType(EventProducerAdded)) != 1 {
		t.Errorf("viewer knows of %d producers, want 1", len(initial)+rec.count(isType(EventProducerAdded)))
	}
	time.Sleep(300 * time.Millisecond) // past the negotiation debounce
	if n := rec.count(isType(EventSubscriberOffer)); n != 0 {
		t.Errorf("viewer got %d subscriber offers, want none", n)
	}
}
