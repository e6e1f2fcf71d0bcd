package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// The fuzz targets below run their seed corpus (f.Add seeds plus the files
// in testdata/fuzz/<FuzzName>/) as ordinary tests in `go test`; to search
// for new failing inputs run e.g.
//
//	go test -run='^$' -fuzz=FuzzParseMessage -fuzztime=60s ./web/
//	go test -run='^$' -fuzz=FuzzSession -fuzztime=60s ./web/
//
// (or `make fuzz`). A failing input is written to testdata/fuzz and must be
// committed with the fix.

// clientCodes are the error codes a client may ever see (never "internal":
// nothing a client sends may make the server fail).
var clientCodes = map[string]bool{
	codeBadMessage: true, codeUnknownType: true, codeUnsupportedVersion: true,
	codeNotJoined: true, codeAlreadyJoined: true, codeInvalidName: true,
	codeInvalidSDP: true, codeRoomFull: true, codeTooManyRooms: true,
	codeRateLimited: true, codeDraining: true,
}

// parseCodes are the codes parseMessage itself may produce.
var parseCodes = map[string]bool{
	codeBadMessage: true, codeUnknownType: true, codeUnsupportedVersion: true, codeInvalidSDP: true,
}

// serverTypes are the server -> client message types.
var serverTypes = map[string]bool{
	typeJoined: true, typePublishAnswer: true, typeSubscriberOffer: true, typeCandidate: true,
	typeParticipantJoined: true, typeParticipantLeft: true, typeProducerAdded: true,
	typeProducerRemoved: true, typeError: true, typePong: true, typeMove: true,
	typeEncodings: true,
}

// maxErrorText bounds the text of an error sent to a client: client input
// is only ever echoed truncated.
const maxErrorText = 512

// wireMsg encodes a client message of protocol version 1.
func wireMsg(fields map[string]any) string {
	return wireMsgV(protocolV1, fields)
}

