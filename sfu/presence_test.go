package sfu

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// joinBare joins a participant without peer connections (presence and
// chat need none) and closes it at the end of the test.
func joinBare(t *testing.T, e *Engine, room, name string, st MediaState) (*Participant, *recorder) {
	t.Helper()
	rec := newRecorder()
	p, err := e.Join(room, JoinParams{Name: name, Events: rec, State: st})
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(p.Close)
	return p, rec
}

// updates returns the participant-updated events rec got, as strings.
func updates(rec *recorder) []string {
	var out []string
	for _, ev := range rec.snapshot() {
		if ev.Type == EventParticipantUpdated {
			p := ev.Participant
			out = append(out, fmt.Sprintf("%s a=%v v=%v s=%v", p.Name, p.AudioMuted, p.VideoMuted, p.Speaking))
		}
	}
	return out
}

// TestMediaState: a participant's announced state is in the others'
// participant lists and reaches them as participant-updated, in order,
// only when it changed; the Observer hears every change.
func TestMediaState(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	obs := &fakeObserver{}
	e.SetObserver(obs)
	alice, _ := joinBare(t, e, "r", "alice", MediaState{VideoMuted: true})
	_, bobRec := joinBare(t, e, "r", "bob", MediaState{})
	for _, info := range alice.Room().Participants() {
		if info.Name == "alice" && (!info.VideoMuted || info.AudioMuted) {
			t.Errorf("alice's initial state = %+v, want video muted only", info)
		}
	}
	steps := []MediaState{{AudioMuted: true, VideoMuted: true}, {AudioMuted: true, VideoMuted: true}, {}, {VideoMuted: true}}
	for _, st := range steps {
		if err := alice.SetMediaState(st); err != nil {
			t.Fatalf("SetMediaState: %v", err)
		}
	}
	want := []string{"alice a=true v=true s=false", "alice a=false v=false s=false", "alice a=false v=true s=false"}
	waitUntil(ctx, t, "bob sees alice's changes", func() bool { return len(updates(bobRec)) >= len(want) })
	if got := updates(bobRec); !slices.Equal(got, want) {
		t.Errorf("bob's updates = %q, want %q", got, want)
	}
	people := obs.peopleSnapshot()
	wantObs := []string{
		"r alice present=true audioMuted=false videoMuted=true speaking=false",
		"r bob present=true audioMuted=false videoMuted=false speaking=false",
		"r alice present=true audioMuted=true videoMuted=true speaking=false",
		"r alice present=true audioMuted=false videoMuted=false speaking=false",
		"r alice present=true audioMuted=false videoMuted=true speaking=false",
	}
	if !slices.Equal(people, wantObs) {
		t.Errorf("observer = %q, want %q", people, wantObs)
	}
	alice.Close()
	if err := alice.SetMediaState(MediaState{}); !errors.Is(err, ErrParticipantClosed) {
		t.Errorf("SetMediaState after close = %v, want ErrParticipantClosed", err)
	}
	if got := obs.peopleSnapshot(); got[len(got)-1] != "r alice present=false audioMuted=false videoMuted=true speaking=false" {
		t.Errorf("last observer call = %q, want alice gone", got[len(got)-1])
	}
}

