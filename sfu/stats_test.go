package sfu

import (
	"testing"

	"github.com/pion/rtp"
)

// TestEngineStats drives a remote video producer to one local subscriber
// with a known number of packets and checks the gauges and counters of
// Engine.Stats, before and after the producer closes (counters of a closed
// producer are kept, gauges drop).
func TestEngineStats(t *testing.T) {
	ctx := testContext(t)
	e := newTestEngine(t, nil)
	if st := e.Stats(); st.Rooms != 0 || st.Participants != 0 || len(st.Traffic) != trafficClasses {
		t.Fatalf("fresh engine Stats = %+v", st)
	}
	sub := joinClient(t, e, "r", "bob")
	room := sub.p.Room()
	info := remoteInfo("rp-1", "remote-alice")
	prod, err := room.AddProducer(info, &countingRequester{})
	if err != nil {
		t.Fatalf("AddProducer: %v", err)
	}
	payload := []byte{0x10, 0, 0x9d, 0x01, 0x2a, 1, 2, 3}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 99, Marker: true}, Payload: payload}
	written := uint64(0)
	write := func() {
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		if err := prod.WriteRTP(pkt); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
		written++
	}
	// Until the subscriber is bound nothing goes out; write until it has
	// media, then a known burst more.
	var rt *remoteTrack
	waitUntil(ctx, t, "media at the subscriber", func() bool {
		write()
		rt = sub.track(info.ID)
		return rt != nil && rt.packets.Load() >= 5
	})
	for range 20 {
		write()
	}
	if err := sub.sendPLI(rt); err != nil {
		t.Fatalf("send PLI: %v", err)
	}
	waitUntil(ctx, t, "keyframe request counted", func() bool { return e.Stats().KeyframeRequests > 0 })

	video := trafficClass(KindVideo, true)
	st := e.Stats()
	loadParticipants, loadLocal := e.Load()
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"Rooms", uint64(st.Rooms), 1},
		{"Participants", uint64(st.Participants), 1},
		{"RemoteProducers", uint64(st.RemoteProducers), 1},
		{"LocalProducers", uint64(st.LocalProducers), 0},
		{"Load participants", uint64(loadParticipants), 1},
		{"Load local producers", uint64(loadLocal), 0},
		{"Consumers", uint64(st.Consumers), 1},
		{"video remote PacketsIn", st.Traffic[video].PacketsIn, written},
		{"video remote BytesIn", st.Traffic[video].BytesIn, written * uint64(len(payload))},
		{"video local PacketsIn", st.Traffic[trafficClass(KindVideo, false)].PacketsIn, 0},
		{"audio remote PacketsIn", st.Traffic[trafficClass(KindAudio, true)].PacketsIn, 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if tr := st.Traffic[video]; tr.Kind != KindVideo || !tr.Remote {
		t.Errorf("Traffic[%d] is %s remote=%v, want video remote", video, tr.Kind, tr.Remote)
	}
	if out := st.Traffic[video].PacketsOut; out < 20 || out > written {
		t.Errorf("video remote PacketsOut = %d, want between 20 and %d (one subscriber)", out, written)
	}
	if st.Traffic[video].BytesOut != st.Traffic[video].PacketsOut*uint64(len(payload)) {
		t.Errorf("BytesOut = %d, want PacketsOut*%d = %d", st.Traffic[video].BytesOut, len(payload), st.Traffic[video].PacketsOut*uint64(len(payload)))
	}
	if st.KeyframesRequested == 0 {
		t.Error("KeyframesRequested = 0, want the consumer's requests passed on")
	}

	prod.Close()
	after := e.Stats()
	if after.RemoteProducers != 0 || after.Consumers != 0 {
		t.Errorf("after Close: RemoteProducers = %d, Consumers = %d, want 0, 0", after.RemoteProducers, after.Consumers)
	}
	if got := after.Traffic[video]; got.PacketsIn != st.Traffic[video].PacketsIn || got.PacketsOut < st.Traffic[video].PacketsOut {
		t.Errorf("after Close: traffic %+v went backwards from %+v", got, st.Traffic[video])
	}
}
