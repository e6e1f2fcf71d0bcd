package web

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/confab/confab/sfu"
)

// TestSignalingBadInput sends one kind of bad input per case and checks the
// error code; the connection must stay usable afterwards (a join and a
// ping still work, unless the case is about the join itself).
func TestSignalingBadInput(t *testing.T) {
	env := newEnv(t, envOptions{})
	tests := []struct {
		name      string
		joinFirst bool   // join before sending the bad input
		raw       string // the bad message
		want      string // expected error code
	}{
		{name: "malformed json", raw: `{"v":1,"type":`, want: codeBadMessage},
		{name: "not an object", raw: `"join"`, want: codeBadMessage},
		{name: "missing field", raw: `{"v":1,"type":"join"}`, want: codeBadMessage},
		{name: "unknown type", raw: `{"v":1,"type":"teleport"}`, want: codeUnknownType},
		{name: "wrong version", raw: `{"v":5,"type":"join","name":"Al"}`, want: codeUnsupportedVersion},
		{name: "v2 join in a v1 session", joinFirst: true, raw: `{"v":2,"type":"join","name":"Again"}`, want: codeUnsupportedVersion},
		{name: "v2 ping in a v1 session", joinFirst: true, raw: `{"v":2,"type":"ping"}`, want: codeUnsupportedVersion},
		{name: "video-settings in v1", joinFirst: true, raw: `{"v":1,"type":"video-settings","settings":[]}`, want: codeUnknownType},
		{name: "missing version", raw: `{"type":"join","name":"Al"}`, want: codeUnsupportedVersion},
		{name: "publish before join", raw: `{"v":1,"type":"publish","sdp":{"type":"offer","sdp":"v=0"}}`, want: codeNotJoined},
		{name: "answer before join", raw: `{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":"v=0"}}`, want: codeNotJoined},
		{name: "candidate before join", raw: `{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`, want: codeNotJoined},
		{name: "ping before join", raw: `{"v":1,"type":"ping"}`, want: codeNotJoined},
		{name: "empty name", raw: `{"v":1,"type":"join","name":"   "}`, want: codeInvalidName},
		{name: "long name", raw: `{"v":1,"type":"join","name":"` + strings.Repeat("n", 65) + `"}`, want: codeInvalidName},
		{name: "control char name", raw: `{"v":1,"type":"join","name":"a\u0000b"}`, want: codeInvalidName},
		{name: "double join", joinFirst: true, raw: `{"v":1,"type":"join","name":"Again"}`, want: codeAlreadyJoined},
		{name: "garbage sdp", joinFirst: true, raw: `{"v":1,"type":"publish","sdp":{"type":"offer","sdp":"this is not sdp"}}`, want: codeInvalidSDP},
		{name: "answer as offer", joinFirst: true, raw: `{"v":1,"type":"publish","sdp":{"type":"answer","sdp":"v=0"}}`, want: codeInvalidSDP},
		{name: "unparsable answer", joinFirst: true, raw: `{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":"no sdp here"}}`, want: codeInvalidSDP},
		{name: "unsolicited answer", joinFirst: true, raw: `{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}}`, want: codeBadMessage},
		{name: "bad candidate target", joinFirst: true, raw: `{"v":1,"type":"candidate","target":"nobody","candidate":{"candidate":"x"}}`, want: codeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room := "bad-" + strings.ReplaceAll(tt.name, " ", "-")
			c := env.mustDial(room)
			if tt.joinFirst {
				c.send(map[string]any{"v": 1, "type": "join", "name": "Al"})
				c.expect(typeJoined)
			}
			c.sendRaw([]byte(tt.raw))
			c.expectError(tt.want)
			if !tt.joinFirst {
				c.send(map[string]any{"v": 1, "type": "join", "name": "Al"})
				c.expect(typeJoined)
			}
			c.ping()
		})
	}
}

