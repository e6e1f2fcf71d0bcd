package cluster

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// goldenProducers returns the producers of the golden tests: a video one,
// an audio one with every codec field set, and one with the optional fields
// zero (omitted on the wire).
func goldenProducers() (video, audio, bare sfu.ProducerInfo) {
	video = sfu.ProducerInfo{
		ID: "M79l1PgtgShSxFy5", Kind: sfu.KindVideo, ParticipantID: "az8kxxd5ZSvNUyeR", ParticipantName: "Alice",
		Codec:  sfu.Codec{MimeType: "video/VP8", ClockRate: 90000, PayloadType: 96},
		Origin: "node-a", Remote: true,
	}
	audio = sfu.ProducerInfo{
		ID: "Yq1_c7Rk2PzT0aMn", Kind: sfu.KindAudio, ParticipantID: "az8kxxd5ZSvNUyeR", ParticipantName: "Alice",
		Codec: sfu.Codec{
			MimeType: "audio/opus", ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1", PayloadType: 111,
		},
		Origin: "wrong", Remote: true,
	}
	bare = sfu.ProducerInfo{ID: "p", Kind: sfu.KindVideo, Codec: sfu.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	return video, audio, bare
}

// TestProducerRecordGolden pins the producer value of Consul KV (and of the
// room state exchange, which carries the same records): docs/cluster.md,
// "KV schema". Nodes of different versions read each other's records.
func TestProducerRecordGolden(t *testing.T) {
	goldenVideo, goldenAudio, goldenBare := goldenProducers()
	tests := []struct {
		name string
		info sfu.ProducerInfo
		want string
	}{
		{"video", goldenVideo,
			`{"id":"M79l1PgtgShSxFy5","kind":"video","participantId":"az8kxxd5ZSvNUyeR","participantName":"Alice",` +
				`"codec":{"mimeType":"video/VP8","clockRate":90000,"payloadType":96},"origin":"node-a","remote":false}`},
		{"audio, every codec field", goldenAudio,
			`{"id":"Yq1_c7Rk2PzT0aMn","kind":"audio","participantId":"az8kxxd5ZSvNUyeR","participantName":"Alice",` +
				`"codec":{"mimeType":"audio/opus","clockRate":48000,"channels":2,"sdpFmtpLine":"minptime=10;useinbandfec=1","payloadType":111},` +
				`"origin":"node-a","remote":false}`},
		{"zero fields", goldenBare,
			`{"id":"p","kind":"video","participantId":"","participantName":"",` +
				`"codec":{"mimeType":"video/VP8","clockRate":90000},"origin":"node-a","remote":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeProducer("node-a", tt.info)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("encodeProducer JSON mismatch\n got: %s\nwant: %s", got, tt.want)
			}
			// Read back from the literal, as another node would: the key's
			// node is the origin and the producer is remote.
			back, err := decodeProducer(roomKey{Room: "demo", Node: "node-a", Producer: tt.info.ID}, []byte(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.info
			want.Origin, want.Remote = "node-a", true
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("decodeProducer = %+v, want %+v", back, want)
			}
		})
	}
}

// TestRoomStateProducersGolden decodes a literal room state as a peer sends
// it (docs/cluster.md, "Room state exchange").
func TestRoomStateProducersGolden(t *testing.T) {
	goldenVideo, _, _ := goldenProducers()
	const body = `{"life":"2026-11-24T06:53:25.73Z","rooms":[{"room":"demo","seq":7,"open":true,"at":1700000000000,"producers":[` +
		`{"id":"M79l1PgtgShSxFy5","kind":"video","participantId":"az8kxxd5ZSvNUyeR","participantName":"Alice",` +
		`"codec":{"mimeType":"video/VP8","clockRate":90000,"payloadType":96},"origin":"elsewhere","remote":false}]}]}`
	var msg roomSyncMessage
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatal(err)
	}
	if len(msg.Rooms) != 1 {
		t.Fatalf("rooms = %+v", msg.Rooms)
	}
	got, err := decodeStateProducers("node-a", msg.Rooms[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[goldenVideo.ID], goldenVideo) {
		t.Fatalf("decodeStateProducers = %+v, want {%s: %+v}", got, goldenVideo.ID, goldenVideo)
	}

	// And the other way: the state this node sends carries its records.
	rec, err := encodeProducer("node-a", goldenVideo)
	if err != nil {
		t.Fatal(err)
	}
	l := newLocalRooms()
	l.change("demo", func(r *localRoom) { r.open = true; r.producers[goldenVideo.ID] = rec })
	st := l.state("demo")
	st.At = 1700000000000
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"room":"demo","seq":1,"open":true,"at":1700000000000,"producers":[` + string(rec) + `]}`
	if string(out) != want {
		t.Fatalf("room state JSON mismatch\n got: %s\nwant: %s", out, want)
	}
}

// TestStatusGolden pins the /api/cluster document (docs/cluster.md,
// "/api/cluster": the example of node B, compacted).
func TestStatusGolden(t *testing.T) {
	goldenVideo, goldenAudio, goldenBare := goldenProducers()
	started := time.Date(2026, 11, 24, 6, 53, 25, 730_000_000, time.UTC)
	bob := sfu.ParticipantInfo{ID: "FX7zNnHqX8CLvsqX", Name: "Bob", Origin: "node-b"}
	st := Status{
		NodeID: "node-b",
		Mode:   "consul",
		Nodes: []NodeInfo{
			{ID: "node-a", URL: "http://10.0.0.1:8080", Version: "0.1.0", Load: 1, StartedAt: started, Alive: true},
			{ID: "node-b", URL: "http://10.0.0.2:8080", Version: "0.1.0", Load: 1, StartedAt: started, Alive: true, Self: true},
		},
		Rooms: []RoomStatus{{
			Name:           "demo",
			Participants:   participantStatuses([]sfu.ParticipantInfo{bob}),
			LocalProducers: []ProducerStatus{producerStatus(goldenBare)},
			PipedProducers: []ProducerStatus{producerStatus(goldenVideo), producerStatus(goldenAudio)},
			Nodes:          []string{"node-a", "node-b"},
		}},
		Links: []pipe.LinkStatus{{
			PeerNode: "node-a", LinkID: "06f8bf3df2d10fecfbd1826c", Role: "answerer", State: "connected",
			Producers: []pipe.PipedProducer{{Room: "demo", ID: "M79l1PgtgShSxFy5", Kind: "video", Direction: pipe.DirectionIn, State: "active"}},
		}},
		Consul: &ConsulStatus{Address: "127.0.0.1:8500", Session: "b9e1ee19-2cbe-3c01-cd62-038bd0f09345", Healthy: true},
	}
	const want = `{"nodeId":"node-b","mode":"consul","nodes":[` +
		`{"id":"node-a","url":"http://10.0.0.1:8080","version":"0.1.0","load":1,"startedAt":"2026-11-24T06:53:25.73Z","alive":true},` +
		`{"id":"node-b","url":"http://10.0.0.2:8080","version":"0.1.0","load":1,"startedAt":"2026-11-24T06:53:25.73Z","alive":true,"self":true}],` +
		`"rooms":[{"name":"demo",` +
		`"participants":[{"id":"FX7zNnHqX8CLvsqX","name":"Bob","origin":"node-b","remote":false}],` +
		`"localProducers":[{"id":"p","kind":"video","participantId":"","participantName":"",` +
		`"codec":{"mimeType":"video/VP8","clockRate":90000},"origin":"","remote":false}],` +
		`"pipedProducers":[{"id":"M79l1PgtgShSxFy5","kind":"video","participantId":"az8kxxd5ZSvNUyeR","participantName":"Alice",` +
		`"codec":{"mimeType":"video/VP8","clockRate":90000,"payloadType":96},"origin":"node-a","remote":true},` +
		`{"id":"Yq1_c7Rk2PzT0aMn","kind":"audio","participantId":"az8kxxd5ZSvNUyeR","participantName":"Alice",` +
		`"codec":{"mimeType":"audio/opus","clockRate":48000,"channels":2,"sdpFmtpLine":"minptime=10;useinbandfec=1","payloadType":111},` +
		`"origin":"wrong","remote":true}],` +
		`"nodes":["node-a","node-b"]}],` +
		`"links":[{"peerNode":"node-a","linkId":"06f8bf3df2d10fecfbd1826c","role":"answerer","state":"connected",` +
		`"producers":[{"room":"demo","id":"M79l1PgtgShSxFy5","kind":"video","direction":"in","state":"active"}]}],` +
		`"consul":{"address":"127.0.0.1:8500","session":"b9e1ee19-2cbe-3c01-cd62-038bd0f09345","healthy":true}}`
	got, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("Status JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

// TestStatusConverters checks that the /api/cluster converters copy every
// field and never return nil lists.
func TestStatusConverters(t *testing.T) {
	_, goldenAudio, _ := goldenProducers()
	p := sfu.ParticipantInfo{ID: "i", Name: "n", Origin: "o", Remote: true}
	if got, want := participantStatus(p), (ParticipantStatus{ID: "i", Name: "n", Origin: "o", Remote: true}); got != want {
		t.Errorf("participantStatus = %+v, want %+v", got, want)
	}
	want := ProducerStatus{
		ID: "Yq1_c7Rk2PzT0aMn", Kind: "audio", ParticipantID: "az8kxxd5ZSvNUyeR", ParticipantName: "Alice",
		Codec:  CodecStatus{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1", PayloadType: 111},
		Origin: "wrong", Remote: true,
	}
	if got := producerStatus(goldenAudio); got != want {
		t.Errorf("producerStatus = %+v, want %+v", got, want)
	}
	if got := participantStatuses(nil); got == nil || len(got) != 0 {
		t.Errorf("participantStatuses(nil) = %#v, want empty non-nil", got)
	}
}
