package web

import "github.com/confab/confab/sfu"

// This file holds the participant and producer shapes of the signaling
// protocol (docs/protocol.md: ParticipantInfo, ProducerInfo), the shapes of
// the adaptive video messages of version 2 (video-settings, encodings) and
// the only conversions between the engine's types and them. The engine's structs are
// never marshaled directly, so renaming a field in sfu cannot change the
// protocol; TestWireGolden pins the JSON.

// wireParticipant is a ParticipantInfo on the wire.
type wireParticipant struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Origin string `json:"origin"` // node the participant is connected to
	Remote bool   `json:"remote"` // connected to another node of the cluster
	// Version 3: the participant's media state (omitted when false).
	AudioMuted bool `json:"audioMuted,omitempty"`
	VideoMuted bool `json:"videoMuted,omitempty"`
	Speaking   bool `json:"speaking,omitempty"`
}

// wireChat is a chat message (version 3).
type wireChat struct {
	ID            string `json:"id"`
	ParticipantID string `json:"from"`     // the sender's participant id
	Name          string `json:"fromName"` // the sender's display name
	Text          string `json:"text"`
	At            int64  `json:"at"` // unix ms, when the sender's node accepted it
}

func toWireChat(m sfu.ChatMessage) wireChat {
	return wireChat{ID: m.ID, ParticipantID: m.ParticipantID, Name: m.Name, Text: m.Text, At: m.At.UnixMilli()}
}

func toWireChats(ms []sfu.ChatMessage) []wireChat {
	out := make([]wireChat, 0, len(ms))
	for _, m := range ms {
		out = append(out, toWireChat(m))
	}
	return out
}

// wireProducer is a ProducerInfo on the wire.
type wireProducer struct {
	ID              string    `json:"id"`
	Kind            string    `json:"kind"` // "audio" or "video"
	ParticipantID   string    `json:"participantId"`
	ParticipantName string    `json:"participantName"`
	Codec           wireCodec `json:"codec"`
	Origin          string    `json:"origin"` // node where it is published
	Remote          bool      `json:"remote"` // published on another node
	// Layers are a simulcast video producer's RIDs, lowest quality first
	// (omitted without simulcast); the server picks which one a
	// subscriber receives.
	Layers []string `json:"layers,omitempty"`
	// Source (version 3): "camera", "microphone", "screen" or
	// "screen-audio"; omitted when unknown.
	Source string `json:"source,omitempty"`
}

// wireCodec is a producer's codec on the wire; the optional fields are
// omitted when zero.
type wireCodec struct {
	MimeType    string `json:"mimeType"`
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	SDPFmtpLine string `json:"sdpFmtpLine,omitempty"`
	PayloadType uint8  `json:"payloadType,omitempty"`
}

// toWireParticipant converts an engine participant to its wire shape.
// Media state is sent to version 3 sessions only.
func toWireParticipant(p sfu.ParticipantInfo, v int) wireParticipant {
	w := wireParticipant{ID: p.ID, Name: p.Name, Origin: p.Origin, Remote: p.Remote}
	if v >= protocolV3 {
		w.AudioMuted, w.VideoMuted, w.Speaking = p.AudioMuted, p.VideoMuted, p.Speaking
	}
	return w
}

// toWireProducer converts an engine producer to its wire shape (the
// source for version 3 sessions only).
func toWireProducer(p sfu.ProducerInfo, v int) wireProducer {
	source := ""
	if v >= protocolV3 {
		source = p.Source
	}
	return wireProducer{
		ID:              p.ID,
		Kind:            string(p.Kind),
		ParticipantID:   p.ParticipantID,
		ParticipantName: p.ParticipantName,
		Codec: wireCodec{
			MimeType:    p.Codec.MimeType,
			ClockRate:   p.Codec.ClockRate,
			Channels:    p.Codec.Channels,
			SDPFmtpLine: p.Codec.SDPFmtpLine,
			PayloadType: p.Codec.PayloadType,
		},
		Origin: p.Origin,
		Remote: p.Remote,
		Layers: p.Layers,
		Source: source,
	}
}

// toWireParticipants converts a list; the result is never nil, so it
// encodes as [] rather than null.
func toWireParticipants(ps []sfu.ParticipantInfo, v int) []wireParticipant {
	out := make([]wireParticipant, 0, len(ps))
	for _, p := range ps {
		out = append(out, toWireParticipant(p, v))
	}
	return out
}

// toWireProducers converts a list; the result is never nil, so it encodes
// as [] rather than null.
func toWireProducers(ps []sfu.ProducerInfo, v int) []wireProducer {
	out := make([]wireProducer, 0, len(ps))
	for _, p := range ps {
		out = append(out, toWireProducer(p, v))
	}
	return out
}

// wireVideoSetting is one entry of "video-settings" (client -> server,
// version 2): how the client shows one remote video producer. Pointers
// tell a missing field from its zero value; all four are required
// (videoSettings checks them).
type wireVideoSetting struct {
	ProducerID *string `json:"producerId"`
	Width      *int    `json:"width"`  // rendered width in device pixels, 0 = unknown
	Height     *int    `json:"height"` // rendered height in device pixels, 0 = unknown
	Visible    *bool   `json:"visible"`
}

// wireEncodings is the body of "encodings" (server -> client, version 2):
// which encodings of one of the client's own producers to send. Layers is
// never nil.
type wireEncodings struct {
	ProducerID string      `json:"producerId"`
	Mid        string      `json:"mid"` // the producer's m-line on the publisher connection
	Layers     []wireLayer `json:"layers"`
}

// wireLayer says whether to send one encoding, named by its RID ("" for
// a track published with a single encoding).
type wireLayer struct {
	RID    string `json:"rid"`
	Active bool   `json:"active"`
}

// toWireEncodings converts an engine encodings event to its wire shape.
func toWireEncodings(e sfu.EncodingsInfo) *wireEncodings {
	w := &wireEncodings{ProducerID: e.ProducerID, Mid: e.Mid, Layers: make([]wireLayer, 0, len(e.Layers))}
	for _, l := range e.Layers {
		w.Layers = append(w.Layers, wireLayer{RID: l.RID, Active: l.Active})
	}
	return w
}
