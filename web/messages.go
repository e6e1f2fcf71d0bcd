package web

import (
	"bytes"
	"encoding/json"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// protocolVersion is the only signaling protocol version ("v") spoken.
const protocolVersion = 1

// Message types, both directions (see docs/protocol.md).
const (
	// client -> server
	typeJoin             = "join"
	typePublish          = "publish"
	typeSubscriberAnswer = "subscriber-answer"
	typeCandidate        = "candidate" // also server -> client
	typeLeave            = "leave"
	typePing             = "ping"

	// server -> client
	typeJoined            = "joined"
	typePublishAnswer     = "publish-answer"
	typeSubscriberOffer   = "subscriber-offer"
	typeParticipantJoined = "participant-joined"
	typeParticipantLeft   = "participant-left"
	typeProducerAdded     = "producer-added"
	typeProducerRemoved   = "producer-removed"
	typeError             = "error"
	typePong              = "pong"
	typeMove              = "move"
)

// Reasons of "move" (see docs/protocol.md).
const (
	// moveReasonDraining: sent by Server.Drain, after "joined".
	moveReasonDraining = "draining"
	// moveReasonPlacement: the room belongs on another node; sent instead
	// of "joined".
	moveReasonPlacement = "placement"
	// moveReasonNodeFull: this node is over its load limit; sent instead
	// of "joined".
	moveReasonNodeFull = "node-full"
)

// maxAvoid bounds the node ids of a join's "avoid"; later ones are ignored.
const maxAvoid = 16

// wireSDP is a session description on the wire: {"type":"offer","sdp":"..."}.
type wireSDP struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// envelope is the part of every message read before dispatching on type.
type envelope struct {
	V    json.RawMessage `json:"v"`
	Type string          `json:"type"`
}

// inbound holds the fields of any client message; which ones are required
// depends on the type (see parseMessage).
type inbound struct {
	Type      string
	Name      string
	Placed    string   // join: the node a placement "move" sent the client to
	Avoid     []string // join: nodes the client lost and must not be sent to
	SDP       webrtc.SessionDescription
	Target    sfu.Target
	Candidate webrtc.ICECandidateInit
}

// inboundFields is the JSON shape of the type-specific fields.
type inboundFields struct {
	Name      *string                  `json:"name"`
	Placed    *string                  `json:"placed"`
	Avoid     []string                 `json:"avoid"`
	SDP       *wireSDP                 `json:"sdp"`
	Target    *string                  `json:"target"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
}

// parseMessage decodes and checks one client message: a JSON object, "v"
// equal to 1, a known "type" and the fields that type requires. Errors are
// *protocolError of kind errBadMessage, errUnsupportedVersion,
// errUnknownType or sfu.ErrInvalidSDP. It never panics.
func parseMessage(data []byte) (inbound, error) {
	var msg inbound
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return msg, protoErrorf(errBadMessage, "message must be a JSON object")
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return msg, protoErrorf(errBadMessage, "malformed message: %v", err)
	}
	if len(env.V) == 0 {
		return msg, protoErrorf(errUnsupportedVersion, `missing protocol version: "v" must be %d`, protocolVersion)
	}
	if string(bytes.TrimSpace(env.V)) != "1" {
		return msg, protoErrorf(errUnsupportedVersion, `unsupported protocol version %s: "v" must be %d`, truncate(string(env.V), 16), protocolVersion)
	}
	msg.Type = env.Type
	switch env.Type {
	case "":
		return msg, protoErrorf(errBadMessage, `missing "type"`)
	case typeLeave, typePing:
		return msg, nil
	case typeJoin, typePublish, typeSubscriberAnswer, typeCandidate:
	default:
		return msg, protoErrorf(errUnknownType, "unknown message type %q", truncate(env.Type, 32))
	}

	var f inboundFields
	if err := json.Unmarshal(data, &f); err != nil {
		return msg, protoErrorf(errBadMessage, "malformed %s message: %v", env.Type, err)
	}
	switch env.Type {
	case typeJoin:
		if f.Name == nil {
			return msg, protoErrorf(errBadMessage, `join: missing "name"`)
		}
		msg.Name = *f.Name
		if f.Placed != nil {
			msg.Placed = *f.Placed
		}
		for _, id := range f.Avoid {
			if len(msg.Avoid) == maxAvoid {
				break
			}
			if id != "" && len(id) <= 64 {
				msg.Avoid = append(msg.Avoid, id)
			}
		}
	case typePublish:
		sdp, err := sessionDescription(f.SDP, webrtc.SDPTypeOffer, env.Type)
		if err != nil {
			return msg, err
		}
		msg.SDP = sdp
	case typeSubscriberAnswer:
		sdp, err := sessionDescription(f.SDP, webrtc.SDPTypeAnswer, env.Type)
		if err != nil {
			return msg, err
		}
		msg.SDP = sdp
	case typeCandidate:
		if f.Target == nil || f.Candidate == nil {
			return msg, protoErrorf(errBadMessage, `candidate: "target" and "candidate" are required`)
		}
		switch t := sfu.Target(*f.Target); t {
		case sfu.TargetPublisher, sfu.TargetSubscriber:
			msg.Target = t
		default:
			return msg, protoErrorf(errBadMessage, `candidate: "target" must be "publisher" or "subscriber", not %q`, truncate(*f.Target, 32))
		}
		// Parse the candidate here so garbage is a client error
		// (bad-message), whatever the engine would make of it. An empty
		// candidate means end-of-candidates and is passed on.
		if c := f.Candidate.Candidate; c != "" {
			if _, err := ice.UnmarshalCandidate(c); err != nil {
				return msg, protoErrorf(errBadMessage, "candidate: unparsable candidate: %v", err)
			}
		}
		msg.Candidate = *f.Candidate
	}
	return msg, nil
}

// sessionDescription checks a wire SDP of a publish / subscriber-answer
// message: present (else bad-message), of the expected type and non-empty
// (else invalid-sdp). The session checks its content (checkSDP) once the
// client has joined, before the engine applies it.
func sessionDescription(s *wireSDP, want webrtc.SDPType, msgType string) (webrtc.SessionDescription, error) {
	if s == nil {
		return webrtc.SessionDescription{}, protoErrorf(errBadMessage, `%s: missing "sdp"`, msgType)
	}
	if s.Type != want.String() {
		return webrtc.SessionDescription{}, protoErrorf(sfu.ErrInvalidSDP, `%s: sdp type must be %q, not %q`, msgType, want.String(), truncate(s.Type, 16))
	}
	if s.SDP == "" {
		return webrtc.SessionDescription{}, protoErrorf(sfu.ErrInvalidSDP, "%s: empty sdp", msgType)
	}
	return webrtc.SessionDescription{Type: want, SDP: s.SDP}, nil
}

// truncate shortens client-provided text echoed in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// outbound is any server message except "joined". Unused fields are
// omitted.
type outbound struct {
	V           int                      `json:"v"`
	Type        string                   `json:"type"`
	SDP         *wireSDP                 `json:"sdp,omitempty"`
	Target      sfu.Target               `json:"target,omitempty"`
	Candidate   *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Participant *wireParticipant         `json:"participant,omitempty"`
	Producer    *wireProducer            `json:"producer,omitempty"`
	Code        string                   `json:"code,omitempty"`
	Message     string                   `json:"message,omitempty"`
}

// joinedMessage is the reply to a successful join. Participants,
// Producers and Nodes are never null on the wire.
type joinedMessage struct {
	V             int               `json:"v"`
	Type          string            `json:"type"`
	ParticipantID string            `json:"participantId"`
	NodeID        string            `json:"nodeId"`
	Room          string            `json:"room"`
	Participants  []wireParticipant `json:"participants"`
	Producers     []wireProducer    `json:"producers"`
	Nodes         []Peer            `json:"nodes"`
}

// moveMessage tells a client to leave this node and rejoin its room on one
// of Nodes (never null on the wire; empty when no other node is known).
// Sent after "joined" by Drain, or instead of "joined" by placement.
type moveMessage struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	Nodes   []Peer `json:"nodes"`
}

func newOutbound(typ string) outbound { return outbound{V: protocolVersion, Type: typ} }

func toWireSDP(sd webrtc.SessionDescription) *wireSDP {
	return &wireSDP{Type: sd.Type.String(), SDP: sd.SDP}
}

// eventMessage translates an engine event to its wire message. ok is false
// for events that are not forwarded to the client (connection-state,
// closed, end-of-candidates, or events missing their payload).
func eventMessage(ev sfu.Event) (msg outbound, ok bool) {
	switch ev.Type {
	case sfu.EventParticipantJoined:
		msg, ok = newOutbound(typeParticipantJoined), ev.Participant != nil
		msg.Participant = participantPtr(ev.Participant)
	case sfu.EventParticipantLeft:
		msg, ok = newOutbound(typeParticipantLeft), ev.Participant != nil
		msg.Participant = participantPtr(ev.Participant)
	case sfu.EventProducerAdded:
		msg, ok = newOutbound(typeProducerAdded), ev.Producer != nil
		msg.Producer = producerPtr(ev.Producer)
	case sfu.EventProducerRemoved:
		msg, ok = newOutbound(typeProducerRemoved), ev.Producer != nil
		msg.Producer = producerPtr(ev.Producer)
	case sfu.EventSubscriberOffer:
		if ev.SDP == nil {
			return msg, false
		}
		msg, ok = newOutbound(typeSubscriberOffer), true
		msg.SDP = toWireSDP(*ev.SDP)
	case sfu.EventICECandidate:
		// A nil candidate (end of candidates) may be skipped.
		msg, ok = newOutbound(typeCandidate), ev.Candidate != nil
		msg.Target = ev.Target
		msg.Candidate = ev.Candidate
	}
	return msg, ok
}

// participantPtr converts an event's participant; nil stays nil.
func participantPtr(p *sfu.ParticipantInfo) *wireParticipant {
	if p == nil {
		return nil
	}
	w := toWireParticipant(*p)
	return &w
}

// producerPtr converts an event's producer; nil stays nil.
func producerPtr(p *sfu.ProducerInfo) *wireProducer {
	if p == nil {
		return nil
	}
	w := toWireProducer(*p)
	return &w
}