// wireMsgV encodes a client message of protocol version v.
func wireMsgV(v int, fields map[string]any) string {
	fields["v"] = v
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// messageSeeds are interesting single client messages: valid ones of every
// type, malformed JSON, wrong types, huge numbers, unicode names, hostile
// SDPs.
func messageSeeds(tb testing.TB) []string {
	offer := pionOffer(tb)
	seeds := []string{
		wireMsg(map[string]any{"type": "join", "name": "Alice"}),
		wireMsg(map[string]any{"type": "join", "name": "  Zoë 🎥 山田  "}),
		wireMsg(map[string]any{"type": "join", "name": "\u202eevil"}),
		wireMsg(map[string]any{"type": "join", "name": strings.Repeat("é", 65)}),
		wireMsg(map[string]any{"type": "publish", "sdp": map[string]string{"type": "offer", "sdp": offer}}),
		wireMsg(map[string]any{"type": "publish", "sdp": map[string]string{"type": "offer", "sdp": chromeOffer}}),
		wireMsg(map[string]any{"type": "publish", "sdp": map[string]string{"type": "answer", "sdp": offer}}),
		wireMsg(map[string]any{"type": "subscriber-answer", "sdp": map[string]string{"type": "answer", "sdp": strings.ReplaceAll(chromeOffer, "sendonly", "recvonly")}}),
		wireMsg(map[string]any{"type": "candidate", "target": "publisher", "candidate": map[string]any{
			"candidate": "candidate:842163049 1 udp 1677729535 192.0.2.7 52311 typ srflx raddr 0.0.0.0 rport 0 generation 0",
			"sdpMid":    "0", "sdpMLineIndex": 0, "usernameFragment": "Qk2w"}}),
		wireMsg(map[string]any{"type": "candidate", "target": "subscriber", "candidate": map[string]any{"candidate": ""}}),
		`{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMLineIndex":99999999999999999999}}`,
		`{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 99999999999999999999 127.0.0.1 99999 typ host"}}`,
		`{"v":1,"type":"ping"}`,
		`{"v":1,"type":"leave"}`,
		`{"v":1e400,"type":"ping"}`,
		`{"v":1.0,"type":"ping"}`,
		`{"v":100000000000000000000000000000,"type":"ping"}`,
		`{"v":-1,"type":"ping"}`,
		`{"v":1,"type":"ping","v":2}`,
		`{"v":1,"type":"join","name":"a","name":"b"}`,
		`{"v":1,"type":"join","name":null}`,
		`{"v":1,"type":"publish","sdp":null}`,
		`{"v":1,"type":"publish","sdp":{"type":"offer","sdp":7}}`,
		`{"v":1,"type":"candidate","target":"publisher","candidate":[]}`,
		`{"v":1,"type":"\u0000"}`,
		`{"v":1,"type":"join","name":"\ud800"}`,
		`{"v":1,"type":"join","name":"` + strings.Repeat(`\u0041`, 5000) + `"}`,
		`[{"v":1,"type":"ping"}]`,
		`{"v":1,"type":"ping"`,
		`{"v":1,"type":"ping"} trailing`,
		"\xff\xfe{\"v\":1}",
		``,
		`null`,
		strings.Repeat("[", 10000),
		wireMsgV(2, map[string]any{"type": "join", "name": "Alice"}),
		wireMsgV(2, map[string]any{"type": "video-settings", "settings": []map[string]any{
			{"producerId": "Yq1_c7Rk2PzT0aMn", "width": 320, "height": 180, "visible": true},
			{"producerId": "9aKf3Wm1_Zr8pQ2c", "width": 0, "height": 0, "visible": false},
		}}),
		`{"v":2,"type":"video-settings","settings":[{"producerId":"P","width":-1,"height":1e9,"visible":"yes"}]}`,
		`{"v":2,"type":"video-settings","settings":[null,{},[]]}`,
		`{"v":1,"type":"video-settings","settings":[]}`,
		`{"v":2,"type":"ping"}`,
		`{"v":3,"type":"ping"}`,
		`{"v":3,"type":"join","name":"Al","audioMuted":true,"videoMuted":false}`,
		`{"v":3,"type":"media-state","audioMuted":true,"videoMuted":true}`,
		`{"v":3,"type":"media-state","audioMuted":"yes"}`,
		`{"v":3,"type":"chat","text":"<img src=x onerror=alert(1)>"}`,
		`{"v":3,"type":"chat","text":""}`,
		`{"v":3,"type":"chat","text":"\u0000\u202e"}`,
		`{"v":3,"type":"publish","sdp":{"type":"offer","sdp":"v=0"},"sources":{"0":"screen","1":"nope"}}`,
	}
	for _, sdp := range hostileSDPs(tb) {
		seeds = append(seeds, wireMsg(map[string]any{"type": "publish", "sdp": map[string]string{"type": "offer", "sdp": sdp}}))
	}
	return seeds
}

// FuzzParseMessage feeds arbitrary bytes to the message decoder (and the
// SDP checks behind it): it must never panic, every error must be a client
// error with a bounded text, and every accepted message must be a client
// message type with the fields that type requires.
func FuzzParseMessage(f *testing.F) {
	for _, s := range messageSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := parseMessage(data, 0)
		if err != nil {
			var pe *protocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			if code := wireCode(err); !parseCodes[code] {
				t.Fatalf("error %v has code %q", err, code)
			}
			if n := len(err.Error()); n > maxErrorText {
				t.Fatalf("error text of %d bytes: %.100s...", n, err.Error())
			}
			return
		}
		// Accepted: the JSON decodes the same way on its own.
		var env struct {
			V    int    `json:"v"`
			Type string `json:"type"`
		}
		if err := json.Unmarshal(data, &env); err != nil || env.V != msg.V || env.Type != msg.Type ||
			msg.V < protocolV1 || msg.V > protocolLatest {
			t.Fatalf("accepted %q as %q v%d, but it decodes to %+v (%v)", data, msg.Type, msg.V, env, err)
		}
		// A session of that version accepts it too, one of the other
		// version refuses it for its version.
		if _, err := parseMessage(data, msg.V); err != nil {
			t.Fatalf("accepted %q before the join but not in a version %d session: %v", data, msg.V, err)
		}
		other := protocolV1
		if msg.V == protocolV1 {
			other = protocolV2
		}
		if _, err := parseMessage(data, other); wireCode(err) != codeUnsupportedVersion {
			t.Fatalf("version %d message %q in a session of the other version: %v", msg.V, data, err)
		}
		switch msg.Type {
		case typeJoin:
			if !utf8.ValidString(msg.Name) && json.Valid(data) {
				t.Fatalf("join name %q is not valid UTF-8", msg.Name)
			}
		case typePublish, typeSubscriberAnswer:
			want := webrtc.SDPTypeOffer
			if msg.Type == typeSubscriberAnswer {
				want = webrtc.SDPTypeAnswer
			}
			if msg.SDP.Type != want || msg.SDP.SDP == "" {
				t.Fatalf("%s accepted with sdp %+v", msg.Type, msg.SDP)
			}
			// The session checks the SDP next: it must not panic either,
			// and may only refuse it as invalid-sdp.
			if err := checkSDP(msg.Type, want, msg.SDP.SDP); err != nil {
				if wireCode(err) != codeInvalidSDP || len(err.Error()) > maxErrorText {
					t.Fatalf("checkSDP: %v (code %s)", err, wireCode(err))
				}
			}
			_ = matchOffer(msg.Type, msg.SDP.SDP, []string{"0", "1"})
			for mid, src := range msg.Sources {
				if mid == "" || len(mid) > maxMidLen || !sfu.ValidSource(src) || len(msg.Sources) > sfu.MaxSources {
					t.Fatalf("publish accepted with sources %q", msg.Sources)
				}
			}
		case typeCandidate:
			if msg.Target != sfu.TargetPublisher && msg.Target != sfu.TargetSubscriber {
				t.Fatalf("candidate accepted with target %q", msg.Target)
			}
		case typeVideoSettings:
			if msg.V < protocolV2 || len(msg.Settings) > maxVideoSettings {
				t.Fatalf("video-settings accepted in version %d with %d entries", msg.V, len(msg.Settings))
			}
			for _, vs := range msg.Settings {
				s := vs.Settings
				if vs.ProducerID == "" || len(vs.ProducerID) > maxProducerIDLen ||
					s.Width < 0 || s.Width > maxVideoDimension || s.Height < 0 || s.Height > maxVideoDimension {
					t.Fatalf("video-settings accepted with entry %+v", vs)
				}
			}
		case typeMediaState, typeChat:
			if msg.V < protocolV3 {
				t.Fatalf("%s accepted in version %d", msg.Type, msg.V)
			}
		case typePing, typeLeave:
		default:
			t.Fatalf("accepted unknown type %q", msg.Type)
		}
	})
}

