package web

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// TestSignalingVersion2 runs a version 2 client next to a version 1 one in
// the same room: each gets every message in its own version, the version 2
// client may send video-settings (for known and unknown producers) and is
// told off in version 2 for bad ones, and a message of the other version
// is refused in either session.
func TestSignalingVersion2(t *testing.T) {
	peers := newPeerList(Peer{ID: "test-node", URL: "http://127.0.0.1:1"}, Peer{ID: "n2", URL: "http://127.0.0.2:2"})
	env := newEnv(t, envOptions{deps: Deps{Peers: peers.get}})

	// Before the join, errors are answered in the message's version.
	alice := env.mustDial("v2")
	alice.v = protocolV2
	alice.send(map[string]any{"v": 2, "type": "ping"})
	alice.expectError(codeNotJoined)
	alice.send(map[string]any{"v": 2, "type": "join", "name": ""})
	alice.expectError(codeInvalidName)
	alice.send(map[string]any{"v": 2, "type": "join", "name": "Alice"})
	if aj := alice.expect(typeJoined); aj.ParticipantID == "" {
		t.Fatalf("joined = %+v", aj)
	}
	alice.ping()

	bob, _ := env.join("v2", "Bob") // version 1
	alice.expect(typeParticipantJoined)

	// A remote producer (as piped in by the cluster): both are told, each
	// in its version.
	r := env.engine.Room("v2")
	prod, err := r.AddProducer(sfu.ProducerInfo{
		ID: "remote-video", Kind: sfu.KindVideo, ParticipantID: "remote-p", ParticipantName: "Remote",
		Origin: "n2", Remote: true, Codec: sfu.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	}, nil)
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	defer prod.Close()
	if m := alice.expect(typeProducerAdded); m.Producer == nil || m.Producer.ID != "remote-video" {
		t.Fatalf("alice: producer-added = %+v", m.Producer)
	}
	if m := bob.expect(typeProducerAdded); m.Producer == nil || m.Producer.ID != "remote-video" {
		t.Fatalf("bob: producer-added = %+v", m.Producer)
	}

	// Valid video-settings are not answered; the ping after them proves
	// no error came back.
	for _, settings := range []string{
		`[{"producerId":"remote-video","width":640,"height":360,"visible":true}]`,
		`[{"producerId":"remote-video","width":0,"height":0,"visible":false},{"producerId":"not-yet-known","width":320,"height":180,"visible":true}]`,
		`[]`,
	} {
		alice.sendRaw([]byte(`{"v":2,"type":"video-settings","settings":` + settings + `}`))
		alice.ping()
	}

	tests := []struct {
		name string
		c    *wsClient
		raw  string
		want string
	}{
		{"bad entry", alice, `{"v":2,"type":"video-settings","settings":[{"producerId":"","width":1,"height":1,"visible":true}]}`, codeBadMessage},
		{"too large", alice, `{"v":2,"type":"video-settings","settings":[{"producerId":"P","width":16385,"height":1,"visible":true}]}`, codeBadMessage},
		{"too many", alice, `{"v":2,"type":"video-settings","settings":[` +
			strings.Repeat(`{"producerId":"P","width":1,"height":1,"visible":true},`, maxVideoSettings) +
			`{"producerId":"P","width":1,"height":1,"visible":true}]}`, codeBadMessage},
		{"v1 message in v2 session", alice, `{"v":1,"type":"ping"}`, codeUnsupportedVersion},
		{"v2 message in v1 session", bob, `{"v":2,"type":"video-settings","settings":[]}`, codeUnsupportedVersion},
		{"video-settings in v1 session", bob, `{"v":1,"type":"video-settings","settings":[]}`, codeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.sendRaw([]byte(tt.raw))
			tt.c.expectError(tt.want) // in the client's version
			tt.c.ping()
		})
	}

	// Drain: each session gets "move" in its version.
	env.srv.Drain("upgrade")
	for _, c := range []*wsClient{alice, bob} {
		if m := c.expectMove(); m.Reason != moveReasonDraining {
			t.Errorf("move = %+v", m)
		}
	}
	alice.send(map[string]any{"v": 2, "type": "leave"})
	if code, _ := alice.expectClose(); code != websocket.StatusNormalClosure {
		t.Errorf("close after leave = %v", code)
	}
}

// TestSessionEncodings feeds an engine "encodings" event to a version 2 and
// a version 1 session (no sockets): the first queues it as "encodings"
// with "v":2, the second drops it.
func TestSessionEncodings(t *testing.T) {
	engine := newEngine(t, nil)
	h := newFuzzHarness(t, engine, "encodings")
	defer h.close()
	a, b := h.sessions[0].s, h.sessions[1].s
	a.receive(websocket.MessageText, []byte(`{"v":2,"type":"join","name":"Alice"}`))
	b.receive(websocket.MessageText, []byte(`{"v":1,"type":"join","name":"Bob"}`))

	// queued returns the types of the messages queued so far, and the last
	// one of type typ.
	queued := func(s *session, typ string) ([]string, []byte) {
		var (
			types []string
			last  []byte
		)
		for {
			select {
			case m := <-s.out:
				var env struct {
					V    int    `json:"v"`
					Type string `json:"type"`
				}
				if err := json.Unmarshal(m, &env); err != nil {
					t.Fatalf("queued %s: %v", m, err)
				}
				if env.V != s.protocol() {
					t.Errorf("version %d session queued %s", s.protocol(), m)
				}
				types = append(types, env.Type)
				if env.Type == typ {
					last = m
				}
				continue
			default:
			}
			return types, last
		}
	}
	queued(a, "")
	queued(b, "")

	ev := sfu.Event{Type: sfu.EventEncodings, Encodings: &sfu.EncodingsInfo{
		ProducerID: "own-video", Mid: "1",
		Layers: []sfu.LayerActive{{RID: "q", Active: true}, {RID: "h", Active: true}, {RID: "f", Active: false}},
	}}
	a.HandleEvent(ev)
	b.HandleEvent(ev)

	want := `{"v":2,"type":"encodings","producerId":"own-video","mid":"1",` +
		`"layers":[{"rid":"q","active":true},{"rid":"h","active":true},{"rid":"f","active":false}]}`
	if types, got := queued(a, typeEncodings); string(got) != want {
		t.Errorf("version 2 session queued %v, last encodings %s; want %s", types, got, want)
	}
	if types, got := queued(b, typeEncodings); got != nil || len(types) != 0 {
		t.Errorf("version 1 session queued %v (%s), want nothing", types, got)
	}
}
