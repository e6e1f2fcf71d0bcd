package cluster

import "github.com/confab/confab/sfu"

// This file holds cluster's own transfer types for the engine's producers
// and participants, and the only conversions between them and the sfu
// types:
//
//   - producerRecord: the value of a confab/rooms/{room}/producers/{node}/{id}
//     key in Consul KV, reused verbatim in the room state exchange
//     (roomState.Producers), docs/cluster.md "KV schema";
//   - ParticipantStatus and ProducerStatus: the participants and producers
//     of the /api/cluster document (RoomStatus), docs/cluster.md.
//
// The sfu structs are never marshaled by cluster, so a field renamed in sfu
// cannot change either format, and the two formats can evolve separately.
// TestProducerRecordGolden and TestStatusGolden pin the JSON.

// producerRecord is a producer as stored in Consul KV and sent in room
// states. Nodes of different versions read each other's records, so fields
// are only ever added (with omitempty), never renamed.
type producerRecord struct {
	ID              string      `json:"id"`
	Kind            string      `json:"kind"`
	ParticipantID   string      `json:"participantId"`
	ParticipantName string      `json:"participantName"`
	Codec           codecRecord `json:"codec"`
	Origin          string      `json:"origin"` // the writing node; the key is authoritative
	Remote          bool        `json:"remote"` // always false when written; ignored when read
	// Layers are a simulcast producer's RIDs, lowest quality first
	// (omitted without simulcast).
	Layers []string `json:"layers,omitempty"`
	// Source is what the track captures ("camera", "screen", ...;
	// omitted by older nodes).
	Source string `json:"source,omitempty"`
}

// codecRecord is a producer's codec in a producerRecord.
type codecRecord struct {
	MimeType    string `json:"mimeType"`
	ClockRate   uint32 `json:"clockRate"`
	Channels    uint16 `json:"channels,omitempty"`
	SDPFmtpLine string `json:"sdpFmtpLine,omitempty"`
	PayloadType uint8  `json:"payloadType,omitempty"`
}

// producerRecordOf is the record node writes for its local producer info:
// Origin is forced to node and Remote to false.
func producerRecordOf(node string, info sfu.ProducerInfo) producerRecord {
	return producerRecord{
		ID:              info.ID,
		Kind:            string(info.Kind),
		ParticipantID:   info.ParticipantID,
		ParticipantName: info.ParticipantName,
		Codec: codecRecord{
			MimeType:    info.Codec.MimeType,
			ClockRate:   info.Codec.ClockRate,
			Channels:    info.Codec.Channels,
			SDPFmtpLine: info.Codec.SDPFmtpLine,
			PayloadType: info.Codec.PayloadType,
		},
		Origin: node,
		Remote: false,
		Layers: info.Layers,
		Source: info.Source,
	}
}

// remoteInfo is the engine's view of a record read from node: Origin is
// node (whatever the record says) and Remote is true.
func (r producerRecord) remoteInfo(node string) sfu.ProducerInfo {
	return sfu.ProducerInfo{
		ID:              r.ID,
		Kind:            sfu.Kind(r.Kind),
		ParticipantID:   r.ParticipantID,
		ParticipantName: r.ParticipantName,
		Codec: sfu.Codec{
			MimeType:    r.Codec.MimeType,
			ClockRate:   r.Codec.ClockRate,
			Channels:    r.Codec.Channels,
			SDPFmtpLine: r.Codec.SDPFmtpLine,
			PayloadType: r.Codec.PayloadType,
		},
		Origin: node,
		Remote: true,
		Layers: r.Layers,
		Source: r.Source,
	}
}

// ParticipantStatus is a participant in the /api/cluster document.
type ParticipantStatus struct {
	// ID is the participant id.
	ID string `json:"id"`
	// Name is the display name.
	Name string `json:"name"`
	// Origin is the node the participant is connected to.
	Origin string `json:"origin"`
	// Remote is true when that node is another one.
	Remote bool `json:"remote"`
}

// ProducerStatus is a producer in the /api/cluster document.
type ProducerStatus struct {
	// ID is the producer id.
	ID string `json:"id"`
	// Kind is "audio" or "video".
	Kind string `json:"kind"`
	// ParticipantID is the id of the publishing participant.
	ParticipantID string `json:"participantId"`
	// ParticipantName is the publishing participant's display name.
	ParticipantName string `json:"participantName"`
	// Codec is the producer's codec.
	Codec CodecStatus `json:"codec"`
	// Origin is the node where the producer is published.
	Origin string `json:"origin"`
	// Remote is true for producers piped in from another node.
	Remote bool `json:"remote"`
}

// CodecStatus is a producer's codec in the /api/cluster document.
type CodecStatus struct {
	// MimeType is e.g. "video/VP8" or "audio/opus".
	MimeType string `json:"mimeType"`
	// ClockRate is the RTP clock rate in Hz.
	ClockRate uint32 `json:"clockRate"`
	// Channels is the audio channel count (omitted when 0).
	Channels uint16 `json:"channels,omitempty"`
	// SDPFmtpLine is the codec's fmtp parameters (omitted when empty).
	SDPFmtpLine string `json:"sdpFmtpLine,omitempty"`
	// PayloadType is the RTP payload type negotiated with the publisher
	// (omitted when 0).
	PayloadType uint8 `json:"payloadType,omitempty"`
}

// participantStatus converts an engine participant for /api/cluster.
func participantStatus(p sfu.ParticipantInfo) ParticipantStatus {
	return ParticipantStatus{ID: p.ID, Name: p.Name, Origin: p.Origin, Remote: p.Remote}
}

// participantStatuses converts a list; the result is never nil.
func participantStatuses(ps []sfu.ParticipantInfo) []ParticipantStatus {
	out := make([]ParticipantStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, participantStatus(p))
	}
	return out
}

// producerStatus converts an engine producer for /api/cluster.
func producerStatus(p sfu.ProducerInfo) ProducerStatus {
	return ProducerStatus{
		ID:              p.ID,
		Kind:            string(p.Kind),
		ParticipantID:   p.ParticipantID,
		ParticipantName: p.ParticipantName,
		Codec: CodecStatus{
			MimeType:    p.Codec.MimeType,
			ClockRate:   p.Codec.ClockRate,
			Channels:    p.Codec.Channels,
			SDPFmtpLine: p.Codec.SDPFmtpLine,
			PayloadType: p.Codec.PayloadType,
		},
		Origin: p.Origin,
		Remote: p.Remote,
	}
}