// FuzzSession drives the per-connection state machine (session.receive:
// rate limit, framing, decoding, join/publish/answer/candidate/leave
// handling, draining) with arbitrary message sequences from two clients in
// the same room of a real engine, without sockets.
//
// The input is a script of lines. A line starting with 'a' is a text frame
// from client A (the rest of the line), 'b' from client B, 'x' a binary
// frame from A; "!drain" drains the server, "!tick" advances the rate
// limiters' clock by one second, "!producer" adds a remote producer to the
// room (as a cluster pipe does: the joined clients get producer-added and
// a subscriber offer) and "!unproducer" removes the oldest one; any other
// line is a text frame from A.
//
// Invariants: no panic; every server message is a JSON object with a
// server message type and v=1 or 2, the session's version once joined; error codes are client codes (never "internal")
// with a bounded text; "joined" comes at most once per connection and
// before anything but errors; after the script every participant has left
// and the room is gone.
func FuzzSession(f *testing.F) {
	engine := newEngine(f, nil)
	for _, s := range sessionSeeds(f) {
		f.Add([]byte(s))
	}
	var rooms atomic.Int64
	f.Fuzz(func(t *testing.T, script []byte) {
		h := newFuzzHarness(t, engine, fmt.Sprintf("fuzz-%d", rooms.Add(1)))
		for _, line := range bytes.Split(script, []byte("\n")) {
			h.step(line)
		}
		h.close()
	})
}

