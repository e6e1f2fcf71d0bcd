package pipe

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/internal/peer"
	"github.com/confab/confab/sfu"
)

// ptLayerPayload is the payload size of each simulcast layer the test
// publisher sends, so that link bytes tell the layers apart.
var ptLayerPayload = [3]int{100, 400, 1000}

// publishSimulcastVP8 publishes one VP8 track with three simulcast
// encodings (RIDs q, h, f) and writes a keyframe packet of each every
// 10ms (sizes ptLayerPayload) until the client closes.
func (c *ptClient) publishSimulcastVP8(ctx context.Context) {
	t := c.t
	t.Helper()
	pc, err := c.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatalf("client pc: %v", err)
	}
	c.mu.Lock()
	c.pubs = append(c.pubs, pc)
	c.mu.Unlock()
	var tracks []*webrtc.TrackLocalStaticRTP
	for _, rid := range []string{"q", "h", "f"} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
			"video", "cam", webrtc.WithRTPStreamID(rid))
		if err != nil {
			t.Fatalf("track %s: %v", rid, err)
		}
		tracks = append(tracks, tr)
	}
	sender, err := pc.AddTrack(tracks[0])
	if err != nil {
		t.Fatalf("AddTrack: %v", err)
	}
	for _, tr := range tracks[1:] {
		if err := sender.AddEncoding(tr); err != nil {
			t.Fatalf("AddEncoding: %v", err)
		}
	}
	publishOffer(ctx, t, c.p, pc)
	// pion does not tag a simulcast sender's packets with their mid and
	// RID: the engine needs them to tell the encodings apart.
	var midID, ridID uint8
	for _, h := range sender.GetParameters().HeaderExtensions {
		switch h.URI {
		case "urn:ietf:params:rtp-hdrext:sdes:mid":
			midID = uint8(h.ID)
		case "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id":
			ridID = uint8(h.ID)
		}
	}
	var mid string
	for _, tr := range pc.GetTransceivers() {
		if tr.Sender() == sender {
			mid = tr.Mid()
		}
	}
	if midID == 0 || ridID == 0 || mid == "" {
		t.Fatalf("simulcast header extensions not negotiated (mid %d %q, rid %d)", midID, mid, ridID)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		pkts := make([]*rtp.Packet, len(tracks))
		for i := range pkts {
			payload := make([]byte, ptLayerPayload[i])
			copy(payload, []byte{0x10, 0x00, 0x9d, 0x01, 0x2a, byte(160 << i), 0, byte(120 << i), 0})
			pkts[i] = &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, Marker: true}, Payload: payload}
			_ = pkts[i].Header.SetExtension(midID, []byte(mid))             // valid one-byte ids
			_ = pkts[i].Header.SetExtension(ridID, []byte(tracks[i].RID())) // valid one-byte ids
		}
		peer.WriteEvery(c.stop, 10*time.Millisecond, func() error {
			for i, tr := range tracks {
				pkts[i].SequenceNumber++
				pkts[i].Timestamp += 900
				if err := tr.WriteRTP(pkts[i]); errors.Is(err, net.ErrClosed) {
					return err
				}
			}
			return nil
		})
	}()
}

// ptLayerBytes returns the payload bytes received per layer on n's link
// with peer for producer id (in), and the layers b asks for.
func ptLayerBytes(n *ptNode, peer, id string) (bytes map[int]uint64, wanted []int) {
	bytes = make(map[int]uint64)
	ls := ptLink(n, peer, DirectionIn)
	if ls == nil {
		return bytes, nil
	}
	for _, p := range ls.Producers {
		if p.ID != id {
			continue
		}
		for _, l := range p.Layers {
			bytes[l.Layer] += l.Bytes
		}
		return bytes, p.Wanted
	}
	return bytes, nil
}

// ptLinkInbound returns the bytes received on every inbound RTP stream of
// n's link with peer, by SSRC (what crossed the link).
func ptLinkInbound(n *ptNode, peer string) map[uint32]uint64 {
	out := make(map[uint32]uint64)
	l := n.pipes.linkWith(peer)
	if l == nil {
		return out
	}
	for _, s := range l.pc.GetStats() {
		if in, ok := s.(webrtc.InboundRTPStreamStats); ok {
			out[uint32(in.SSRC)] += in.BytesReceived
		}
	}
	return out
}

// ptOutLayers returns the layers a serves to peer for producer id.
func ptOutLayers(n *ptNode, peer, id string) []int {
	ls := ptLink(n, peer, DirectionOut)
	if ls == nil {
		return nil
	}
	var out []int
	for _, p := range ls.Producers {
		if p.ID == id {
			for _, l := range p.Layers {
				out = append(out, l.Layer)
			}
		}
	}
	return out
}

