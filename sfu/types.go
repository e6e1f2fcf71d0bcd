package sfu

import (
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// Kind is a media kind.
type Kind string

// Media kinds.
const (
	KindAudio Kind = "audio"
	KindVideo Kind = "video"
)

// KindOf returns the Kind of a mime type ("audio/opus" -> KindAudio).
// Unknown prefixes yield KindVideo only for "video/", otherwise "".
func KindOf(mimeType string) Kind {
	switch {
	case strings.HasPrefix(strings.ToLower(mimeType), "audio/"):
		return KindAudio
	case strings.HasPrefix(strings.ToLower(mimeType), "video/"):
		return KindVideo
	default:
		return ""
	}
}

// Codec is the wire-friendly description of a producer's codec.
type Codec struct {
	MimeType    string `json:"mimeType"` // e.g. "video/VP8", "audio/opus"
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	SDPFmtpLine string `json:"sdpFmtpLine,omitempty"`
	PayloadType uint8  `json:"payloadType,omitempty"`
}

// Capability converts c to a pion codec capability. The RTCP feedback set is
// the one the engine negotiates for the codec's kind. PayloadType is dropped
// (payload types are per peer connection). Pure function, safe anywhere.
func (c Codec) Capability() webrtc.RTPCodecCapability {
	cc := webrtc.RTPCodecCapability{
		MimeType:    c.MimeType,
		ClockRate:   c.ClockRate,
		Channels:    c.Channels,
		SDPFmtpLine: c.SDPFmtpLine,
	}
	switch KindOf(c.MimeType) {
	case KindVideo:
		cc.RTCPFeedback = videoFeedback()
	case KindAudio:
		cc.RTCPFeedback = audioFeedback()
	}
	return cc
}

// CodecFrom converts negotiated pion codec parameters to a Codec.
// Pure function, safe anywhere.
func CodecFrom(c webrtc.RTPCodecParameters) Codec {
	return Codec{
		MimeType:    c.MimeType,
		ClockRate:   c.ClockRate,
		Channels:    c.Channels,
		SDPFmtpLine: c.SDPFmtpLine,
		PayloadType: uint8(c.PayloadType),
	}
}

// ParticipantInfo describes a participant as others see it. It is a value
// snapshot: ID, Name, Origin and Remote never change after the participant
// joined; the media state (AudioMuted, VideoMuted, Speaking) changes, and
// every change reaches the other participants as EventParticipantUpdated.
type ParticipantInfo struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Origin string `json:"origin"` // node id the participant is connected to
	Remote bool   `json:"remote"` // true when connected to another node
	// AudioMuted and VideoMuted are what the participant announced
	// (Participant.SetMediaState): its microphone or camera is off.
	AudioMuted bool `json:"audioMuted,omitempty"`
	VideoMuted bool `json:"videoMuted,omitempty"`
	// Speaking is set by the node the participant is connected to, from
	// the audio levels its microphone's packets carry (speaking.go).
	Speaking bool `json:"speaking,omitempty"`
	// Identity is JoinParams.Identity ("" without one) and Since when it
	// joined (unix ms): a node that learns of a newer session of one of
	// its participants' identities on another node ends its own (see
	// SetRemoteParticipants).
	Identity string `json:"identity,omitempty"`
	Since    int64  `json:"since,omitempty"`
}

// MediaState is what a participant announces about its own media.
type MediaState struct {
	AudioMuted bool
	VideoMuted bool
}

// Producer sources: what a published track captures. A client names them
// per m-line (Participant.SetSources); without a name an audio track is a
// microphone and a video track a camera.
const (
	SourceCamera      = "camera"
	SourceMicrophone  = "microphone"
	SourceScreen      = "screen"
	SourceScreenAudio = "screen-audio"
)

// ValidSource reports whether s is one of the producer sources.
func ValidSource(s string) bool {
	switch s {
	case SourceCamera, SourceMicrophone, SourceScreen, SourceScreenAudio:
		return true
	}
	return false
}

// ChatMessage is one chat message of a room. ID is unique in the room
// (random); At is when the sender's node accepted it.
type ChatMessage struct {
	ID            string    `json:"id"`
	ParticipantID string    `json:"participantId"`
	Name          string    `json:"name"`
	Origin        string    `json:"origin"` // node the sender was connected to
	Text          string    `json:"text"`
	At            time.Time `json:"at"`
}

// ProducerInfo describes a published track. It is a value snapshot.
type ProducerInfo struct {
	ID              string `json:"id"`
	Kind            Kind   `json:"kind"`
	ParticipantID   string `json:"participantId"`
	ParticipantName string `json:"participantName"`
	Codec           Codec  `json:"codec"`
	Origin          string `json:"origin"` // node id where it is published
	Remote          bool   `json:"remote"` // true for producers piped in from another node
	// Layers are the RIDs of a simulcast video producer's encodings, from
	// the lowest to the highest quality; nil for a single encoding.
	Layers []string `json:"layers,omitempty"`
	// Source is what the track captures (SourceCamera, ...); "" when
	// unknown (a producer of an older node).
	Source string `json:"source,omitempty"`
}

// JoinParams are the arguments of Engine.Join. Name is the display name
// (already validated by the caller). Events is required and receives every
// event for this participant for its whole lifetime.
type JoinParams struct {
	Name   string
	Events EventHandler
	// State is the participant's media state when it joins (others see it
	// in participant-joined).
	State MediaState
	// Identity, when set, is unique per room on this node: joining with
	// the identity of a participant already there closes that one with
	// ErrReplaced.
	Identity string
	// Hidden participants are not listed to the others: no
	// participant-joined, -updated or -left events, not in the others'
	// snapshots, not reported to the Observer (so not announced to other
	// nodes). Their producers would show them; callers let hidden
	// participants receive only.
	Hidden bool
	// NoSubscribe: the participant receives no media (no consumers); it
	// still gets producer-added and producer-removed.
	NoSubscribe bool
	// Admin participants may join a locked room.
	Admin bool
	// RestartsICE: the participant's client restarts ICE itself (a WHIP
	// encoder, over HTTP PATCH): its publisher connection fails only after
	// Config.ICERestartWindow without ICE.
	RestartsICE bool
}

