package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/confab/confab/sfu"
)

// eventLog records a bare participant's events (no peer connections).
type eventLog struct {
	mu     sync.Mutex
	events []sfu.Event
}

func (l *eventLog) HandleEvent(ev sfu.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

// chat returns the texts of the chat events, in order.
func (l *eventLog) chat() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.events {
		if ev.Type == sfu.EventChat {
			out = append(out, ev.Chat.Text)
		}
	}
	return out
}

func joinLogged(t *testing.T, e *sfu.Engine, room, name string, st sfu.MediaState) (*sfu.Participant, *eventLog) {
	t.Helper()
	return joinParams(t, e, room, sfu.JoinParams{Name: name, State: st})
}

// joinParams joins a bare participant with params (Events is set here)
// and closes it at the end of the test.
func joinParams(t *testing.T, e *sfu.Engine, room string, params sfu.JoinParams) (*sfu.Participant, *eventLog) {
	t.Helper()
	l := &eventLog{}
	params.Events = l
	p, err := e.Join(room, params)
	if err != nil {
		t.Fatalf("join %s: %v", params.Name, err)
	}
	t.Cleanup(p.Close)
	return p, l
}

// twoNodes starts node-a and node-b on the test's Consul agent and waits
// until they know each other.
func twoNodes(t *testing.T) (context.Context, *testNode, *testNode) {
	t.Helper()
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	itWaitCluster(ctx, t, na, nb)
	return ctx, na, nb
}

// participantState returns how room on n lists the participant called
// name ("" when absent).
func participantState(n *testNode, room, name string) string {
	r := n.engine.Room(room)
	if r == nil {
		return ""
	}
	for _, p := range r.Participants() {
		if p.Name == name {
			return fmt.Sprintf("audioMuted=%v videoMuted=%v", p.AudioMuted, p.VideoMuted)
		}
	}
	return ""
}

// TestIntegrationPresenceAndChat: three nodes, participants that publish
// nothing. Presence and media state cross nodes on their own; chat
// reaches every node once, in each sender's order; a node that opens the
// room later gets the history from the nodes already in it; a departed
// participant disappears everywhere.
func TestIntegrationPresenceAndChat(t *testing.T) {
	a := consulForTest(t)
	checkLeaks(t)
	ctx := testContext(t)
	na := startTestNode(ctx, t, a, "node-a")
	nb := startTestNode(ctx, t, a, "node-b")
	nc := startTestNode(ctx, t, a, "node-c")
	itWaitCluster(ctx, t, na, nb, nc)

	alice, aLog := joinLogged(t, na.engine, "meet", "Alice", sfu.MediaState{})
	bob, bLog := joinLogged(t, nb.engine, "meet", "Bob", sfu.MediaState{VideoMuted: true})
	start := time.Now()
	waitFor(ctx, t, "alice sees bob", func() bool { return participantState(na, "meet", "Bob") == "audioMuted=false videoMuted=true" })
	t.Logf("a participant without media on node-b is listed on node-a after %v", time.Since(start).Round(time.Millisecond))
	waitFor(ctx, t, "bob sees alice", func() bool { return participantState(nb, "meet", "Alice") != "" })

	if err := bob.SetMediaState(sfu.MediaState{AudioMuted: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "bob's new state on node-a", func() bool { return participantState(na, "meet", "Bob") == "audioMuted=true videoMuted=false" })

	// Interleaved chat from two nodes.
	var want []string
	for i := range 5 {
		for _, s := range []struct {
			p    *sfu.Participant
			name string
		}{{alice, "a"}, {bob, "b"}} {
			text := fmt.Sprintf("%s%d", s.name, i)
			if _, err := s.p.SendChat(text); err != nil {
				t.Fatalf("send %s: %v", text, err)
			}
			want = append(want, text)
		}
	}
	perSender := func(texts []string, prefix string) []string {
		var out []string
		for _, s := range texts {
			if s[:1] == prefix {
				out = append(out, s)
			}
		}
		return out
	}
	for _, l := range []*eventLog{aLog, bLog} {
		waitFor(ctx, t, "chat delivered", func() bool { return len(l.chat()) >= len(want) })
		got := l.chat()
		if len(got) != len(want) {
			t.Errorf("delivered %q, want each of %q once", got, want)
		}
		for _, prefix := range []string{"a", "b"} {
			if g, w := perSender(got, prefix), perSender(want, prefix); !slices.Equal(g, w) {
				t.Errorf("messages of %s in order %q, want %q", prefix, g, w)
			}
		}
	}

	// node-c opens the room later: it gets the history and the presence.
	_, cLog := joinLogged(t, nc.engine, "meet", "Carol", sfu.MediaState{})
	waitFor(ctx, t, "history handed to node-c", func() bool { return len(nc.engine.Room("meet").ChatHistory()) >= len(want) })
	if got := len(nc.engine.Room("meet").ChatHistory()); got != len(want) {
		t.Errorf("node-c's history has %d messages, want %d", got, len(want))
	}
	waitFor(ctx, t, "carol gets the history as events", func() bool { return len(cLog.chat()) >= len(want) })
	for _, prefix := range []string{"a", "b"} {
		if g, w := perSender(cLog.chat(), prefix), perSender(want, prefix); !slices.Equal(g, w) {
			t.Errorf("carol: messages of %s %q, want %q", prefix, g, w)
		}
	}
	waitFor(ctx, t, "carol sees alice and bob", func() bool {
		return participantState(nc, "meet", "Alice") != "" && participantState(nc, "meet", "Bob") != ""
	})

	bob.Close()
	left := time.Now()
	waitFor(ctx, t, "bob gone from node-a and node-c", func() bool {
		return participantState(na, "meet", "Bob") == "" && participantState(nc, "meet", "Bob") == ""
	})
	t.Logf("a departed participant is gone from the other nodes after %v", time.Since(left).Round(time.Millisecond))
}

// moderated returns the actions of the moderation events l got.
func (l *eventLog) moderated() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ev := range l.events {
		if ev.Type == sfu.EventModerated {
			out = append(out, ev.Moderation.Action+" "+ev.Moderation.Kind+" by "+ev.Moderation.By)
		}
	}
	return out
}

