package pipe

// The receiving side of a link's pipes: tracks arriving from the peer
// become (layers of) piped producers in local rooms, their RTCP and
// keyframe requests go back, and a simulcast producer's demand decides
// which layers are asked of the peer.

import (
	"errors"
	"io"
	"slices"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// demand applies the dynacast demand of pp's local producer (a bitmask of
// the layers its local subscribers need): when it changed, the peer is
// asked for exactly those layers in the next exchange. Called from the
// engine's dynacast goroutine; never blocks for long.
func (l *link) demand(pp *inPipe, mask uint8) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.pulls[pp.key] != pp || !pp.layered {
		return
	}
	n := len(pp.info.Layers)
	want := make([]int, 0, n)
	for i := range n {
		if mask&(1<<i) != 0 {
			want = append(want, i)
		}
	}
	if slices.Equal(want, pp.want) {
		return
	}
	for layer := range pp.slots {
		if !slices.Contains(want, layer) {
			delete(pp.slots, layer) // wanted again later: a new slot
		}
	}
	l.log.Debug("pipe layers wanted", "room", pp.key.room, "producer", pp.key.producer, "layers", want, "was", pp.want)
	pp.want = want
	l.changedLocked()
}

// onTrack binds an arriving track (track id = producer id, SSRC as
// announced) to its pull and starts forwarding. Runs on a pion goroutine.
func (l *link) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	id := track.ID()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	// Bind by the SSRC the peer announced for exactly this pipe instance
	// (recorded before the description carrying the track was applied).
	// Never by track id alone: the track of an earlier instance of the
	// same producer (dropped and wanted again) can still start late.
	ssrc := uint32(track.SSRC())
	var (
		pp *inPipe
		it *inTrack
	)
	for k, cand := range l.pulls {
		if k.producer != id || cand.state < pipeOffered || cand.state > pipeActive {
			continue
		}
		for _, t := range cand.tracks {
			if t.track == nil && t.ssrc != 0 && t.ssrc == ssrc {
				pp, it = cand, t
			}
		}
	}
	if pp == nil {
		l.mu.Unlock()
		// Not (or no longer) wanted: the next exchange removes it at the
		// peer. Not reading it only costs pion's bounded buffer.
		l.log.Debug("unexpected track on link", "track", id, "ssrc", track.SSRC())
		return
	}
	pp.state = pipeActive
	it.track, it.receiver = track, receiver
	creator := !pp.creating
	pp.creating = true
	pp.settleLocked(nil)
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.forward(pp, it, creator)
}

// addPipedProducer creates pp's local producer (from the first track that
// arrived) and closes pp.ready; nil when the pipe ended instead.
func (l *link) addPipedProducer(pp *inPipe, it *inTrack) *sfu.Producer {
	defer close(pp.ready)
	room := l.p.engine.Room(pp.key.room)
	if room == nil {
		l.endPipe(pp, RejectLocalRoomClosed)
		return nil
	}
	info := pp.info
	info.Remote = true
	info.Kind = kindOf(it.track.Kind(), info.Kind)
	info.Codec = sfu.CodecFrom(it.track.Codec())
	if !pp.layered {
		// The link carries one track: the piped producer has exactly the
		// one layer that flows.
		info.Layers = nil
	}
	// The creating track's keyframe requester is in place before any
	// local consumer can ask for a keyframe.
	ssrc := it.ssrc
	kr := sfu.KeyframeRequesterFunc(func() { l.requestKeyframe(ssrc) })
	var kr0 sfu.KeyframeRequester
	if it.layer == 0 {
		kr0 = kr
	}
	prod, err := room.AddProducer(info, kr0)
	if err == nil && it.layer != 0 {
		_ = prod.SetLayerKeyframeRequester(it.layer, kr) // layer in range
	}
	if err != nil {
		l.log.Warn("adding piped producer failed", "room", pp.key.room, "producer", pp.key.producer, "err", err)
		l.endPipe(pp, "adding local producer failed")
		return nil
	}
	l.mu.Lock()
	if l.closed || l.pulls[pp.key] != pp {
		l.mu.Unlock()
		prod.Close()
		return nil
	}
	pp.producer = prod
	l.mu.Unlock()
	if pp.layered {
		prod.OnDemand(func(layers uint8) { l.demand(pp, layers) })
	}
	l.log.Info("pipe active", "room", pp.key.room, "producer", pp.key.producer, "kind", info.Kind, "layers", prod.Layers())
	return prod
}