// TestRemoteParticipants: presence announced by another node adds,
// updates and removes remote participants, whether or not they publish;
// a participant held by a piped producer stays until both let go.
func TestRemoteParticipants(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	p, rec := joinBare(t, e, "r", "local", MediaState{})
	room := p.Room()
	names := func() []string {
		var out []string
		for _, info := range room.Participants() {
			out = append(out, fmt.Sprintf("%s@%s muted=%v", info.Name, info.Origin, info.AudioMuted))
		}
		slices.Sort(out)
		return out
	}
	steps := []struct {
		origin string
		ps     []ParticipantInfo
		want   []string
	}{
		{"node-b", []ParticipantInfo{{ID: "b1", Name: "carol"}, {ID: "b2", Name: "dave"}},
			[]string{"carol@node-b muted=false", "dave@node-b muted=false", "local@node-a muted=false"}},
		{"node-c", []ParticipantInfo{{ID: "c1", Name: "erin", AudioMuted: true}},
			[]string{"carol@node-b muted=false", "dave@node-b muted=false", "erin@node-c muted=true", "local@node-a muted=false"}},
		{"node-b", []ParticipantInfo{{ID: "b1", Name: "carol", AudioMuted: true}},
			[]string{"carol@node-b muted=true", "erin@node-c muted=true", "local@node-a muted=false"}},
		{"node-c", nil, []string{"carol@node-b muted=true", "local@node-a muted=false"}},
	}
	for i, st := range steps {
		if err := room.SetRemoteParticipants(st.origin, st.ps); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := names(); !slices.Equal(got, st.want) {
			t.Errorf("step %d: participants %q, want %q", i, got, st.want)
		}
	}
	waitUntil(ctx, t, "events", func() bool { return rec.count(isType(EventParticipantLeft)) >= 2 })
	for _, c := range []struct {
		typ  EventType
		id   string
		want int
	}{
		{EventParticipantJoined, "b1", 1}, {EventParticipantJoined, "c1", 1},
		{EventParticipantUpdated, "b1", 1}, {EventParticipantLeft, "b2", 1}, {EventParticipantLeft, "c1", 1},
		{EventParticipantLeft, "b1", 0},
	} {
		if n := rec.count(isParticipantEvent(c.typ, c.id)); n != c.want {
			t.Errorf("%s %s: %d events, want %d", c.typ, c.id, n, c.want)
		}
	}

	// A piped producer holds its participant after presence lets go, and
	// presence holds it after the producer closes.
	info := remoteInfo("rp-1", "b1")
	prod, err := room.AddProducer(info, nil)
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	if err := room.SetRemoteParticipants("node-b", nil); err != nil {
		t.Fatal(err)
	}
	if got := names(); len(got) != 2 {
		t.Errorf("with the producer only: %q, want carol kept", got)
	}
	if err := room.SetRemoteParticipants("node-b", []ParticipantInfo{{ID: "b1", Name: "carol"}}); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	if got := names(); len(got) != 2 {
		t.Errorf("with presence only: %q, want carol kept", got)
	}
	if err := room.SetRemoteParticipants("node-a", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("own node as origin: %v, want ErrInvalidArgument", err)
	}
}

// TestChat: messages reach every local participant once, the sender
// included, in order; a later participant gets the history; remote
// messages are deduplicated and ordered by time; bad messages are refused
// with their own errors.
func TestChat(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, func(c *Config) { c.ChatHistory = 5; c.ChatBurst = 100; c.ChatRate = 100 })
	obs := &fakeObserver{}
	e.SetObserver(obs)
	alice, aRec := joinBare(t, e, "r", "alice", MediaState{})
	_, bRec := joinBare(t, e, "r", "bob", MediaState{})
	texts := func(rec *recorder) []string {
		var out []string
		for _, ev := range rec.snapshot() {
			if ev.Type == EventChat {
				out = append(out, ev.Chat.Text)
			}
		}
		return out
	}
	for i := range 4 {
		if _, err := alice.SendChat(fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("SendChat: %v", err)
		}
	}
	want := []string{"m0", "m1", "m2", "m3"}
	for _, rec := range []*recorder{aRec, bRec} {
		waitUntil(ctx, t, "chat delivered", func() bool { return len(texts(rec)) >= 4 })
		if got := texts(rec); !slices.Equal(got, want) {
			t.Errorf("delivered %q, want %q", got, want)
		}
	}
	// Remote: one new, one duplicate, one older (sorted into the history),
	// one malformed.
	now := time.Now()
	remote := []ChatMessage{
		{ID: "x1", ParticipantID: "rb", Name: "carol", Origin: "node-b", Text: "r1", At: now},
		{ID: "x1", ParticipantID: "rb", Name: "carol", Origin: "node-b", Text: "r1", At: now},
		{ID: "x0", ParticipantID: "rb", Name: "carol", Origin: "node-b", Text: "old", At: now.Add(-time.Hour)},
		{ID: "", ParticipantID: "rb", Text: "no id", At: now},
	}
	bad, err := alice.Room().AddRemoteChat(remote)
	if err != nil || bad != 1 {
		t.Fatalf("AddRemoteChat = %d, %v; want 1 bad", bad, err)
	}
	waitUntil(ctx, t, "remote chat delivered", func() bool { return len(texts(bRec)) >= 6 })
	if got := texts(bRec); !slices.Equal(got, []string{"m0", "m1", "m2", "m3", "r1", "old"}) {
		t.Errorf("bob got %q", got)
	}
	// History keeps the newest 5 by time.
	carol, _ := joinBare(t, e, "r", "carol", MediaState{})
	var hist []string
	for _, m := range carol.InitialChat() {
		hist = append(hist, m.Text)
	}
	if want := []string{"m0", "m1", "m2", "m3", "r1"}; !slices.Equal(hist, want) {
		t.Errorf("history %q, want %q", hist, want)
	}
	if got := obs.peopleSnapshot(); !slices.Contains(got, "r chat alice: m3") || slices.Contains(got, "r chat carol: r1") {
		t.Errorf("observer chat calls %q: want local messages only", got)
	}
	for _, c := range []struct {
		text string
		want error
	}{
		{"", ErrChatInvalid}, {"  \n", ErrChatInvalid}, {"a\x00b", ErrChatInvalid}, {"\xff", ErrChatInvalid},
		{strings.Repeat("x", 2049), ErrChatTooLong}, {strings.Repeat("é", 1024), nil},
		{"<img src=x onerror=alert(1)>", nil}, {"line\nbreak\ttab", nil},
	} {
		if _, err := alice.SendChat(c.text); !errors.Is(err, c.want) {
			t.Errorf("SendChat(%.20q) = %v, want %v", c.text, err, c.want)
		}
	}
}