// sessionSeeds are scripts for FuzzSession.
func sessionSeeds(tb testing.TB) []string {
	offer := pionOffer(tb)
	join := func(c, name string) string { return c + wireMsg(map[string]any{"type": "join", "name": name}) }
	joinV2 := func(c, name string) string { return c + wireMsgV(2, map[string]any{"type": "join", "name": name}) }
	publish := func(c, sdp string) string {
		return c + wireMsg(map[string]any{"type": "publish", "sdp": map[string]string{"type": "offer", "sdp": sdp}})
	}
	answer := func(c, sdp string) string {
		return c + wireMsg(map[string]any{"type": "subscriber-answer", "sdp": map[string]string{"type": "answer", "sdp": sdp}})
	}
	answer2 := func(c, sdp string) string {
		return c + wireMsgV(2, map[string]any{"type": "subscriber-answer", "sdp": map[string]string{"type": "answer", "sdp": sdp}})
	}
	// An answer to a subscriber offer carrying one remote VP8 producer.
	subAnswer := "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n" +
		"a=setup:active\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
	subCand := `{"v":1,"type":"candidate","target":"subscriber","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 9 typ host","sdpMid":"0"}}`
	cand := `{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 9 typ host","sdpMid":"0"}}`
	lines := func(ls ...string) string { return strings.Join(ls, "\n") }
	var flood []string
	flood = append(flood, join("a", "Flood"))
	for range 160 {
		flood = append(flood, `a{"v":1,"type":"ping"}`)
	}
	seeds := []string{
		lines(join("a", "Alice"), `a{"v":1,"type":"ping"}`, `a{"v":1,"type":"leave"}`, `a{"v":1,"type":"ping"}`),
		lines(`a{"v":1,"type":"ping"}`, join("a", ""), join("a", "Alice"), join("a", "Again")),
		lines(join("a", "Alice"), publish("a", offer), "a"+cand, publish("a", offer), answer("a", offer)),
		lines(join("a", "Alice"), join("b", "Bob"), publish("a", chromeOffer), publish("b", offer), `b{"v":1,"type":"leave"}`, `a{"v":1,"type":"ping"}`),
		lines(join("a", "Alice"), join("b", "Bob"), "!drain", join("b", "Late"), `a{"v":1,"type":"ping"}`, `b{"v":1,"type":"ping"}`),
		lines("!drain", join("a", "Alice")),
		lines(join("a", "Zoë 🎥"), `x{"v":1,"type":"ping"}`, `a{"v":2,"type":"ping"}`, `a{"v":1,"type":"teleport"}`),
		lines(join("a", "Alice"), `a{"v":1,"type":"candidate","target":"subscriber","candidate":{"candidate":"garbage"}}`),
		lines(`a{"v":2,"type":"ping"}`, joinV2("a", ""), joinV2("a", "Alice"), joinV2("b", "Bob"), publish("b", offer),
			`a{"v":2,"type":"video-settings","settings":[{"producerId":"remote-producer-0","width":640,"height":360,"visible":true}]}`,
			"!producer", answer2("a", subAnswer),
			`a{"v":2,"type":"video-settings","settings":[{"producerId":"remote-producer-0","width":0,"height":0,"visible":false},{"producerId":"nobody","width":1,"height":1,"visible":true}]}`,
			`a{"v":2,"type":"video-settings","settings":[{"producerId":"","width":1,"height":1,"visible":true}]}`,
			`a{"v":1,"type":"ping"}`, `b{"v":2,"type":"video-settings","settings":[]}`, "!drain", `a{"v":2,"type":"leave"}`),
		lines(joinV2("a", "Alice"), join("b", "Bob"), "!producer", `b{"v":2,"type":"ping"}`, `b{"v":1,"type":"video-settings","settings":[]}`, "!drain"),
		strings.Join(flood, "\n"),
		lines(append(flood[:60:60], "!tick", `a{"v":1,"type":"ping"}`)...),
		lines(join("a", "Alice"), "!producer", answer("a", subAnswer), "a"+subCand, "!producer", answer("a", subAnswer), "!unproducer", answer("a", subAnswer)),
		lines(join("a", "Alice"), "!producer", answer("a", chromeOffer), answer("a", offer), join("b", "Bob"), answer("b", subAnswer), "!unproducer", answer("b", subAnswer)),
		lines("!producer", join("a", "Alice"), "!producer", join("b", "Bob"), "!drain", answer("a", subAnswer), `b{"v":1,"type":"leave"}`),
	}
	for _, sdp := range hostileSDPs(tb) {
		seeds = append(seeds, lines(join("a", "Alice"), publish("a", sdp), answer("a", sdp), `a{"v":1,"type":"ping"}`))
	}
	return seeds
}

// fuzzHarness runs sessions of one room on a fresh Server without sockets.
type fuzzHarness struct {
	t         *testing.T
	engine    *sfu.Engine
	srv       *Server
	clock     *fakeClock
	room      string
	sessions  [2]*fuzzSession
	producers []*sfu.Producer
}

type fuzzSession struct {
	s         *session
	sawJoined bool
}

