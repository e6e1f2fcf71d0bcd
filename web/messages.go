package web

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// Signaling protocol versions ("v"). Version 2 adds "video-settings" and
// "encodings" (adaptive video); everything else is the same in both. A
// session speaks the version of its "join" (see docs/protocol.md,
// Versions).
const (
	protocolV1 = 1
	protocolV2 = 2
	protocolV3 = 3
	// protocolV4 adds access tokens and moderation (docs/protocol.md,
	// Access) and "iceServers" in "joined" (TURN servers with
	// per-participant credentials; Version 4).
	protocolV4 = 4
	// protocolLatest is the newest version this node speaks.
	protocolLatest = protocolV4
)

// LatestProtocol is the newest signaling protocol version (Config.MaxProtocol).
const LatestProtocol = protocolLatest

// TokenProtocol is the first protocol version whose join carries an access
// token (Config.Auth token needs MaxProtocol at least this).
const TokenProtocol = protocolV4

// Message types, both directions (see docs/protocol.md).
const (
	// client -> server
	typeJoin             = "join"
	typePublish          = "publish"
	typeSubscriberAnswer = "subscriber-answer"
	typeCandidate        = "candidate" // also server -> client
	typeLeave            = "leave"
	typePing             = "ping"
	typeVideoSettings    = "video-settings" // version 2
	typeMediaState       = "media-state"    // version 3
	typeChat             = "chat"           // version 3, also server -> client
	typeModerate         = "moderate"       // version 4: an admin's action

	// server -> client
	typeJoined             = "joined"
	typePublishAnswer      = "publish-answer"
	typeSubscriberOffer    = "subscriber-offer"
	typeParticipantJoined  = "participant-joined"
	typeParticipantLeft    = "participant-left"
	typeProducerAdded      = "producer-added"
	typeProducerRemoved    = "producer-removed"
	typeError              = "error"
	typePong               = "pong"
	typeMove               = "move"
	typeEncodings          = "encodings"           // version 2
	typeParticipantUpdated = "participant-updated" // version 3
	typeModerated          = "moderated"           // version 4
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

// maxTokenLen bounds a join's access token (bytes).
const maxTokenLen = 4096

// Limits of a "video-settings" message; beyond them it is a bad-message.
const (
	maxVideoSettings  = 64    // entries per message
	maxProducerIDLen  = 64    // bytes of a producerId
	maxVideoDimension = 16384 // width and height, device pixels
	maxMidLen         = 16    // publish: bytes of a mid
)

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
	V         int // protocol version: protocolV1 or protocolV2
	Type      string
	Name      string
	Placed    string   // join: the node a placement "move" sent the client to
	Avoid     []string // join: nodes the client lost and must not be sent to
	SDP       webrtc.SessionDescription
	Target    sfu.Target
	Candidate webrtc.ICECandidateInit
	Settings  []videoSetting    // video-settings, in message order
	State     sfu.MediaState    // join (version 3), media-state
	Sources   map[string]string // publish (version 3): mid -> source
	Text      string            // chat
	Token     string            // join (version 4): access token
	Mod       sfu.Moderation    // moderate (version 4): Action, Target, Kind
}

// videoSetting is one checked entry of a "video-settings" message.
type videoSetting struct {
	ProducerID string
	Settings   sfu.VideoSettings
}

// inboundFields is the JSON shape of the type-specific fields.
type inboundFields struct {
	Name       *string                  `json:"name"`
	Placed     *string                  `json:"placed"`
	Avoid      []string                 `json:"avoid"`
	SDP        *wireSDP                 `json:"sdp"`
	Target     *string                  `json:"target"`
	Candidate  *webrtc.ICECandidateInit `json:"candidate"`
	Settings   *[]wireVideoSetting      `json:"settings"`
	AudioMuted *bool                    `json:"audioMuted"`
	VideoMuted *bool                    `json:"videoMuted"`
	Sources    map[string]string        `json:"sources"`
	Text       *string                  `json:"text"`
	Token      *string                  `json:"token"`
	Action     *string                  `json:"action"`
	ModTarget  *string                  `json:"participantId"`
	Kind       *string                  `json:"kind"`
}