// TestChatRateLimit: a participant's burst passes, the next is refused.
func TestChatRateLimit(t *testing.T) {
	e := newTestEngine(t, func(c *Config) { c.ChatBurst = 3; c.ChatRate = 0.01 })
	alice, _ := joinBare(t, e, "r", "alice", MediaState{})
	bob, _ := joinBare(t, e, "r", "bob", MediaState{})
	for i := range 3 {
		if _, err := alice.SendChat("hi"); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, err := alice.SendChat("hi"); !errors.Is(err, ErrChatRateLimited) {
		t.Errorf("4th message: %v, want ErrChatRateLimited", err)
	}
	if _, err := bob.SendChat("hi"); err != nil {
		t.Errorf("bob's own budget: %v", err)
	}
}

// TestLevelMeter: loud packets make a tick active, a participant stays
// speaking speakingHold after its last active tick, quiet or missing
// levels count for nothing.
func TestLevelMeter(t *testing.T) {
	const id = 3
	pkt := func(level byte, withExt bool) *rtp.Header {
		h := &rtp.Header{Version: 2}
		if withExt {
			if err := h.SetExtension(id, []byte{0x80 | level}); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	start := time.Unix(1000, 0)
	cases := []struct {
		name   string
		levels []byte // per tick: the levels of 5 packets (127: silence)
		ext    bool
		want   []bool
	}{
		{"silence", []byte{127, 127, 127}, true, []bool{false, false, false}},
		{"voice then silence", []byte{20, 127, 127, 127, 127, 127, 127, 127, 127}, true,
			[]bool{true, true, true, true, true, true, false, false, false}},
		{"quiet noise", []byte{70, 70}, true, []bool{false, false}},
		{"no extension", []byte{10, 10}, false, []bool{false, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newLevelMeter(id)
			for i, lv := range c.levels {
				for range 5 {
					m.observe(pkt(lv, c.ext))
				}
				if got := m.tick(start.Add(time.Duration(i) * speakingTick)); got != c.want[i] {
					t.Errorf("tick %d: speaking %v, want %v", i, got, c.want[i])
				}
			}
		})
	}
	if allocs := testing.AllocsPerRun(100, func() { newLevelMeter(id).observe(pkt(10, true)) }); allocs > 3 {
		t.Logf("allocs %v", allocs)
	}
}