func newFuzzHarness(t *testing.T, engine *sfu.Engine, room string) *fuzzHarness {
	clock := newFakeClock()
	srv, err := New(Config{Logger: testLogger(), now: clock.now}, Deps{
		Engine: engine,
		Status: func(context.Context) (any, error) { return nil, nil },
		Peers: func(context.Context) []Peer {
			return []Peer{{ID: engine.NodeID(), URL: "http://127.0.0.1:1"}, {ID: "other", URL: "http://127.0.0.2:2"}}
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &fuzzHarness{t: t, engine: engine, srv: srv, clock: clock, room: room}
	for i := range h.sessions {
		if !srv.acquire() {
			t.Fatal("server closed")
		}
		s := newSession(srv, nil, room, "http://127.0.0.1:1", srv.log)
		srv.track(s)
		h.sessions[i] = &fuzzSession{s: s}
	}
	return h
}

// step executes one script line.
func (h *fuzzHarness) step(line []byte) {
	if len(line) == 0 {
		return
	}
	switch string(line) {
	case "!drain":
		h.srv.Drain("fuzz")
		h.drainAll()
		return
	case "!tick":
		h.clock.advance(time.Second)
		return
	case "!producer":
		if r := h.engine.Room(h.room); r != nil && len(h.producers) < 8 {
			n := len(h.producers)
			p, err := r.AddProducer(sfu.ProducerInfo{
				ID: fmt.Sprintf("remote-producer-%d", n), ParticipantID: fmt.Sprintf("remote-%d", n%2),
				ParticipantName: "Remote", Origin: "other", Remote: true,
				Codec: sfu.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			}, nil)
			if err != nil {
				h.t.Fatalf("AddProducer: %v", err)
			}
			h.producers = append(h.producers, p)
		}
		h.drainAll()
		return
	case "!unproducer":
		if len(h.producers) > 0 {
			h.producers[0].Close()
			h.producers = h.producers[1:]
		}
		h.drainAll()
		return
	}
	fs, typ, payload := h.sessions[0], websocket.MessageText, line[1:]
	switch line[0] {
	case 'a':
	case 'b':
		fs = h.sessions[1]
	case 'x':
		typ = websocket.MessageBinary
	default:
		payload = line
	}
	fs.s.receive(typ, payload)
	h.drainAll()
}

// drainAll checks and discards every queued server message.
func (h *fuzzHarness) drainAll() {
	h.t.Helper()
	for _, fs := range h.sessions {
		for {
			select {
			case b := <-fs.s.out:
				h.check(fs, b)
				continue
			default:
			}
			break
		}
	}
}

// check verifies one server message.
func (h *fuzzHarness) check(fs *fuzzSession, b []byte) {
	h.t.Helper()
	var m struct {
		V       *int    `json:"v"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Nodes   *[]Peer `json:"nodes"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		h.t.Fatalf("server message is not a JSON object: %s (%v)", b, err)
	}
	if m.V == nil || (*m.V != protocolV1 && *m.V != protocolV2) || !serverTypes[m.Type] {
		h.t.Fatalf("bad server message %s", b)
	}
	if fs.sawJoined && *m.V != fs.s.protocol() {
		h.t.Fatalf("version %d session sent %s", fs.s.protocol(), b)
	}
	switch m.Type {
	case typeJoined:
		if fs.sawJoined {
			h.t.Fatalf("second joined on one connection: %s", b)
		}
		fs.sawJoined = true
		if m.Nodes == nil || len(*m.Nodes) == 0 {
			h.t.Fatalf("joined without nodes: %s", b)
		}
	case typeError:
		if !clientCodes[m.Code] || m.Message == "" || len(m.Message) > maxErrorText {
			h.t.Fatalf("bad error message (code %q, %d bytes): %.300s", m.Code, len(m.Message), b)
		}
	default:
		if !fs.sawJoined {
			h.t.Fatalf("%s before joined: %.300s", m.Type, b)
		}
		if m.Type == typeMove && (m.Nodes == nil || len(*m.Nodes) != 1 || (*m.Nodes)[0].ID != "other") {
			h.t.Fatalf("move should list the other node only: %s", b)
		}
	}
}

// close ends both sessions the way run does, checks what they still had
// queued, and closes the server; the room must then be gone.
func (h *fuzzHarness) close() {
	h.t.Helper()
	for _, p := range h.producers {
		p.Close()
	}
	for _, fs := range h.sessions {
		fs.s.requestClose(websocket.StatusNormalClosure, "", false)
		fs.s.wg.Wait() // watch has closed the participant
		h.srv.untrack(fs.s)
		h.srv.sessions.Done()
	}
	if err := h.srv.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	if r := h.engine.Room(h.room); r != nil {
		h.t.Fatalf("room %s still open with %d participants", h.room, len(r.LocalParticipants()))
	}
}