// parseMessage decodes and checks one client message: a JSON object, a
// version "v", a "type" known in that version and the fields that type
// requires. want is the session's version once it has joined (the message
// must carry exactly that one), 0 before (1 and 2 are accepted). Errors
// are *protocolError of kind errBadMessage, errUnsupportedVersion,
// errUnknownType or sfu.ErrInvalidSDP; msg.V is set as soon as the
// version is known to be acceptable, even when a later check fails, so
// that the error can be answered in it. It never panics.
func parseMessage(data []byte, want int) (inbound, error) {
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
		return msg, protoErrorf(errUnsupportedVersion, "missing protocol version: %s", versionRule(want))
	}
	v := 0
	switch string(bytes.TrimSpace(env.V)) {
	case "1":
		v = protocolV1
	case "2":
		v = protocolV2
	case "3":
		v = protocolV3
	case "4":
		v = protocolV4
	}
	if v == 0 || (want != 0 && v != want) {
		return msg, protoErrorf(errUnsupportedVersion, "unsupported protocol version %s: %s", truncate(string(env.V), 16), versionRule(want))
	}
	msg.V = v
	msg.Type = env.Type
	switch env.Type {
	case "":
		return msg, protoErrorf(errBadMessage, `missing "type"`)
	case typeLeave, typePing:
		return msg, nil
	case typeJoin, typePublish, typeSubscriberAnswer, typeCandidate:
	case typeVideoSettings:
		if v < protocolV2 {
			return msg, protoErrorf(errUnknownType, "unknown message type %q", truncate(env.Type, 32))
		}
	case typeMediaState, typeChat:
		if v < protocolV3 {
			return msg, protoErrorf(errUnknownType, "unknown message type %q", truncate(env.Type, 32))
		}
	case typeModerate:
		if v < protocolV4 {
			return msg, protoErrorf(errUnknownType, "unknown message type %q", truncate(env.Type, 32))
		}
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
		if v >= protocolV3 {
			msg.State = sfu.MediaState{AudioMuted: f.AudioMuted != nil && *f.AudioMuted, VideoMuted: f.VideoMuted != nil && *f.VideoMuted}
		}
		if v >= protocolV4 && f.Token != nil {
			if len(*f.Token) > maxTokenLen {
				return msg, protoErrorf(errBadMessage, "join: token longer than %d bytes", maxTokenLen)
			}
			msg.Token = *f.Token
		}
	case typePublish:
		sdp, err := sessionDescription(f.SDP, webrtc.SDPTypeOffer, env.Type)
		if err != nil {
			return msg, err
		}
		msg.SDP = sdp
		if v >= protocolV3 && f.Sources != nil {
			if len(f.Sources) > sfu.MaxSources {
				return msg, protoErrorf(errBadMessage, "publish: %d sources, at most %d", len(f.Sources), sfu.MaxSources)
			}
			for mid, src := range f.Sources {
				if mid == "" || len(mid) > maxMidLen || !sfu.ValidSource(src) {
					return msg, protoErrorf(errBadMessage, `publish: source %q of m-line %q: mids have 1-%d bytes, sources are "camera", "microphone", "screen" or "screen-audio"`,
						truncate(src, 32), truncate(mid, 32), maxMidLen)
				}
			}
			msg.Sources = f.Sources
		}
	case typeMediaState:
		if f.AudioMuted == nil || f.VideoMuted == nil {
			return msg, protoErrorf(errBadMessage, `media-state: "audioMuted" and "videoMuted" (booleans) are required`)
		}
		msg.State = sfu.MediaState{AudioMuted: *f.AudioMuted, VideoMuted: *f.VideoMuted}
	case typeChat:
		if f.Text == nil {
			return msg, protoErrorf(errBadMessage, `chat: missing "text"`)
		}
		msg.Text = *f.Text
	case typeModerate:
		if f.Action == nil {
			return msg, protoErrorf(errBadMessage, `moderate: missing "action"`)
		}
		msg.Mod.Action = *f.Action
		if f.ModTarget != nil {
			msg.Mod.Target = truncate(*f.ModTarget, maxProducerIDLen)
		}
		if f.Kind != nil {
			msg.Mod.Kind = *f.Kind
		}
		switch msg.Mod.Action {
		case sfu.ModLock, sfu.ModUnlock, sfu.ModEnd:
		case sfu.ModRemove, sfu.ModMute:
			if msg.Mod.Target == "" {
				return msg, protoErrorf(errBadMessage, `moderate: %s needs "participantId"`, msg.Mod.Action)
			}
			if msg.Mod.Action == sfu.ModMute && msg.Mod.Kind != "audio" && msg.Mod.Kind != "video" {
				return msg, protoErrorf(errBadMessage, `moderate: mute needs "kind": "audio" or "video"`)
			}
		default:
			return msg, protoErrorf(errBadMessage, `moderate: "action" must be remove, mute, lock, unlock or end, not %q`, truncate(msg.Mod.Action, 32))
		}
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
	case typeVideoSettings:
		settings, err := videoSettings(f.Settings)
		if err != nil {
			return msg, err
		}
		msg.Settings = settings
	}
	return msg, nil
}

