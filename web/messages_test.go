package web

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode string // "" = valid
		check    func(t *testing.T, m inbound)
	}{
		{name: "join", in: `{"v":1,"type":"join","name":"Al"}`, check: func(t *testing.T, m inbound) {
			if m.Type != typeJoin || m.Name != "Al" {
				t.Errorf("got %+v", m)
			}
		}},
		{name: "ping", in: `{"v":1,"type":"ping"}`},
		{name: "leave", in: ` {"v":1,"type":"leave"}`},
		{name: "unknown fields ignored", in: `{"v":1,"type":"ping","extra":{"x":[1,2]}}`},
		{name: "publish", in: `{"v":1,"type":"publish","sdp":{"type":"offer","sdp":"v=0"}}`, check: func(t *testing.T, m inbound) {
			if m.SDP.Type != webrtc.SDPTypeOffer || m.SDP.SDP != "v=0" {
				t.Errorf("got %+v", m.SDP)
			}
		}},
		{name: "subscriber-answer", in: `{"v":1,"type":"subscriber-answer","sdp":{"type":"answer","sdp":"v=0"}}`},
		{name: "candidate", in: `{"v":1,"type":"candidate","target":"subscriber","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
			check: func(t *testing.T, m inbound) {
				if m.Target != sfu.TargetSubscriber || !strings.HasPrefix(m.Candidate.Candidate, "candidate:1") ||
					m.Candidate.SDPMid == nil || *m.Candidate.SDPMid != "0" {
					t.Errorf("got %+v", m)
				}
			}},
		{name: "v3 join with state", in: `{"v":3,"type":"join","name":"Al","audioMuted":true}`, check: func(t *testing.T, m inbound) {
			if !m.State.AudioMuted || m.State.VideoMuted {
				t.Errorf("got %+v", m.State)
			}
		}},
		{name: "v2 join ignores state", in: `{"v":2,"type":"join","name":"Al","audioMuted":true}`, check: func(t *testing.T, m inbound) {
			if m.State.AudioMuted {
				t.Errorf("got %+v", m.State)
			}
		}},
		{name: "media-state", in: `{"v":3,"type":"media-state","audioMuted":false,"videoMuted":true}`, check: func(t *testing.T, m inbound) {
			if m.State != (sfu.MediaState{VideoMuted: true}) {
				t.Errorf("got %+v", m.State)
			}
		}},
		{name: "chat", in: `{"v":3,"type":"chat","text":"<b>hi</b>"}`, check: func(t *testing.T, m inbound) {
			if m.Text != "<b>hi</b>" {
				t.Errorf("got %q", m.Text)
			}
		}},
		{name: "publish with sources", in: `{"v":3,"type":"publish","sdp":{"type":"offer","sdp":"v=0"},"sources":{"0":"microphone","2":"screen"}}`,
			check: func(t *testing.T, m inbound) {
				if m.Sources["2"] != "screen" || len(m.Sources) != 2 {
					t.Errorf("got %+v", m.Sources)
				}
			}},
		{name: "media-state in v2", in: `{"v":2,"type":"media-state","audioMuted":false,"videoMuted":true}`, wantCode: codeUnknownType},
		{name: "chat in v1", in: `{"v":1,"type":"chat","text":"x"}`, wantCode: codeUnknownType},
		{name: "media-state incomplete", in: `{"v":3,"type":"media-state","audioMuted":true}`, wantCode: codeBadMessage},
		{name: "media-state not bool", in: `{"v":3,"type":"media-state","audioMuted":1,"videoMuted":true}`, wantCode: codeBadMessage},
		{name: "chat without text", in: `{"v":3,"type":"chat"}`, wantCode: codeBadMessage},
		{name: "chat text not string", in: `{"v":3,"type":"chat","text":["x"]}`, wantCode: codeBadMessage},
		{name: "publish unknown source", in: `{"v":3,"type":"publish","sdp":{"type":"offer","sdp":"v=0"},"sources":{"0":"webcam"}}`, wantCode: codeBadMessage},
		{name: "publish empty mid", in: `{"v":3,"type":"publish","sdp":{"type":"offer","sdp":"v=0"},"sources":{"":"camera"}}`, wantCode: codeBadMessage},

		{name: "not json", in: `hello`, wantCode: codeBadMessage},
		{name: "truncated", in: `{"v":1,"type":"join"`, wantCode: codeBadMessage},
		{name: "array", in: `[1,2]`, wantCode: codeBadMessage},
		{name: "null", in: `null`, wantCode: codeBadMessage},
		{name: "empty", in: ``, wantCode: codeBadMessage},
		{name: "type not a string", in: `{"v":1,"type":7}`, wantCode: codeBadMessage},
		{name: "missing type", in: `{"v":1}`, wantCode: codeBadMessage},
		{name: "missing version", in: `{"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version 5", in: `{"v":5,"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version 0", in: `{"v":0,"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version 2.0", in: `{"v":2.0,"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version string", in: `{"v":"1","type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version 1.5", in: `{"v":1.5,"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "unknown type", in: `{"v":1,"type":"dance"}`, wantCode: codeUnknownType},
		{name: "server type from client", in: `{"v":1,"type":"joined"}`, wantCode: codeUnknownType},
		{name: "join without name", in: `{"v":1,"type":"join"}`, wantCode: codeBadMessage},
		{name: "join name not string", in: `{"v":1,"type":"join","name":5}`, wantCode: codeBadMessage},
		{name: "publish without sdp", in: `{"v":1,"type":"publish"}`, wantCode: codeBadMessage},
		{name: "publish sdp not object", in: `{"v":1,"type":"publish","sdp":"v=0"}`, wantCode: codeBadMessage},
		{name: "publish with answer", in: `{"v":1,"type":"publish","sdp":{"type":"answer","sdp":"v=0"}}`, wantCode: codeInvalidSDP},
		{name: "publish empty sdp", in: `{"v":1,"type":"publish","sdp":{"type":"offer","sdp":""}}`, wantCode: codeInvalidSDP},
		{name: "answer with offer", in: `{"v":1,"type":"subscriber-answer","sdp":{"type":"offer","sdp":"v=0"}}`, wantCode: codeInvalidSDP},
		{name: "candidate without target", in: `{"v":1,"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`, wantCode: codeBadMessage},
		{name: "candidate bad target", in: `{"v":1,"type":"candidate","target":"both","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`, wantCode: codeBadMessage},
		{name: "candidate garbage", in: `{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"garbage"}}`, wantCode: codeBadMessage},
		{name: "end of candidates", in: `{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":""}}`},
		{name: "mdns candidate", in: `{"v":1,"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 2122260223 4f5c1a2e-0b1c-4d3e-9f00-123456789abc.local 54321 typ host generation 0","sdpMid":"0"}}`},
		{name: "candidate missing", in: `{"v":1,"type":"candidate","target":"publisher"}`, wantCode: codeBadMessage},
		{name: "video-settings is version 2 only", in: `{"v":1,"type":"video-settings","settings":[]}`, wantCode: codeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.in), 0)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("parseMessage: %v", err)
				}
				if tt.check != nil {
					tt.check(t, m)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseMessage succeeded (%+v), want %s", m, tt.wantCode)
			}
			if got := wireCode(err); got != tt.wantCode {
				t.Fatalf("wireCode(%v) = %s, want %s", err, got, tt.wantCode)
			}
		})
	}
}

// TestParseMessageVersions checks which "v" is accepted before the join
// (want 0: 1 or 2) and after it (exactly the join's), the version reported
// in inbound.V (also with an error after the version check, so that the
// error is answered in it), and that version 1 sessions keep their error
// texts.
func TestParseMessageVersions(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     int    // the session's version, 0 before the join
		wantV    int    // inbound.V
		wantCode string // "" = valid
		wantText string // exact error text, "" = not checked
	}{
		{name: "v1 before join", in: `{"v":1,"type":"ping"}`, wantV: 1},
		{name: "v2 before join", in: `{"v":2,"type":"join","name":"Al"}`, wantV: 2},
		{name: "v2 spaced", in: `{"v": 2 ,"type":"ping"}`, wantV: 2},
		{name: "v1 in v1 session", in: `{"v":1,"type":"ping"}`, want: 1, wantV: 1},
		{name: "v2 in v2 session", in: `{"v":2,"type":"ping"}`, want: 2, wantV: 2},
		{name: "v2 in v1 session", in: `{"v":2,"type":"ping"}`, want: 1, wantCode: codeUnsupportedVersion,
			wantText: `unsupported protocol version 2: "v" must be 1`},
		{name: "v1 in v2 session", in: `{"v":1,"type":"ping"}`, want: 2, wantCode: codeUnsupportedVersion,
			wantText: `unsupported protocol version 1: "v" must be 2, the version this session joined with`},
		{name: "missing v in v1 session", in: `{"type":"ping"}`, want: 1, wantCode: codeUnsupportedVersion,
			wantText: `missing protocol version: "v" must be 1`},
		{name: "missing v before join", in: `{"type":"ping"}`, wantCode: codeUnsupportedVersion,
			wantText: `missing protocol version: "v" must be 1, 2, 3 or 4`},
		{name: "v9 before join", in: `{"v":9,"type":"ping"}`, wantCode: codeUnsupportedVersion,
			wantText: `unsupported protocol version 9: "v" must be 1, 2, 3 or 4`},
		{name: "v2 bad message keeps its version", in: `{"v":2,"type":"join"}`, wantV: 2, wantCode: codeBadMessage},
		{name: "v2 unknown type keeps its version", in: `{"v":2,"type":"dance"}`, wantV: 2, wantCode: codeUnknownType},
		{name: "video-settings in v1 session", in: `{"v":1,"type":"video-settings","settings":[]}`, want: 1, wantV: 1,
			wantCode: codeUnknownType, wantText: `unknown message type "video-settings"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.in), tt.want)
			if m.V != tt.wantV {
				t.Errorf("V = %d, want %d", m.V, tt.wantV)
			}
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("parseMessage: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseMessage succeeded (%+v), want %s", m, tt.wantCode)
			}
			if got := wireCode(err); got != tt.wantCode {
				t.Errorf("wireCode(%v) = %s, want %s", err, got, tt.wantCode)
			}
			if tt.wantText != "" && err.Error() != tt.wantText {
				t.Errorf("error text %q, want %q", err.Error(), tt.wantText)
			}
		})
	}
}

func TestParseVideoSettings(t *testing.T) {
	entry := func(id string, w, h int, visible bool) string {
		return fmt.Sprintf(`{"producerId":%q,"width":%d,"height":%d,"visible":%t}`, id, w, h, visible)
	}
	msg := func(entries ...string) string {
		return `{"v":2,"type":"video-settings","settings":[` + strings.Join(entries, ",") + `]}`
	}
	many := make([]string, maxVideoSettings+1)
	for i := range many {
		many[i] = entry(fmt.Sprintf("p%d", i), 320, 180, true)
	}
	tests := []struct {
		name     string
		in       string
		want     []videoSetting
		wantCode string // "" = valid
	}{
		{name: "one", in: msg(entry("P", 320, 180, true)),
			want: []videoSetting{{"P", sfu.VideoSettings{Width: 320, Height: 180, Visible: true}}}},
		{name: "several in order", in: msg(entry("a", 1280, 720, true), entry("b", 0, 0, false), entry("a", 640, 360, true)),
			want: []videoSetting{
				{"a", sfu.VideoSettings{Width: 1280, Height: 720, Visible: true}},
				{"b", sfu.VideoSettings{}},
				{"a", sfu.VideoSettings{Width: 640, Height: 360, Visible: true}},
			}},
		{name: "empty list", in: msg(), want: []videoSetting{}},
		{name: "limits", in: msg(entry(strings.Repeat("x", maxProducerIDLen), maxVideoDimension, maxVideoDimension, true)),
			want: []videoSetting{{strings.Repeat("x", maxProducerIDLen), sfu.VideoSettings{Width: maxVideoDimension, Height: maxVideoDimension, Visible: true}}}},
		{name: "unknown fields ignored", in: `{"v":2,"type":"video-settings","x":1,"settings":[{"producerId":"P","width":1,"height":2,"visible":false,"dpr":2}]}`,
			want: []videoSetting{{"P", sfu.VideoSettings{Width: 1, Height: 2}}}},
		{name: "64 entries", in: msg(many[:maxVideoSettings]...)},

		{name: "65 entries", in: msg(many...), wantCode: codeBadMessage},
		{name: "missing settings", in: `{"v":2,"type":"video-settings"}`, wantCode: codeBadMessage},
		{name: "null settings", in: `{"v":2,"type":"video-settings","settings":null}`, wantCode: codeBadMessage},
		{name: "settings not a list", in: `{"v":2,"type":"video-settings","settings":{"producerId":"P"}}`, wantCode: codeBadMessage},
		{name: "null entry", in: msg(`null`), wantCode: codeBadMessage},
		{name: "entry not an object", in: msg(`"P"`), wantCode: codeBadMessage},
		{name: "empty producerId", in: msg(entry("", 1, 1, true)), wantCode: codeBadMessage},
		{name: "long producerId", in: msg(entry(strings.Repeat("x", maxProducerIDLen+1), 1, 1, true)), wantCode: codeBadMessage},
		{name: "producerId not a string", in: msg(`{"producerId":7,"width":1,"height":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "missing producerId", in: msg(`{"width":1,"height":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "missing width", in: msg(`{"producerId":"P","height":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "missing height", in: msg(`{"producerId":"P","width":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "missing visible", in: msg(`{"producerId":"P","width":1,"height":1}`), wantCode: codeBadMessage},
		{name: "visible not a bool", in: msg(`{"producerId":"P","width":1,"height":1,"visible":1}`), wantCode: codeBadMessage},
		{name: "negative width", in: msg(entry("P", -1, 1, true)), wantCode: codeBadMessage},
		{name: "negative height", in: msg(entry("P", 1, -1, true)), wantCode: codeBadMessage},
		{name: "too wide", in: msg(entry("P", maxVideoDimension+1, 1, true)), wantCode: codeBadMessage},
		{name: "too high", in: msg(entry("P", 1, maxVideoDimension+1, true)), wantCode: codeBadMessage},
		{name: "fractional width", in: msg(`{"producerId":"P","width":320.5,"height":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "exponent width", in: msg(`{"producerId":"P","width":1e3,"height":1,"visible":true}`), wantCode: codeBadMessage},
		{name: "huge height", in: msg(`{"producerId":"P","width":1,"height":99999999999999999999,"visible":true}`), wantCode: codeBadMessage},
		{name: "width as string", in: msg(`{"producerId":"P","width":"320","height":1,"visible":true}`), wantCode: codeBadMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.in), protocolV2)
			if tt.wantCode != "" {
				if err == nil {
					t.Fatalf("parseMessage succeeded (%+v), want %s", m.Settings, tt.wantCode)
				}
				if got := wireCode(err); got != tt.wantCode {
					t.Fatalf("wireCode(%v) = %s, want %s", err, got, tt.wantCode)
				}
				if n := len(err.Error()); n > 512 {
					t.Errorf("error text of %d bytes", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMessage: %v", err)
			}
			if m.Type != typeVideoSettings || m.V != protocolV2 {
				t.Fatalf("got type %q v %d", m.Type, m.V)
			}
			if tt.want != nil && !reflect.DeepEqual(m.Settings, tt.want) {
				t.Errorf("settings = %+v, want %+v", m.Settings, tt.want)
			}
		})
	}
}

func TestWireCode(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{protoErrorf(errBadMessage, "x"), codeBadMessage},
		{protoErrorf(errUnknownType, "x"), codeUnknownType},
		{protoErrorf(errUnsupportedVersion, "x"), codeUnsupportedVersion},
		{protoErrorf(errNotJoined, "x"), codeNotJoined},
		{protoErrorf(errAlreadyJoined, "x"), codeAlreadyJoined},
		{protoErrorf(errInvalidName, "x"), codeInvalidName},
		{fmt.Errorf("publish: %w", sfu.ErrInvalidSDP), codeInvalidSDP},
		{fmt.Errorf("join: %w", sfu.ErrRoomFull), codeRoomFull},
		{fmt.Errorf("join: %w", sfu.ErrTooManyRooms), codeTooManyRooms},
		{fmt.Errorf("answer: %w", sfu.ErrWrongState), codeBadMessage},
		{fmt.Errorf("join: %w", sfu.ErrEngineClosed), codeInternal},
		{errors.New("anything else"), codeInternal},
	}
	for _, tt := range tests {
		if got := wireCode(tt.err); got != tt.want {
			t.Errorf("wireCode(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if msg := clientMessage(codeInternal, errors.New("secret detail")); strings.Contains(msg, "secret") {
		t.Errorf("internal error leaked to client: %q", msg)
	}
}

func TestEventMessage(t *testing.T) {
	p := &sfu.ParticipantInfo{ID: "p1", Name: "Al", Origin: "n1"}
	pr := &sfu.ProducerInfo{ID: "pr1", Kind: sfu.KindVideo, ParticipantID: "p1"}
	sd := &webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: "v=0"}
	c := &webrtc.ICECandidateInit{Candidate: "candidate:1"}
	enc := &sfu.EncodingsInfo{ProducerID: "pr1", Mid: "0", Layers: []sfu.LayerActive{{RID: "", Active: true}}}
	tests := []struct {
		ev     sfu.Event
		want   string // "" = not forwarded
		verify func(outbound) bool
	}{
		{sfu.Event{Type: sfu.EventParticipantJoined, Participant: p}, typeParticipantJoined, func(m outbound) bool { return m.Participant != nil && *m.Participant == toWireParticipant(*p, 2) }},
		{sfu.Event{Type: sfu.EventParticipantLeft, Participant: p}, typeParticipantLeft, func(m outbound) bool { return m.Participant != nil && *m.Participant == toWireParticipant(*p, 2) }},
		{sfu.Event{Type: sfu.EventProducerAdded, Producer: pr}, typeProducerAdded, func(m outbound) bool {
			return m.Producer != nil && reflect.DeepEqual(*m.Producer, toWireProducer(*pr, 2))
		}},
		{sfu.Event{Type: sfu.EventProducerRemoved, Producer: pr}, typeProducerRemoved, func(m outbound) bool {
			return m.Producer != nil && reflect.DeepEqual(*m.Producer, toWireProducer(*pr, 2))
		}},
		{sfu.Event{Type: sfu.EventSubscriberOffer, SDP: sd}, typeSubscriberOffer, func(m outbound) bool { return m.SDP.Type == "offer" && m.SDP.SDP == "v=0" }},
		{sfu.Event{Type: sfu.EventICECandidate, Target: sfu.TargetSubscriber, Candidate: c}, typeCandidate, func(m outbound) bool { return m.Target == sfu.TargetSubscriber && m.Candidate == c }},
		{sfu.Event{Type: sfu.EventICECandidate, Target: sfu.TargetSubscriber}, "", nil},
		{sfu.Event{Type: sfu.EventParticipantJoined}, "", nil},
		{sfu.Event{Type: sfu.EventSubscriberOffer}, "", nil},
		{sfu.Event{Type: sfu.EventConnectionState, State: "connected"}, "", nil},
		{sfu.Event{Type: sfu.EventClosed}, "", nil},
		{sfu.Event{Type: sfu.EventEncodings, Encodings: enc}, "", nil}, // version 1 only: see TestEventMessageVersions
	}
	for _, tt := range tests {
		m, ok := eventMessage(tt.ev, protocolV1)
		if tt.want == "" {
			if ok {
				t.Errorf("eventMessage(%s) forwarded %+v", tt.ev.Type, m)
			}
			continue
		}
		if !ok || m.Type != tt.want || m.V != protocolV1 || !tt.verify(m) {
			t.Errorf("eventMessage(%s) = %+v, %v", tt.ev.Type, m, ok)
		}
	}
}

// TestEventMessageVersions translates events for version 1 and version 2
// sessions: the same messages with their session's "v", and "encodings"
// only for version 2 (and only with layers).
func TestEventMessageVersions(t *testing.T) {
	pr := &sfu.ProducerInfo{ID: "pr1", Kind: sfu.KindVideo, ParticipantID: "p1"}
	enc := &sfu.EncodingsInfo{ProducerID: "pr1", Mid: "1", Layers: []sfu.LayerActive{{RID: "q", Active: true}, {RID: "h"}, {RID: "f"}}}
	tests := []struct {
		name   string
		ev     sfu.Event
		v      int
		want   string // "" = not forwarded
		verify func(outbound) bool
	}{
		{"producer-added v1", sfu.Event{Type: sfu.EventProducerAdded, Producer: pr}, protocolV1, typeProducerAdded, nil},
		{"producer-added v2", sfu.Event{Type: sfu.EventProducerAdded, Producer: pr}, protocolV2, typeProducerAdded, nil},
		{"encodings v1 dropped", sfu.Event{Type: sfu.EventEncodings, Encodings: enc}, protocolV1, "", nil},
		{"encodings v2", sfu.Event{Type: sfu.EventEncodings, Encodings: enc}, protocolV2, typeEncodings, func(m outbound) bool {
			return m.wireEncodings != nil && m.ProducerID == "pr1" && m.Mid == "1" &&
				reflect.DeepEqual(m.Layers, []wireLayer{{RID: "q", Active: true}, {RID: "h"}, {RID: "f"}})
		}},
		{"encodings without payload", sfu.Event{Type: sfu.EventEncodings}, protocolV2, "", nil},
		{"encodings without layers", sfu.Event{Type: sfu.EventEncodings, Encodings: &sfu.EncodingsInfo{ProducerID: "pr1", Mid: "1"}}, protocolV2, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := eventMessage(tt.ev, tt.v)
			if tt.want == "" {
				if ok {
					t.Fatalf("forwarded %+v", m)
				}
				return
			}
			if !ok || m.Type != tt.want || m.V != tt.v || (tt.verify != nil && !tt.verify(m)) {
				t.Fatalf("eventMessage = %+v, %v", m, ok)
			}
			if tt.ev.Type != sfu.EventEncodings && m.wireEncodings != nil {
				t.Errorf("%s carries encodings fields", tt.want)
			}
		})
	}
}