func TestSignalingBinaryMessage(t *testing.T) {
	env := newEnv(t, envOptions{})
	c := env.mustDial("binary")
	ctx := t.Context()
	if err := c.conn.Write(ctx, websocket.MessageBinary, []byte(`{"v":1,"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(codeBadMessage)
}

func TestSignalingJoined(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{NodeID: "node-x"}})
	alice, aj := env.join("lobby-1", "  Alice ")
	if aj.ParticipantID == "" || aj.NodeID != "node-x" || aj.Room != "lobby-1" {
		t.Fatalf("joined = %+v", aj)
	}
	if aj.Participants == nil || aj.Producers == nil || len(aj.Participants) != 0 {
		t.Fatalf("first joined should list no one (as [] not null): %+v", aj)
	}

	bob, bj := env.join("lobby-1", "Bob")
	if len(bj.Participants) != 1 || bj.Participants[0].ID != aj.ParticipantID || bj.Participants[0].Name != "Alice" {
		t.Fatalf("Bob's joined should list Alice (trimmed name): %+v", bj.Participants)
	}
	pj := alice.expect(typeParticipantJoined)
	if pj.Participant == nil || pj.Participant.ID != bj.ParticipantID || pj.Participant.Name != "Bob" {
		t.Fatalf("participant-joined = %+v", pj.Participant)
	}

	bob.send(map[string]any{"v": 1, "type": "leave"})
	if code, _ := bob.expectClose(); code != websocket.StatusNormalClosure {
		t.Errorf("close after leave = %v, want %v", code, websocket.StatusNormalClosure)
	}
	pl := alice.expect(typeParticipantLeft)
	if pl.Participant == nil || pl.Participant.ID != bj.ParticipantID {
		t.Fatalf("participant-left = %+v", pl.Participant)
	}

	// A dropped connection (no leave) also removes the participant.
	carol, cj := env.join("lobby-1", "Carol")
	alice.expect(typeParticipantJoined)
	_ = carol.conn.CloseNow()
	pl = alice.expect(typeParticipantLeft)
	if pl.Participant.ID != cj.ParticipantID {
		t.Fatalf("participant-left = %+v, want Carol", pl.Participant)
	}
	waitFor(t, "room to have only Alice", func() bool { return localParticipants(env.engine, "lobby-1") == 1 })
}

func TestSignalingRoomFull(t *testing.T) {
	env := newEnv(t, envOptions{engine: func(c *sfu.Config) { c.MaxParticipantsPerRoom = 1 }})
	first, _ := env.join("tiny", "First")
	c := env.mustDial("tiny")
	c.send(map[string]any{"v": 1, "type": "join", "name": "Second"})
	m := c.expectError(codeRoomFull)
	if want := `room "tiny" is full`; !strings.Contains(m.Message, want) {
		t.Errorf("room-full message %q does not say %q", m.Message, want)
	}
	// Still not joined, and the session is usable.
	c.send(map[string]any{"v": 1, "type": "ping"})
	c.expectError(codeNotJoined)
	// Once the room has space again the same connection may join.
	first.send(map[string]any{"v": 1, "type": "leave"})
	first.expectClose()
	waitFor(t, "the room to empty", func() bool { return localParticipants(env.engine, "tiny") == 0 })
	c.send(map[string]any{"v": 1, "type": "join", "name": "Second"})
	c.expect(typeJoined)
}

func TestSignalingTooManyRooms(t *testing.T) {
	env := newEnv(t, envOptions{engine: func(c *sfu.Config) { c.MaxRooms = 1 }})
	first, _ := env.join("only-room", "First")
	env.join("only-room", "Second") // joining an existing room is fine
	c := env.mustDial("other-room")
	c.send(map[string]any{"v": 1, "type": "join", "name": "Third"})
	m := c.expectError(codeTooManyRooms)
	if want := `cannot open room "other-room"`; !strings.Contains(m.Message, want) {
		t.Errorf("too-many-rooms message %q does not say %q", m.Message, want)
	}
	first.ping()
	if n := len(env.engine.Rooms()); n != 1 {
		t.Errorf("%d rooms, want 1", n)
	}
}

func TestSignalingOversizedMessage(t *testing.T) {
	env := newEnv(t, envOptions{})
	c, _ := env.join("big", "Al")
	pad := strings.Repeat("x", DefaultMaxMessageBytes)
	c.sendRaw([]byte(`{"v":1,"type":"ping","pad":"` + pad + `"}`))
	if code, reason := c.expectClose(); code != websocket.StatusMessageTooBig {
		t.Fatalf("close = %v %q, want %v", code, reason, websocket.StatusMessageTooBig)
	}
	waitFor(t, "participant to be closed", func() bool { return localParticipants(env.engine, "big") == 0 })
}

func TestSignalingMessageAtLimit(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{MaxMessageBytes: 4096}})
	c, _ := env.join("limit", "Al")
	msg := `{"v":1,"type":"ping","pad":""}`
	msg = `{"v":1,"type":"ping","pad":"` + strings.Repeat("x", 4096-len(msg)) + `"}`
	if len(msg) != 4096 {
		t.Fatalf("test message has %d bytes", len(msg))
	}
	c.sendRaw([]byte(msg))
	c.expect(typePong)
}

func TestSignalingOrigin(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{AllowedOrigins: []string{"friend.example"}}})
	host := strings.TrimPrefix(env.http.URL, "http://")
	tests := []struct {
		name   string
		origin string
		wantOK bool
	}{
		{"no origin (non-browser)", "", true},
		{"same host", "http://" + host, true},
		{"allowed origin", "https://friend.example", true},
		{"foreign origin", "https://evil.example", false},
		{"lookalike origin", "https://friend.example.evil.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.origin != "" {
				hdr.Set("Origin", tt.origin)
			}
			c, resp, err := env.dial("origin", hdr)
			if !tt.wantOK {
				if err == nil {
					t.Fatal("foreign origin was accepted")
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("refusal = %v (resp %v), want 403", err, resp)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.send(map[string]any{"v": 1, "type": "join", "name": "Al"})
			c.expect(typeJoined)
		})
	}
}

// TestSignalingSlowClient stalls the server's writes to one client (as if
// it stopped reading and the TCP buffers were full) and checks that its
// outbox overflows into a StatusPolicyViolation close and a closed
// participant, while the room keeps serving another client promptly.
func TestSignalingSlowClient(t *testing.T) {
	const outbox = 2
	env := newEnv(t, envOptions{cfg: Config{OutboxSize: outbox, WriteTimeout: 10 * waitTimeout}})
	good, _ := env.join("slow", "Good")
	slow, sj := env.join("slow", "Slow")
	good.expect(typeParticipantJoined)

	gate := env.gates.conn(t, slow.local)
	gate.hold()
	// The first pong blocks the writer, the next ones fill the outbox, one
	// more overflows it. The slow client reads nothing meanwhile.
	for range outbox + 3 {
		slow.send(map[string]any{"v": 1, "type": "ping"})
	}

	// While the slow client is still stalled: the room goes on.
	pl := good.expect(typeParticipantLeft)
	if pl.Participant == nil || pl.Participant.ID != sj.ParticipantID {
		t.Fatalf("participant-left = %+v, want the slow client", pl.Participant)
	}
	good.ping()
	late, _ := env.join("slow", "Late")
	good.expect(typeParticipantJoined)
	late.ping()

	gate.release()
	code, reason := slow.expectClose()
	if code != websocket.StatusPolicyViolation || reason != reasonSlowClient {
		t.Fatalf("slow client closed with %v %q, want %v %q", code, reason, websocket.StatusPolicyViolation, reasonSlowClient)
	}
}

// TestSignalingBadClientIsolation checks that one misbehaving client never
// disturbs a well-behaved client in the same room.
func TestSignalingBadClientIsolation(t *testing.T) {
	env := newEnv(t, envOptions{})
	good, gj := env.join("shared", "Good")

	bad, bj := env.join("shared", "Bad")
	good.expect(typeParticipantJoined)
	for _, raw := range []string{
		`{{{`,
		`{"v":9,"type":"join"}`,
		`{"v":1,"type":"join","name":"Again"}`,
		`{"v":1,"type":"publish","sdp":{"type":"offer","sdp":"garbage"}}`,
		`{"v":1,"type":"candidate","target":"subscriber","candidate":{"candidate":"garbage"}}`,
		`{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":"garbage"}}`,
	} {
		bad.sendRaw([]byte(raw))
		if m := bad.expect(typeError); m.Code == codeInternal {
			t.Errorf("%s: got internal error %q", raw, m.Message)
		}
		good.ping()
	}
	// Finally it sends an oversized message and gets kicked out.
	bad.sendRaw([]byte(`{"v":1,"type":"ping","pad":"` + strings.Repeat("x", DefaultMaxMessageBytes) + `"}`))
	if code, _ := bad.expectClose(); code != websocket.StatusMessageTooBig {
		t.Fatalf("bad client closed with %v", code)
	}
	if pl := good.expect(typeParticipantLeft); pl.Participant.ID != bj.ParticipantID {
		t.Fatalf("participant-left = %+v", pl.Participant)
	}

	// The good client is still fully functional.
	good.ping()
	_, nj := env.join("shared", "Newcomer")
	if len(nj.Participants) != 1 || nj.Participants[0].ID != gj.ParticipantID {
		t.Fatalf("newcomer sees %+v, want only Good", nj.Participants)
	}
	good.expect(typeParticipantJoined)
}

// TestServerCloseEndsSessions checks Close: sessions get StatusGoingAway,
// participants are closed, and Close returns after everything stopped.
func TestServerCloseEndsSessions(t *testing.T) {
	env := newEnv(t, envOptions{})
	a, _ := env.join("closing", "A")
	b, _ := env.join("closing", "B")
	a.expect(typeParticipantJoined)

	// Read concurrently so the clients answer the close handshake.
	type result struct {
		code   websocket.StatusCode
		reason string
	}
	results := make(chan result, 2)
	for _, c := range []*wsClient{a, b} {
		go func() {
			for {
				if _, err := c.read(); err != nil {
					var ce websocket.CloseError
					errors.As(err, &ce)
					results <- result{ce.Code, ce.Reason}
					return
				}
			}
		}()
	}
	if err := env.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close returned: every session and participant is gone already.
	if n := localParticipants(env.engine, "closing"); n != 0 {
		t.Errorf("%d participants left after Close", n)
	}
	for range 2 {
		if r := <-results; r.code != websocket.StatusGoingAway || r.reason != reasonShutdown {
			t.Errorf("close = %v %q, want %v %q", r.code, r.reason, websocket.StatusGoingAway, reasonShutdown)
		}
	}
	if err := env.srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestEngineEndsParticipant: when the engine ends a participant (here by
// shutting down), the session closes the socket with StatusGoingAway.
func TestEngineEndsParticipant(t *testing.T) {
	env := newEnv(t, envOptions{})
	c, _ := env.join("engine-end", "Al")
	if err := env.engine.Close(); err != nil {
		t.Fatalf("engine Close: %v", err)
	}
	if code, reason := c.expectClose(); code != websocket.StatusGoingAway || reason != reasonParticipantEnd {
		t.Fatalf("close = %v %q, want %v %q", code, reason, websocket.StatusGoingAway, reasonParticipantEnd)
	}
}
