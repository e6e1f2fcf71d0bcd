package sfu

import (
	"errors"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Reading published tracks: one goroutine per incoming track (and
// simulcast encoding) creates the track's Producer and forwards its RTP.

// pubTrack is one published track being read: a producer and the
// readers of its layers (one per simulcast encoding).
type pubTrack struct {
	prod    *Producer     // nil until created, and when creation failed
	readers int           // guarded by Participant.mu
	ready   chan struct{} // closed once prod was registered (or failed)
}

// onTrack runs on pion's goroutine of one incoming track (one per
// simulcast encoding): the first encoding of a transceiver creates its
// Producer (with every encoding the SDP announced as a layer), each one
// forwards its RTP into its layer until the track ends or the producer
// closes; the last reader closes the producer. The goroutines are counted
// in p.wg so that Close waits for them.
func (p *Participant) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	pc := p.pubPC
	p.wg.Add(1)
	pt := p.pubTracks[receiver]
	creator := pt == nil
	if creator {
		pt = &pubTrack{ready: make(chan struct{})}
		p.pubTracks[receiver] = pt
	}
	pt.readers++
	p.mu.Unlock()
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		pt.readers--
		last := pt.readers == 0
		if last {
			delete(p.pubTracks, receiver)
		}
		p.mu.Unlock()
		if last && pt.prod != nil {
			pt.prod.Close()
			p.mu.Lock()
			delete(p.producers, pt.prod.info.ID)
			p.mu.Unlock()
			p.log.Info("producer stopped", "producer", pt.prod.info.ID)
		}
	}()
	if creator {
		pt.prod = p.newLocalProducer(track, receiver, pc)
		close(pt.ready)
	} else {
		select {
		case <-pt.ready:
		case <-p.closingCh:
			return
		}
	}
	prod := pt.prod
	if prod == nil {
		return
	}
	layer := 0
	for i, rid := range prod.info.Layers {
		if rid == track.RID() {
			layer = i
		}
	}
	ssrc := uint32(track.SSRC())
	_ = prod.SetLayerKeyframeRequester(layer, KeyframeRequesterFunc(func() {
		_ = pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
	}))
	if track.RID() != "" {
		p.log.Debug("simulcast layer started", "producer", prod.info.ID, "rid", track.RID(), "layer", layer)
	}
	forward(track, prod, layer, p)
}

// newLocalProducer creates and registers the producer of a published
// track; nil when the participant is closing or registration failed.
func (p *Participant) newLocalProducer(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver, pc *webrtc.PeerConnection) *Producer {
	codec := CodecFrom(track.Codec())
	info := ProducerInfo{
		ID:              newID(),
		Kind:            KindOf(codec.MimeType),
		ParticipantID:   p.id,
		ParticipantName: p.info.Name,
		Codec:           codec,
		Origin:          p.e.cfg.NodeID,
	}
	if info.Kind == "" {
		p.log.Warn("ignoring track with unknown kind", "mime", codec.MimeType)
		return nil
	}
	if track.RID() != "" {
		for _, t := range receiver.Tracks() {
			if t.RID() != "" {
				info.Layers = append(info.Layers, t.RID())
			}
		}
	}
	mid := ""
	for _, tr := range pc.GetTransceivers() {
		if tr.Receiver() == receiver {
			mid = tr.Mid()
		}
	}
	p.mu.Lock()
	info.Source = p.sources[mid]
	p.mu.Unlock()
	if info.Source == "" || (info.Kind == KindAudio) != (info.Source == SourceMicrophone || info.Source == SourceScreenAudio) {
		info.Source = SourceCamera
		if info.Kind == KindAudio {
			info.Source = SourceMicrophone
		}
	}
	prod, err := newProducer(p.room, info, nil, p)
	if err != nil {
		p.log.Error("create producer", "err", err)
		return nil
	}
	prod.mid = mid
	if info.Kind == KindAudio {
		prod.level = newLevelMeter(audioLevelID(receiver))
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		close(prod.registered)
		return nil
	}
	if len(p.producers) >= MaxSources {
		p.mu.Unlock()
		close(prod.registered)
		p.log.Warn("ignoring track: too many producers", "max", MaxSources, "kind", info.Kind)
		return nil
	}
	p.producers[info.ID] = prod
	p.mu.Unlock()
	if err := prod.register(); err != nil {
		if !errors.Is(err, ErrParticipantClosed) && !errors.Is(err, ErrRoomClosed) {
			p.log.Error("register producer", "err", err)
		}
		prod.Close()
		p.mu.Lock()
		delete(p.producers, info.ID)
		p.mu.Unlock()
		return nil
	}
	p.log.Info("producer started", "producer", info.ID, "kind", info.Kind, "source", info.Source, "codec", codec.MimeType,
		"layers", len(prod.layers))
	if prod.level != nil {
		p.e.speakers.add(prod)
	}
	return prod
}

// forward copies RTP from track into layer of prod until either ends,
// through ParseForwarded, dropping what exceeds the publisher's bitrate cap
// (owner.admitPublished); the packet and buffer are reused (no per-packet
// allocation).
func forward(track *webrtc.TrackRemote, prod *Producer, layer int, owner *Participant) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		if !owner.admitPublished(n, time.Now().UnixNano()) {
			continue
		}
		if !parseForwarded(&pkt, buf[:n], prod.level) {
			continue
		}
		if prod.WriteLayerRTP(layer, &pkt) != nil {
			return
		}
	}
}
