package web

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/confab/confab/sfu"
)

// TestWireGolden pins the JSON of every protocol message that carries a
// participant or a producer (docs/protocol.md: ParticipantInfo,
// ProducerInfo, joined, participant-joined/-left, producer-added/-removed)
// and of "encodings", in both protocol versions where they exist.
// The engine types go through the converters of wire.go, so a renamed sfu
// field or json tag that reaches the wire fails here.
func TestWireGolden(t *testing.T) {
	bob := sfu.ParticipantInfo{ID: "Q2dT7uVb0Lx5kA9s", Name: "Bob", Origin: "node-a"}
	carol := sfu.ParticipantInfo{ID: "Zz1nB4cX8vM0qL6t", Name: "Carol", Origin: "node-b", Remote: true}
	video := sfu.ProducerInfo{
		ID: "9aKf3Wm1_Zr8pQ2c", Kind: sfu.KindVideo, ParticipantID: bob.ID, ParticipantName: "Bob",
		Codec:  sfu.Codec{MimeType: "video/VP8", ClockRate: 90000, PayloadType: 96},
		Origin: "node-a",
	}
	audio := sfu.ProducerInfo{
		ID: "Yq1_c7Rk2PzT0aMn", Kind: sfu.KindAudio, ParticipantID: carol.ID, ParticipantName: "Carol",
		Codec: sfu.Codec{
			MimeType: "audio/opus", ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", PayloadType: 111,
		},
		Origin: "node-b", Remote: true,
	}
	bare := sfu.ProducerInfo{ID: "p", Kind: sfu.KindVideo, Codec: sfu.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	layered := bare
	layered.Layers = []string{"q", "h", "f"}

	const (
		bobJSON   = `{"id":"Q2dT7uVb0Lx5kA9s","name":"Bob","origin":"node-a","remote":false}`
		carolJSON = `{"id":"Zz1nB4cX8vM0qL6t","name":"Carol","origin":"node-b","remote":true}`
		videoJSON = `{"id":"9aKf3Wm1_Zr8pQ2c","kind":"video","participantId":"Q2dT7uVb0Lx5kA9s","participantName":"Bob",` +
			`"codec":{"mimeType":"video/VP8","clockRate":90000,"payloadType":96},"origin":"node-a","remote":false}`
		audioJSON = `{"id":"Yq1_c7Rk2PzT0aMn","kind":"audio","participantId":"Zz1nB4cX8vM0qL6t","participantName":"Carol",` +
			`"codec":{"mimeType":"audio/opus","clockRate":48000,"channels":2,"sdpFmtpLine":"minptime=10;useinbandfec=1","payloadType":111},` +
			`"origin":"node-b","remote":true}`
		bareJSON = `{"id":"p","kind":"video","participantId":"","participantName":"",` +
			`"codec":{"mimeType":"video/VP8","clockRate":90000},"origin":"","remote":false}`
		layeredJSON = `{"id":"p","kind":"video","participantId":"","participantName":"",` +
			`"codec":{"mimeType":"video/VP8","clockRate":90000},"origin":"","remote":false,"layers":["q","h","f"]}`
	)

	eventV := func(v int, ev sfu.Event) any {
		t.Helper()
		msg, ok := eventMessage(ev, v)
		if !ok {
			t.Fatalf("eventMessage(%s, %d) not forwarded", ev.Type, v)
		}
		return msg
	}
	event := func(ev sfu.Event) any {
		t.Helper()
		return eventV(protocolV1, ev)
	}
	simulcast := sfu.EncodingsInfo{ProducerID: "9aKf3Wm1_Zr8pQ2c", Mid: "1", Layers: []sfu.LayerActive{
		{RID: "q", Active: true}, {RID: "h", Active: false}, {RID: "f", Active: false},
	}}
	single := sfu.EncodingsInfo{ProducerID: "p", Mid: "0", Layers: []sfu.LayerActive{{RID: "", Active: false}}}
	joinedV := func(v int, peers []sfu.ParticipantInfo, producers []sfu.ProducerInfo) any {
		return joinedMessage{
			V: v, Type: typeJoined, ParticipantID: "Jc8Xq0-2bWk9aT1e", NodeID: "node-a", Room: "standup",
			Participants: toWireParticipants(peers, 2), Producers: toWireProducers(producers, 2),
			Nodes: []Peer{{ID: "node-a", URL: "http://10.0.0.1:8080"}},
		}
	}
	joined := func(peers []sfu.ParticipantInfo, producers []sfu.ProducerInfo) any {
		return joinedV(protocolV1, peers, producers)
	}
	tests := []struct {
		name string
		msg  any
		want string
	}{
		{"joined", joined([]sfu.ParticipantInfo{bob, carol}, []sfu.ProducerInfo{video, audio}),
			`{"v":1,"type":"joined","participantId":"Jc8Xq0-2bWk9aT1e","nodeId":"node-a","room":"standup",` +
				`"participants":[` + bobJSON + `,` + carolJSON + `],"producers":[` + videoJSON + `,` + audioJSON + `],` +
				`"nodes":[{"id":"node-a","url":"http://10.0.0.1:8080"}]}`},
		{"joined empty", joined(nil, nil),
			`{"v":1,"type":"joined","participantId":"Jc8Xq0-2bWk9aT1e","nodeId":"node-a","room":"standup",` +
				`"participants":[],"producers":[],"nodes":[{"id":"node-a","url":"http://10.0.0.1:8080"}]}`},
		{"participant-joined", event(sfu.Event{Type: sfu.EventParticipantJoined, Participant: &carol}),
			`{"v":1,"type":"participant-joined","participant":` + carolJSON + `}`},
		{"participant-left", event(sfu.Event{Type: sfu.EventParticipantLeft, Participant: &bob}),
			`{"v":1,"type":"participant-left","participant":` + bobJSON + `}`},
		{"producer-added", event(sfu.Event{Type: sfu.EventProducerAdded, Producer: &audio}),
			`{"v":1,"type":"producer-added","producer":` + audioJSON + `}`},
		{"producer-removed", event(sfu.Event{Type: sfu.EventProducerRemoved, Producer: &video}),
			`{"v":1,"type":"producer-removed","producer":` + videoJSON + `}`},
		{"producer-added zero codec fields", event(sfu.Event{Type: sfu.EventProducerAdded, Producer: &bare}),
			`{"v":1,"type":"producer-added","producer":` + bareJSON + `}`},
		{"producer-added simulcast", event(sfu.Event{Type: sfu.EventProducerAdded, Producer: &layered}),
			`{"v":1,"type":"producer-added","producer":` + layeredJSON + `}`},

		// Version 2: the same shapes with "v":2, plus "encodings".
		{"joined v2", joinedV(protocolV2, []sfu.ParticipantInfo{bob}, []sfu.ProducerInfo{video}),
			`{"v":2,"type":"joined","participantId":"Jc8Xq0-2bWk9aT1e","nodeId":"node-a","room":"standup",` +
				`"participants":[` + bobJSON + `],"producers":[` + videoJSON + `],` +
				`"nodes":[{"id":"node-a","url":"http://10.0.0.1:8080"}]}`},
		{"producer-added v2", eventV(protocolV2, sfu.Event{Type: sfu.EventProducerAdded, Producer: &video}),
			`{"v":2,"type":"producer-added","producer":` + videoJSON + `}`},
		{"encodings simulcast", eventV(protocolV2, sfu.Event{Type: sfu.EventEncodings, Encodings: &simulcast}),
			`{"v":2,"type":"encodings","producerId":"9aKf3Wm1_Zr8pQ2c","mid":"1",` +
				`"layers":[{"rid":"q","active":true},{"rid":"h","active":false},{"rid":"f","active":false}]}`},
		{"encodings single encoding", eventV(protocolV2, sfu.Event{Type: sfu.EventEncodings, Encodings: &single}),
			`{"v":2,"type":"encodings","producerId":"p","mid":"0","layers":[{"rid":"","active":false}]}`},
		{"pong v2", newOutbound(protocolV2, typePong), `{"v":2,"type":"pong"}`},
		{"error v2", outbound{V: protocolV2, Type: typeError, Code: codeBadMessage, Message: "m"},
			`{"v":2,"type":"error","code":"bad-message","message":"m"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

// TestWireConvertersCopyEveryField checks that the converters copy every
// field of the engine types to the matching wire field, and that lists are
// never nil.
func TestWireConvertersCopyEveryField(t *testing.T) {
	p := sfu.ParticipantInfo{ID: "i", Name: "n", Origin: "o", Remote: true}
	if got, want := toWireParticipant(p, 3), (wireParticipant{ID: "i", Name: "n", Origin: "o", Remote: true}); got != want {
		t.Errorf("toWireParticipant = %+v, want %+v", got, want)
	}
	pr := sfu.ProducerInfo{
		ID: "i", Kind: sfu.KindAudio, ParticipantID: "pi", ParticipantName: "pn",
		Codec:  sfu.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "f", PayloadType: 111},
		Origin: "o", Remote: true, Layers: []string{"l", "h"},
	}
	want := wireProducer{
		ID: "i", Kind: "audio", ParticipantID: "pi", ParticipantName: "pn",
		Codec:  wireCodec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "f", PayloadType: 111},
		Origin: "o", Remote: true, Layers: []string{"l", "h"},
	}
	if got := toWireProducer(pr, 3); !reflect.DeepEqual(got, want) {
		t.Errorf("toWireProducer = %+v, want %+v", got, want)
	}
	e := sfu.EncodingsInfo{ProducerID: "i", Mid: "m", Layers: []sfu.LayerActive{{RID: "r", Active: true}, {RID: "s"}}}
	wantE := wireEncodings{ProducerID: "i", Mid: "m", Layers: []wireLayer{{RID: "r", Active: true}, {RID: "s"}}}
	if got := toWireEncodings(e); !reflect.DeepEqual(*got, wantE) {
		t.Errorf("toWireEncodings = %+v, want %+v", *got, wantE)
	}
	if got := toWireEncodings(sfu.EncodingsInfo{}); got.Layers == nil {
		t.Errorf("toWireEncodings(empty).Layers is nil, want empty non-nil")
	}
	if got := toWireParticipants(nil, 3); got == nil || len(got) != 0 {
		t.Errorf("toWireParticipants(nil, 3) = %#v, want empty non-nil", got)
	}
	if got := toWireProducers(nil, 3); got == nil || len(got) != 0 {
		t.Errorf("toWireProducers(nil, 3) = %#v, want empty non-nil", got)
	}
}