// forward feeds one link track of pp into its layer of the local producer
// (the first track of a pipe creates the producer) until the track ends
// (renegotiated away, link closed), the pipe no longer has it, or the
// producer is closed (Unpipe, local room closed).
func (l *link) forward(pp *inPipe, it *inTrack, creator bool) {
	defer l.p.wg.Done()
	var prod *sfu.Producer
	if creator {
		if prod = l.addPipedProducer(pp, it); prod == nil {
			return
		}
	} else {
		select {
		case <-pp.ready:
		case <-l.done:
			return
		}
	}
	l.mu.Lock()
	prod = pp.producer
	current := slices.Contains(pp.tracks, it)
	if prod == nil || !current || l.closed {
		l.mu.Unlock()
		return
	}
	ssrc := it.ssrc
	_ = prod.SetLayerKeyframeRequester(it.layer, sfu.KeyframeRequesterFunc(func() { l.requestKeyframe(ssrc) })) // layer in range
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.readRTCP(pp, it.receiver, ssrc)
	l.log.Debug("pipe track active", "room", pp.key.room, "producer", pp.key.producer, "layer", it.layer, "ssrc", ssrc)

	// One buffer and packet for the track's lifetime (WriteLayerRTP does
	// not retain the packet): no allocation per packet.
	buf := make([]byte, linkReadBuffer)
	var pkt rtp.Packet
	for {
		n, _, err := it.track.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue // larger than any MTU: pion dropped it
		}
		if err != nil {
			l.trackEnded(pp, it)
			return
		}
		if !sfu.ParseForwarded(&pkt, buf[:n]) { // strips the link hop's extensions
			continue
		}
		it.packets.Add(1)
		it.bytes.Add(uint64(len(pkt.Payload)))
		if err := prod.WriteLayerRTP(it.layer, &pkt); errors.Is(err, sfu.ErrProducerClosed) {
			l.endPipe(pp, "local producer closed")
			return
		}
	}
}

// trackEnded handles the end of a link track of pp: the end of the pipe
// if pp still has it (its sender went away unasked), nothing when it was
// dropped (a layer no longer wanted, or replaced).
func (l *link) trackEnded(pp *inPipe, it *inTrack) {
	l.mu.Lock()
	current := l.pulls[pp.key] == pp && slices.Contains(pp.tracks, it)
	l.mu.Unlock()
	if current {
		l.endPipe(pp, "track ended")
	}
}

// linkReadBuffer is the size of a pipe's read buffer: more than pion's
// receive MTU (1460 bytes by default).
const linkReadBuffer = 1500

// readRTCP drains the RTCP the peer sends for pp's track and ends the pipe
// on an RTCP BYE for its SSRC (the peer's producer closed).
func (l *link) readRTCP(pp *inPipe, receiver *webrtc.RTPReceiver, ssrc uint32) {
	defer l.p.wg.Done()
	for {
		pkts, _, err := receiver.ReadRTCP()
		if err != nil {
			return
		}
		for _, pkt := range pkts {
			if bye, ok := pkt.(*rtcp.Goodbye); ok && slices.Contains(bye.Sources, ssrc) {
				l.endPipe(pp, "peer sent BYE")
				return
			}
		}
	}
}

// requestKeyframe queues a PLI for the link track with media SSRC ssrc.
// Called by the engine (piped producer's KeyframeRequester); never blocks.
func (l *link) requestKeyframe(ssrc uint32) {
	select {
	case l.keyframes <- ssrc:
	default:
	}
}
