package web

import (
	"errors"
	"fmt"
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

		{name: "not json", in: `hello`, wantCode: codeBadMessage},
		{name: "truncated", in: `{"v":1,"type":"join"`, wantCode: codeBadMessage},
		{name: "array", in: `[1,2]`, wantCode: codeBadMessage},
		{name: "null", in: `null`, wantCode: codeBadMessage},
		{name: "empty", in: ``, wantCode: codeBadMessage},
		{name: "type not a string", in: `{"v":1,"type":7}`, wantCode: codeBadMessage},
		{name: "missing type", in: `{"v":1}`, wantCode: codeBadMessage},
		{name: "missing version", in: `{"type":"ping"}`, wantCode: codeUnsupportedVersion},
		{name: "version 2", in: `{"v":2,"type":"ping"}`, wantCode: codeUnsupportedVersion},
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMessage([]byte(tt.in))
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
	tests := []struct {
		ev     sfu.Event
		want   string // "" = not forwarded
		verify func(outbound) bool
	}{
		{sfu.Event{Type: sfu.EventParticipantJoined, Participant: p}, typeParticipantJoined, func(m outbound) bool { return m.Participant != nil && *m.Participant == toWireParticipant(*p) }},
		{sfu.Event{Type: sfu.EventParticipantLeft, Participant: p}, typeParticipantLeft, func(m outbound) bool { return m.Participant != nil && *m.Participant == toWireParticipant(*p) }},
		{sfu.Event{Type: sfu.EventProducerAdded, Producer: pr}, typeProducerAdded, func(m outbound) bool { return m.Producer != nil && *m.Producer == toWireProducer(*pr) }},
		{sfu.Event{Type: sfu.EventProducerRemoved, Producer: pr}, typeProducerRemoved, func(m outbound) bool { return m.Producer != nil && *m.Producer == toWireProducer(*pr) }},
		{sfu.Event{Type: sfu.EventSubscriberOffer, SDP: sd}, typeSubscriberOffer, func(m outbound) bool { return m.SDP.Type == "offer" && m.SDP.SDP == "v=0" }},
		{sfu.Event{Type: sfu.EventICECandidate, Target: sfu.TargetSubscriber, Candidate: c}, typeCandidate, func(m outbound) bool { return m.Target == sfu.TargetSubscriber && m.Candidate == c }},
		{sfu.Event{Type: sfu.EventICECandidate, Target: sfu.TargetSubscriber}, "", nil},
		{sfu.Event{Type: sfu.EventParticipantJoined}, "", nil},
		{sfu.Event{Type: sfu.EventSubscriberOffer}, "", nil},
		{sfu.Event{Type: sfu.EventConnectionState, State: "connected"}, "", nil},
		{sfu.Event{Type: sfu.EventClosed}, "", nil},
	}
	for _, tt := range tests {
		m, ok := eventMessage(tt.ev)
		if tt.want == "" {
			if ok {
				t.Errorf("eventMessage(%s) forwarded %+v", tt.ev.Type, m)
			}
			continue
		}
		if !ok || m.Type != tt.want || m.V != protocolVersion || !tt.verify(m) {
			t.Errorf("eventMessage(%s) = %+v, %v", tt.ev.Type, m, ok)
		}
	}
}