// TestPipeLayersFollowDemand: a simulcast producer piped to a node whose
// only subscriber wants the low layer moves only low-layer packets over
// the link; when it wants the top layer, the top layer flows too, the low
// one stays (the fallback for a fast step down) and the middle one never
// crosses.
func TestPipeLayersFollowDemand(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")

	pub := ptJoin(t, a, "room", "alice")
	pub.publishSimulcastVP8(ctx)
	var prod sfu.ProducerInfo
	ptWait(ctx, t, "simulcast producer on a", func() bool {
		r := a.engine.Room("room")
		if r == nil {
			return false
		}
		for _, p := range r.Producers() {
			if p.ParticipantID == pub.p.ID() && len(p.Layers) == 3 {
				prod = p
				return true
			}
		}
		return false
	})
	ptWait(ctx, t, "all layers live on a", func() bool {
		for _, l := range a.engine.Room("room").Producer(prod.ID).LayerStatus() {
			if !l.Live {
				return false
			}
		}
		return true
	})

	// b's room exists through a participant that hides the video (it
	// needs no layer); the one subscriber is a consumer pinned to a layer.
	bob := ptJoin(t, b, "room", "bob")
	if err := bob.p.SetVideoSettings(prod.ID, sfu.VideoSettings{Visible: false}); err != nil {
		t.Fatalf("SetVideoSettings: %v", err)
	}
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn: %v", err)
	}
	var remote *sfu.Producer
	ptWait(ctx, t, "piped producer on b", func() bool {
		remote = b.engine.Room("room").Producer(prod.ID)
		return remote != nil
	})
	if n := remote.Layers(); n != 3 {
		t.Fatalf("piped producer has %d layers, want 3", n)
	}
	pc, err := b.engine.NewPeerConnection()
	if err != nil {
		t.Fatalf("NewPeerConnection: %v", err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	cons, err := remote.NewConsumer(pc)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	t.Cleanup(cons.Close)
	cons.SetLayer(0)

	// window measures what crosses the link during d: inbound bytes per
	// SSRC and received payload bytes per layer.
	window := func(d time.Duration) (link map[uint32]uint64, layers map[int]uint64) {
		l0, b0 := ptLinkInbound(b, "a"), func() map[int]uint64 { m, _ := ptLayerBytes(b, "a", prod.ID); return m }()
		time.Sleep(d)
		l1, b1 := ptLinkInbound(b, "a"), func() map[int]uint64 { m, _ := ptLayerBytes(b, "a", prod.ID); return m }()
		link, layers = make(map[uint32]uint64), make(map[int]uint64)
		for s, v := range l1 {
			if v > l0[s] {
				link[s] = v - l0[s]
			}
		}
		for k, v := range b1 {
			if v > b0[k] {
				layers[k] = v - b0[k]
			}
		}
		return link, layers
	}
	layerSSRC := func() map[uint32]int {
		m := make(map[uint32]int)
		if ls := ptLink(b, "a", DirectionIn); ls != nil {
			for _, p := range ls.Producers {
				for _, l := range p.Layers {
					m[l.SSRC] = l.Layer
				}
			}
		}
		return m
	}

	// Low layer only: wait past the initial hold, then measure.
	ptWait(ctx, t, "only layer 0 served", func() bool {
		got := ptOutLayers(a, "b", prod.ID)
		return len(got) == 1 && got[0] == 0
	})
	time.Sleep(3 * time.Second) // the engine's 2s dynacast hold and a report
	link, layers := window(time.Second)
	ssrcs := layerSSRC()
	var total, low uint64
	for s, n := range link {
		total += n
		if l, ok := ssrcs[s]; ok && l == 0 {
			low += n
		}
	}
	t.Logf("low demand: link inbound bytes/s by ssrc %v (layer of ssrc %v), payload by layer %v", link, ssrcs, layers)
	if layers[0] == 0 || layers[1] != 0 || layers[2] != 0 {
		t.Errorf("payload bytes by layer = %v, want layer 0 only", layers)
	}
	if total == 0 || low != total {
		t.Errorf("link inbound RTP bytes = %d, of which layer 0 %d: want all layer 0", total, low)
	}
	if got := ptOutLayers(a, "b", prod.ID); len(got) != 1 || got[0] != 0 {
		t.Errorf("a serves layers %v to b, want [0]", got)
	}

	// Top layer: it flows and layer 0 stays; layer 1 never crosses.
	cons.SetLayer(2)
	ptWait(ctx, t, "layer 2 flowing to b", func() bool {
		_, l := window(200 * time.Millisecond)
		return l[2] > 0
	})
	ptWait(ctx, t, "layers 0 and 2 served", func() bool {
		got := ptOutLayers(a, "b", prod.ID)
		return len(got) == 2 && got[0] == 0 && got[1] == 2
	})
	time.Sleep(3 * time.Second) // past the hold: nothing more is dropped
	link, layers = window(time.Second)
	t.Logf("top demand: link inbound bytes/s by ssrc %v (layer of ssrc %v), payload by layer %v", link, layerSSRC(), layers)
	if layers[2] == 0 || layers[0] == 0 || layers[1] != 0 {
		t.Errorf("payload bytes by layer = %v, want layers 0 and 2", layers)
	}
	if got := ptOutLayers(a, "b", prod.ID); len(got) != 2 || got[0] != 0 || got[1] != 2 {
		t.Errorf("a serves layers %v to b, want [0 2]", got)
	}
	if _, target := cons.Layer(); target != 2 {
		t.Errorf("consumer targets layer %d, want 2", target)
	}
	for _, l := range remote.LayerStatus() {
		if l.Live != (l.Layer != 1) {
			t.Errorf("piped producer layer %d live = %v, want layers 0 and 2 live", l.Layer, l.Live)
		}
	}
	if f := b.failures(); len(f) != 0 {
		t.Errorf("OnLinkFailed calls = %v, want none", f)
	}
}