// EventHandler receives everything the engine wants to tell one
// participant's client. HandleEvent is called WITHOUT engine locks held,
// possibly before Engine.Join returned, and one call at a time per
// participant, in order: every event comes from the participant's own
// goroutine, except the final EventClosed, which is sent by the closing
// goroutine after that one stopped. Implementations must not block (web
// enqueues into a bounded outbox): a slow handler delays that participant's
// events and offers, and one that falls maxActions changes behind is closed
// with ErrQueueOverflow. It may call Participant methods except that
// calling blocking Participant methods (Publish, SetSubscriberAnswer,
// Close) synchronously from HandleEvent is not allowed.
type EventHandler interface {
	HandleEvent(Event)
}

// EventHandlerFunc adapts a function to EventHandler. Addition to the spec.
type EventHandlerFunc func(Event)

// HandleEvent calls f(ev).
func (f EventHandlerFunc) HandleEvent(ev Event) { f(ev) }

// EventType identifies an Event.
type EventType string

// Event types. The comment names the Event fields that are set.
const (
	EventParticipantJoined  EventType = "participant-joined"  // Participant set (another participant, local or remote)
	EventParticipantLeft    EventType = "participant-left"    // Participant set
	EventProducerAdded      EventType = "producer-added"      // Producer set (other participants' producers only)
	EventProducerRemoved    EventType = "producer-removed"    // Producer set
	EventSubscriberOffer    EventType = "subscriber-offer"    // SDP set: server-initiated offer on the subscribe PC; client must answer via SetSubscriberAnswer
	EventICECandidate       EventType = "candidate"           // Target + Candidate set (currently not emitted: server SDPs carry all candidates)
	EventConnectionState    EventType = "connection-state"    // Target + State set ("connected","failed",...)
	EventClosed             EventType = "closed"              // participant was closed by the engine (ICE failed, engine close); Err set
	EventEncodings          EventType = "encodings"           // Encodings set: which encodings of an own producer to send (dynacast)
	EventParticipantUpdated EventType = "participant-updated" // Participant set: another participant's media state changed
	EventChat               EventType = "chat"                // Chat set: a chat message of the room (own ones included)
	EventModerated          EventType = "moderated"           // Moderation set: an admin muted this participant (mute), or locked or unlocked the room (everyone)
)

// Target selects one of a participant's two peer connections.
type Target string

// Targets.
const (
	TargetPublisher  Target = "publisher"
	TargetSubscriber Target = "subscriber"
)

// Event is one notification for a participant's client; see EventType for
// which fields are set. Pointers are never shared between events, receivers
// may keep them.
type Event struct {
	Type        EventType
	Participant *ParticipantInfo
	Producer    *ProducerInfo
	SDP         *webrtc.SessionDescription
	Target      Target
	Candidate   *webrtc.ICECandidateInit
	State       string
	Err         error
	Encodings   *EncodingsInfo
	Chat        *ChatMessage
	Moderation  *Moderation
}

// KeyframeRequester is told when a subscriber wants a keyframe (already
// throttled by the engine to Config.KeyframeInterval per producer). Called
// from engine goroutines without engine locks held; must not block.
type KeyframeRequester interface {
	RequestKeyframe()
}

// KeyframeRequesterFunc adapts a function to KeyframeRequester.
type KeyframeRequesterFunc func()

// RequestKeyframe calls f.
func (f KeyframeRequesterFunc) RequestKeyframe() { f() }

// Observer is how the cluster learns of local rooms, participants,
// producers and chat. Methods are called WITHOUT engine locks,
// synchronously from the goroutine that caused the change, and must not
// block for long (cluster enqueues work). Only LOCAL participants,
// producers and chat messages are reported. For one room the order is
// RoomOpened, then the changes, then RoomClosed.
type Observer interface {
	RoomOpened(r *Room)                          // first local participant joined
	RoomClosed(name string)                      // last local participant left (after its producers were reported removed)
	ProducerAdded(r *Room, p ProducerInfo)       // local producer started
	ProducerRemoved(room string, p ProducerInfo) // local producer stopped
	// ParticipantChanged: a local participant joined (present), changed
	// its media state (present) or left (not present).
	ParticipantChanged(r *Room, p ParticipantInfo, present bool)
	// ChatSent: a local participant's chat message was accepted.
	ChatSent(r *Room, m ChatMessage)
	// Moderated: a local admin moderated the room (Participant.Moderate);
	// other nodes apply it with Room.ApplyRemoteModeration.
	Moderated(r *Room, m Moderation)
}

// VideoSettings is how a subscriber shows one remote video producer: the
// rendered size of its tile in device pixels (0 when unknown: no size cap)
// and whether it is visible at all (a hidden tile gets no video).
type VideoSettings struct {
	Width   int
	Height  int
	Visible bool
}

// LayerActive says whether a publisher should send one of its encodings,
// named by RID ("" for a single-encoding track).
type LayerActive struct {
	RID    string
	Active bool
}

// EncodingsInfo tells a publisher which encodings of one of its own
// producers someone needs (dynacast). Mid is the producer's m-line on the
// publisher peer connection.
type EncodingsInfo struct {
	ProducerID string
	Mid        string
	Layers     []LayerActive
}
