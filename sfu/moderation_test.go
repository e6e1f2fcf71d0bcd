package sfu

import (
	"errors"
	"testing"
)

// lastClosed returns the error of rec's EventClosed, or nil.
func lastClosed(rec *recorder) error {
	for _, ev := range rec.snapshot() {
		if ev.Type == EventClosed {
			return ev.Err
		}
	}
	return nil
}

// moderations returns the moderations rec was told of.
func moderations(rec *recorder) []Moderation {
	var out []Moderation
	for _, ev := range rec.snapshot() {
		if ev.Type == EventModerated {
			out = append(out, *ev.Moderation)
		}
	}
	return out
}

// TestModerate: an admin's mute reaches only its target and sets its
// state for everyone; remove ends the target; lock refuses joins but
// admins'; end closes everyone and refuses the room for a while; remote
// moderations apply once per id; bad ones are refused.
func TestModerate(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	admin, adminRec := joinBare(t, e, "r", "admin", MediaState{})
	alice, aliceRec := joinBare(t, e, "r", "alice", MediaState{})
	bob, bobRec := joinBare(t, e, "r", "bob", MediaState{})
	r := admin.Room()

	bad := []Moderation{
		{Action: "ban", Target: alice.ID()},
		{Action: ModMute, Target: alice.ID(), Kind: "screen"},
		{Action: ModRemove},
		{Action: ModRemove, Target: "nobody"},
	}
	for _, m := range bad {
		if err := admin.Moderate(m); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Moderate(%+v) = %v, want ErrInvalidArgument", m, err)
		}
	}

	if err := admin.Moderate(Moderation{Action: ModMute, Target: alice.ID(), Kind: "audio"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(ctx, t, "alice is told and shown muted", func() bool {
		ms := moderations(aliceRec)
		return len(ms) == 1 && ms[0].By == "admin" && ms[0].Kind == "audio" && len(updates(bobRec)) == 1
	})
	if got := updates(bobRec)[0]; got != "alice a=true v=false s=false" {
		t.Errorf("bob sees %q", got)
	}
	if n := len(moderations(bobRec)) + len(moderations(adminRec)); n != 0 {
		t.Errorf("%d mute events reached others than the target", n)
	}

	if err := admin.Moderate(Moderation{Action: ModLock}); err != nil {
		t.Fatal(err)
	}
	if !r.Locked() {
		t.Fatal("room not locked")
	}
	if _, err := e.Join("r", JoinParams{Name: "late", Events: newRecorder()}); !errors.Is(err, ErrRoomLocked) {
		t.Errorf("join of a locked room = %v, want ErrRoomLocked", err)
	}
	op, err := e.Join("r", JoinParams{Name: "op", Events: newRecorder(), Admin: true})
	if err != nil {
		t.Fatalf("admin join of a locked room: %v", err)
	}
	t.Cleanup(op.Close)
	waitUntil(ctx, t, "everyone is told of the lock", func() bool { return len(moderations(bobRec)) == 1 })
	// A remote unlock (another node's admin), applied once.
	unlock := Moderation{ID: "m1", Action: ModUnlock, By: "far admin", Origin: "n2"}
	for range 2 {
		if err := r.ApplyRemoteModeration(unlock); err != nil {
			t.Fatal(err)
		}
	}
	if r.Locked() {
		t.Error("remote unlock not applied")
	}
	waitUntil(ctx, t, "bob is told of the unlock once", func() bool { return len(moderations(bobRec)) == 2 })
	if err := r.ApplyRemoteModeration(Moderation{Action: ModUnlock}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a remote moderation without id = %v", err)
	}

	if err := admin.Moderate(Moderation{Action: ModRemove, Target: bob.ID()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bob.Done():
	case <-ctx.Done():
		t.Fatal("bob was not removed")
	}
	waitUntil(ctx, t, "bob's EventClosed", func() bool { return errors.Is(lastClosed(bobRec), ErrRemoved) })
	if !errors.Is(bob.Err(), ErrRemoved) {
		t.Errorf("bob.Err() = %v", bob.Err())
	}

	if err := admin.Moderate(Moderation{Action: ModEnd}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Participant{admin, alice, op} {
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("%s not closed by end", p.Info().Name)
		}
	}
	if !errors.Is(alice.Err(), ErrRoomEnded) {
		t.Errorf("alice.Err() = %v, want ErrRoomEnded", alice.Err())
	}
	if _, err := e.Join("r", JoinParams{Name: "again", Events: newRecorder(), Admin: true}); !errors.Is(err, ErrRoomEnded) {
		t.Errorf("join of an ended room = %v, want ErrRoomEnded", err)
	}
	var seen int
	for _, l := range obs.peopleSnapshot() {
		if len(l) > 13 && l[:13] == "r moderation " {
			seen++
		}
	}
	if seen != 4 { // mute, lock, remove, end (not the remote unlock)
		t.Errorf("observer heard %d moderations, want 4: %q", seen, obs.peopleSnapshot())
	}
}