// versionRule is the part of an unsupported-version error saying which
// "v" is expected: before the join (want 0) any supported version, after
// it the session's.
func versionRule(want int) string {
	switch want {
	case 0:
		return `"v" must be 1, 2, 3 or 4`
	case protocolV1:
		return `"v" must be 1`
	default:
		return fmt.Sprintf(`"v" must be %d, the version this session joined with`, want)
	}
}

// videoSettings checks the entries of a "video-settings" message: present,
// at most maxVideoSettings, each with a producerId of 1 to
// maxProducerIDLen bytes, integer width and height from 0 to
// maxVideoDimension and a boolean visible.
func videoSettings(list *[]wireVideoSetting) ([]videoSetting, error) {
	if list == nil {
		return nil, protoErrorf(errBadMessage, `video-settings: missing "settings"`)
	}
	if len(*list) > maxVideoSettings {
		return nil, protoErrorf(errBadMessage, "video-settings: %d entries, at most %d", len(*list), maxVideoSettings)
	}
	out := make([]videoSetting, 0, len(*list))
	for i, w := range *list {
		switch {
		case w.ProducerID == nil || w.Width == nil || w.Height == nil || w.Visible == nil:
			return nil, protoErrorf(errBadMessage, `video-settings: entry %d: "producerId", "width", "height" and "visible" are required`, i)
		case *w.ProducerID == "" || len(*w.ProducerID) > maxProducerIDLen:
			return nil, protoErrorf(errBadMessage, "video-settings: entry %d: producerId must have 1 to %d bytes", i, maxProducerIDLen)
		case *w.Width < 0 || *w.Width > maxVideoDimension || *w.Height < 0 || *w.Height > maxVideoDimension:
			return nil, protoErrorf(errBadMessage, "video-settings: entry %d: width and height must be 0 to %d, not %dx%d", i, maxVideoDimension, *w.Width, *w.Height)
		}
		out = append(out, videoSetting{
			ProducerID: *w.ProducerID,
			Settings:   sfu.VideoSettings{Width: *w.Width, Height: *w.Height, Visible: *w.Visible},
		})
	}
	return out, nil
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

// outbound is any server message except "joined" and "move". Unused
// fields are omitted; the embedded *wireEncodings (set for "encodings"
// only) contributes producerId, mid and layers.
type outbound struct {
	V    int    `json:"v"`
	Type string `json:"type"`
	*wireEncodings
	SDP         *wireSDP                 `json:"sdp,omitempty"`
	Target      sfu.Target               `json:"target,omitempty"`
	Candidate   *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Participant *wireParticipant         `json:"participant,omitempty"`
	Producer    *wireProducer            `json:"producer,omitempty"`
	Chat        *wireChat                `json:"chat,omitempty"`
	Moderation  *wireModeration          `json:"moderation,omitempty"`
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
	Chat          []wireChat        `json:"chat,omitempty"`     // version 3: the room's last messages
	Identity      string            `json:"identity,omitempty"` // version 4, with a token
	Grants        *wireGrants       `json:"grants,omitempty"`   // version 4: what the participant may do
	Locked        bool              `json:"locked,omitempty"`   // version 4: the room is locked
	// ICEServers (version 4) are the STUN/TURN servers the page gives
	// its peer connections; absent when the node has none.
	ICEServers []ICEServer `json:"iceServers,omitempty"`
}

// wireModeration is an admin's action as a participant sees it
// ("moderated", version 4): its own microphone or camera muted, or the
// room locked or unlocked.
type wireModeration struct {
	Action string `json:"action"`
	Kind   string `json:"kind,omitempty"`
	By     string `json:"by"`
}

// wireGrants tells the page what its participant may do (version 4): all
// but admin without a token.
type wireGrants struct {
	Publish   bool     `json:"publish"`
	Sources   []string `json:"sources"` // allowed sources when publish
	Subscribe bool     `json:"subscribe"`
	Chat      bool     `json:"chat"`
	Hidden    bool     `json:"hidden"`
	Admin     bool     `json:"admin"`
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

// newOutbound starts a server message of protocol version v.
func newOutbound(v int, typ string) outbound { return outbound{V: v, Type: typ} }

func toWireSDP(sd webrtc.SessionDescription) *wireSDP {
	return &wireSDP{Type: sd.Type.String(), SDP: sd.SDP}
}

// eventMessage translates an engine event to its wire message for a
// session of protocol version v. ok is false for events that are not
// forwarded to the client (connection-state, closed, end-of-candidates,
// events missing their payload, and encodings for version 1 sessions).
func eventMessage(ev sfu.Event, v int) (msg outbound, ok bool) {
	switch ev.Type {
	case sfu.EventParticipantJoined:
		msg, ok = newOutbound(v, typeParticipantJoined), ev.Participant != nil
		msg.Participant = participantPtr(ev.Participant, v)
	case sfu.EventParticipantLeft:
		msg, ok = newOutbound(v, typeParticipantLeft), ev.Participant != nil
		msg.Participant = participantPtr(ev.Participant, v)
	case sfu.EventParticipantUpdated:
		if v < protocolV3 {
			return msg, false
		}
		msg, ok = newOutbound(v, typeParticipantUpdated), ev.Participant != nil
		msg.Participant = participantPtr(ev.Participant, v)
	case sfu.EventChat:
		if v < protocolV3 || ev.Chat == nil {
			return msg, false
		}
		msg, ok = newOutbound(v, typeChat), true
		w := toWireChat(*ev.Chat)
		msg.Chat = &w
	case sfu.EventModerated:
		if v < protocolV4 || ev.Moderation == nil {
			return msg, false
		}
		msg, ok = newOutbound(v, typeModerated), true
		msg.Moderation = &wireModeration{Action: ev.Moderation.Action, Kind: ev.Moderation.Kind, By: ev.Moderation.By}
	case sfu.EventProducerAdded:
		msg, ok = newOutbound(v, typeProducerAdded), ev.Producer != nil
		msg.Producer = producerPtr(ev.Producer, v)
	case sfu.EventProducerRemoved:
		msg, ok = newOutbound(v, typeProducerRemoved), ev.Producer != nil
		msg.Producer = producerPtr(ev.Producer, v)
	case sfu.EventSubscriberOffer:
		if ev.SDP == nil {
			return msg, false
		}
		msg, ok = newOutbound(v, typeSubscriberOffer), true
		msg.SDP = toWireSDP(*ev.SDP)
	case sfu.EventICECandidate:
		// A nil candidate (end of candidates) may be skipped.
		msg, ok = newOutbound(v, typeCandidate), ev.Candidate != nil
		msg.Target = ev.Target
		msg.Candidate = ev.Candidate
	case sfu.EventEncodings:
		// Version 1 clients publish one encoding per track and know no
		// "encodings"; an event without layers says nothing.
		if v < protocolV2 || ev.Encodings == nil || len(ev.Encodings.Layers) == 0 {
			return msg, false
		}
		msg, ok = newOutbound(v, typeEncodings), true
		msg.wireEncodings = toWireEncodings(*ev.Encodings)
	}
	return msg, ok
}

// participantPtr converts an event's participant; nil stays nil.
func participantPtr(p *sfu.ParticipantInfo, v int) *wireParticipant {
	if p == nil {
		return nil
	}
	w := toWireParticipant(*p, v)
	return &w
}

// producerPtr converts an event's producer; nil stays nil.
func producerPtr(p *sfu.ProducerInfo, v int) *wireProducer {
	if p == nil {
		return nil
	}
	w := toWireProducer(*p, v)
	return &w
}