// TestIntegrationModeration: an admin on node-a mutes and removes
// participants of node-b, locks the room on both nodes and ends it
// everywhere; each action applies once, on the node of its target.
func TestIntegrationModeration(t *testing.T) {
	ctx, na, nb := twoNodes(t)

	admin, _ := joinLogged(t, na.engine, "mod", "Admin", sfu.MediaState{})
	bob, bLog := joinLogged(t, nb.engine, "mod", "Bob", sfu.MediaState{})
	carol, cLog := joinLogged(t, nb.engine, "mod", "Carol", sfu.MediaState{})
	waitFor(ctx, t, "node-a lists bob and carol", func() bool {
		return participantState(na, "mod", "Bob") != "" && participantState(na, "mod", "Carol") != ""
	})

	start := time.Now()
	if err := admin.Moderate(sfu.Moderation{Action: sfu.ModMute, Target: bob.ID(), Kind: "video"}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "bob told and shown muted on node-a", func() bool {
		return len(bLog.moderated()) == 1 && participantState(na, "mod", "Bob") == "audioMuted=false videoMuted=true"
	})
	t.Logf("a mute from node-a reached node-b's participant and came back as its state after %v", time.Since(start).Round(time.Millisecond))
	if got := bLog.moderated()[0]; got != "mute video by Admin" {
		t.Errorf("bob got %q", got)
	}

	if err := admin.Moderate(sfu.Moderation{Action: sfu.ModLock}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the room is locked on node-b", func() bool { return nb.engine.Room("mod").Locked() })
	if _, err := nb.engine.Join("mod", sfu.JoinParams{Name: "late", Events: &eventLog{}}); !errors.Is(err, sfu.ErrRoomLocked) {
		t.Errorf("join on node-b of the locked room = %v", err)
	}

	if err := admin.Moderate(sfu.Moderation{Action: sfu.ModRemove, Target: carol.ID()}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-carol.Done():
	case <-ctx.Done():
		t.Fatal("carol was not removed")
	}
	if !errors.Is(carol.Err(), sfu.ErrRemoved) {
		t.Errorf("carol.Err() = %v", carol.Err())
	}
	if n := len(cLog.moderated()); n != 1 { // the lock
		t.Errorf("carol got %d moderation events, want the lock only", n)
	}

	if err := admin.Moderate(sfu.Moderation{Action: sfu.ModEnd}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*sfu.Participant{admin, bob} {
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("%s not ended", p.Info().Name)
		}
	}
	if !errors.Is(bob.Err(), sfu.ErrRoomEnded) {
		t.Errorf("bob.Err() = %v", bob.Err())
	}
	if _, err := nb.engine.Join("mod", sfu.JoinParams{Name: "again", Events: &eventLog{}}); !errors.Is(err, sfu.ErrRoomEnded) {
		t.Errorf("join on node-b of the ended room = %v", err)
	}
}

// TestIntegrationIdentityAcrossNodes: a second session of an identity on
// another node ends the first one (ErrReplaced); other identities stay.
func TestIntegrationIdentityAcrossNodes(t *testing.T) {
	ctx, na, nb := twoNodes(t)
	join := func(e *sfu.Engine, name, identity string) *sfu.Participant {
		t.Helper()
		p, _ := joinParams(t, e, "ident", sfu.JoinParams{Name: name, Identity: identity})
		return p
	}
	old := join(na.engine, "alice laptop", "alice")
	bob := join(na.engine, "bob", "bob")
	carol := join(nb.engine, "carol", "carol") // opens the room on node-b
	waitFor(ctx, t, "node-b lists alice", func() bool { return participantState(nb, "ident", "alice laptop") != "" })
	time.Sleep(5 * time.Millisecond) // a later join time
	start := time.Now()
	fresh := join(nb.engine, "alice phone", "alice")
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the older session on node-a was not ended")
	}
	t.Logf("the older session on the other node ended %v after the new join", time.Since(start).Round(time.Millisecond))
	if !errors.Is(old.Err(), sfu.ErrReplaced) {
		t.Errorf("old.Err() = %v, want ErrReplaced", old.Err())
	}
	waitFor(ctx, t, "node-a lists the new session only", func() bool {
		return participantState(na, "ident", "alice phone") != "" && participantState(na, "ident", "alice laptop") == ""
	})
	for _, p := range []*sfu.Participant{bob, carol, fresh} {
		select {
		case <-p.Done():
			t.Fatalf("%s was ended", p.Info().Name)
		default:
		}
	}
}
