package sfu

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Producer is one published track fanned out to consumers. Local producers
// are created by the engine for every track a participant publishes; remote
// ones by Room.AddProducer. A video producer has one or more layers
// (simulcast encodings, layer.go); each consumer receives one layer at a
// time, chosen by its subscriber's allocator (allocate.go), and sees one
// continuous stream across switches (munge.go). RTP is fanned out through a
// single track bound to every consumer's RTPSender (fanoutTrack: SSRC,
// payload type and numbering are set per binding, no per-consumer copy
// unless a VP8 picture ID must be rewritten, no allocation). Video layers
// keep their recent packets in one packetCache from which every consumer
// answers NACKs. The datagrams of one fan-out leave in batches (batchConn).
// All methods are safe for concurrent use.
type Producer struct {
	room     *Room
	info     ProducerInfo
	owner    *Participant // nil for remote producers
	mid      string       // local producers: the m-line on the publisher PC
	level    *levelMeter  // local audio producers: speaking detection; else nil
	track    *fanoutTrack
	layers   []*layer // by quality; at least one
	codec    codecKind
	clock    uint32
	batch    *batchConn // the engine socket's write batching
	interval time.Duration
	log      *slog.Logger
	stats    *engineStats // the engine's counters; nil in some unit tests
	class    int          // index of the producer's class in Stats.Traffic
	traffic  traffic      // RTP counters, written under wmu only

	seq uint64 // publish order; guarded by room.mu

	// registered is closed once room registration was attempted, so that
	// Close never reports ProducerRemoved before ProducerAdded.
	registered chan struct{}
	done       chan struct{}

	closedFlag  atomic.Bool // fast path for WriteRTP
	kfRequests  atomic.Uint64
	kfForwarded atomic.Uint64

	// wmu serialises everything written to the consumers: the layers'
	// packets (each layer has its own reader), NACK answers. It guards the
	// bindings' mungers, scratch, hdr and shards (the fan-out workers
	// writing a shard run while the writer holds it, shard.go).
	wmu     sync.Mutex
	scratch [maxCachedPayload]byte
	hdr     rtp.Header // the header of the packet being fanned out
	fanout  *fanoutPool
	shards  shardState

	demand demandState // dynacast (dynacast.go)
	dyn    *dynacast   // the engine's; nil in some unit tests

	mu        sync.Mutex // guards the fields below
	closing   bool
	consumers map[*Consumer]struct{}
}

func newProducer(r *Room, info ProducerInfo, kr KeyframeRequester, owner *Participant) (*Producer, error) {
	if KindOf(info.Codec.MimeType) == "" {
		return nil, fmt.Errorf("sfu: producer track: %w: codec %q", ErrInvalidArgument, info.Codec.MimeType)
	}
	if info.Kind != KindVideo || len(info.Layers) < 2 {
		info.Layers = nil
	} else {
		info.Layers = OrderLayers(info.Layers)
	}
	n := max(len(info.Layers), 1)
	p := &Producer{
		room:       r,
		info:       info,
		owner:      owner,
		track:      newFanoutTrack(info.Codec.Capability(), info.ID, info.ParticipantID),
		layers:     make([]*layer, n),
		codec:      codecKindOf(info.Codec.MimeType),
		clock:      info.Codec.ClockRate,
		batch:      r.e.tr.batch,
		interval:   r.e.cfg.KeyframeInterval,
		stats:      r.e.stats,
		class:      trafficClass(info.Kind, owner == nil),
		log:        r.log.With("producer", info.ID),
		registered: make(chan struct{}),
		done:       make(chan struct{}),
		consumers:  make(map[*Consumer]struct{}),
		dyn:        r.e.dyn,
		fanout:     r.e.fanout,
	}
	p.fanout.initShards(&p.shards)
	p.track.onBind = p.bound
	if info.Kind == KindAudio {
		p.codec = codecOther
	}
	if p.clock == 0 {
		p.clock = 90000
	}
	for i := range p.layers {
		l := &layer{index: i}
		if info.Kind == KindVideo {
			l.cache = &packetCache{}
		}
		p.layers[i] = l
	}
	if kr != nil {
		p.layers[0].kr.Store(&kr)
	}
	p.track.layered = n > 1
	return p, nil
}

// register adds the producer to its room. Called exactly once per producer,
// before Close can complete.
func (p *Producer) register() error {
	defer close(p.registered)
	if err := p.room.addProducer(p); err != nil {
		return err
	}
	p.stats.addProducer(p)
	p.dyn.add(p)
	return nil
}

// Info returns the producer's description (immutable).
func (p *Producer) Info() ProducerInfo { return p.info }

// Layers returns the number of layers (1 without simulcast).
func (p *Producer) Layers() int { return len(p.layers) }

// SetLayerKeyframeRequester sets where keyframe requests for layer go (the
// cluster sets one per piped layer; local producers set theirs when each
// encoding's track arrives). Errors: ErrInvalidArgument for a layer out of
// range.
func (p *Producer) SetLayerKeyframeRequester(layer int, kr KeyframeRequester) error {
	if layer < 0 || layer >= len(p.layers) {
		return fmt.Errorf("sfu: layer %d of %d: %w", layer, len(p.layers), ErrInvalidArgument)
	}
	if kr == nil {
		p.layers[layer].kr.Store(nil)
	} else {
		p.layers[layer].kr.Store(&kr)
	}
	return nil
}

// LayerStatus returns the producer's layers as they are now.
func (p *Producer) LayerStatus() []LayerStatus {
	now := time.Now().UnixNano()
	out := make([]LayerStatus, len(p.layers))
	for i, l := range p.layers {
		out[i] = LayerStatus{Layer: i, Live: l.live(now), Bitrate: int(l.bitrate.Load()),
			Width: int(l.width.Load()), Height: int(l.height.Load())}
		if !out[i].Live {
			out[i].Bitrate = 0
		}
		if i < len(p.info.Layers) {
			out[i].RID = p.info.Layers[i]
		}
	}
	return out
}

// WriteRTP forwards pkt as the producer's first (or only) layer; see
// WriteLayerRTP.
func (p *Producer) WriteRTP(pkt *rtp.Packet) error { return p.WriteLayerRTP(0, pkt) }

// WriteLayerRTP forwards pkt, a packet of the given layer, to the consumers
// receiving that layer (and switches consumers waiting for it at its
// keyframes): marker, CSRCs and payload are kept (VP8 picture IDs are
// rewritten after a switch), sequence number and timestamp continue the
// consumer's stream, SSRC and payload type are the consumer's, header
// extensions and padding are dropped. pkt is not retained or modified.
// Per-consumer write errors are ignored. Errors: ErrProducerClosed after
// Close, ErrInvalidArgument for a layer out of range. Each layer is written
// by one goroutine at a time. Steady state: no allocation.
func (p *Producer) WriteLayerRTP(layer int, pkt *rtp.Packet) error {
	if p.closedFlag.Load() {
		return ErrProducerClosed
	}
	if layer < 0 || layer >= len(p.layers) {
		return fmt.Errorf("sfu: write layer %d of %d: %w", layer, len(p.layers), ErrInvalidArgument)
	}
	l := p.layers[layer]
	if l.cache != nil {
		l.cache.put(pkt)
	}
	now := time.Now().UnixNano()
	var fi frameInfo
	if p.info.Kind == KindVideo {
		fi = inspect(p.codec, pkt.Payload)
	} else {
		fi.keyframe = true
	}
	size := uint64(len(pkt.Payload))
	p.wmu.Lock()
	defer p.wmu.Unlock()
	l.account(len(pkt.Payload), now)
	if fi.vp8.width > 0 {
		l.width.Store(int32(fi.vp8.width))
		l.height.Store(int32(fi.vp8.height))
	}
	p.traffic.packetsIn.Add(1)
	p.traffic.bytesIn.Add(size)
	bs := p.track.snapshot()
	var n int
	if k := p.fanout.shardCount(len(bs)); k > 1 {
		n = p.fanout.writeSharded(&p.shards, k, p.track, bs, int8(layer), pkt, &fi, p.clock, now, p.batch, p.scratch[:], &p.hdr)
	} else {
		n = p.writeAll(bs, int8(layer), pkt, &fi, now)
	}
	if n > 0 {
		p.traffic.packetsOut.Add(uint64(n))
		p.traffic.bytesOut.Add(uint64(n) * size)
	}
	return nil
}

// writeAll fans pkt out to every binding of bs on this goroutine, in one
// burst of the batching socket. Called with wmu held.
func (p *Producer) writeAll(bs []*trackBinding, layer int8, pkt *rtp.Packet, fi *frameInfo, now int64) int {
	if len(bs) > 1 { // one datagram gains nothing from a batch
		p.batch.begin()
		defer p.batch.end() // never leave a burst open: other writers would wait for it
	}
	return p.track.write(bs, layer, pkt, fi, p.clock, now, p.scratch[:], &p.hdr)
}

// resend answers a NACK of the consumer bound as b for its output sequence
// number seq from the cache of the layer it was sent from, on the
// consumer's RTX stream when negotiated (the original sequence number
// first in the payload), else as the original packet. h and buf are the
// caller's scratch space (buf holds maxCachedPayload+2 bytes). It reports
// whether the packet was found.
func (p *Producer) resend(b *trackBinding, seq uint16, h *rtp.Header, buf []byte) bool {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	mp, in, ok := b.m.lookup(seq)
	if !ok || int(mp.layer) >= len(p.layers) || mp.layer < 0 {
		return false
	}
	c := p.layers[mp.layer].cache
	if c == nil {
		return false
	}
	payload, ok := c.get(in, h, buf)
	if !ok || !b.allowResend(time.Now().UnixNano()) {
		return false
	}
	if p.codec == codecVP8 && (mp.pidOff != 0 || mp.tl0Off != 0) {
		fi := frameInfo{vp8: parseVP8(payload)}
		payload = mp.patch(buf, payload, &fi)
	}
	h.Timestamp += mp.tsOff
	if b.rtxSSRC != 0 && len(payload)+2 <= len(buf) {
		n := copy(buf[2:], payload)
		binary.BigEndian.PutUint16(buf, seq)
		payload = buf[:n+2]
		h.SequenceNumber = b.rtxSeq
		b.rtxSeq++
		h.SSRC = b.rtxSSRC
		h.PayloadType = b.rtxPT
	} else {
		h.SequenceNumber = seq
		h.SSRC = b.ssrc
		h.PayloadType = b.payloadType
	}
	_, _ = b.w.WriteRTP(h, payload)
	return true
}

// NewConsumer adds the producer's track to pc (a subscriber PC or a cluster
// pipe PC) with stream id = ParticipantID and track id = producer ID, starts
// reading RTCP from the sender (PLI/FIR are forwarded to RequestKeyframe)
// and requests a keyframe. The caller renegotiates pc and closes the
// consumer (or closes the producer, which closes all its consumers).
// Errors: ErrInvalidArgument for a nil pc, ErrProducerClosed.
func (p *Producer) NewConsumer(pc *webrtc.PeerConnection) (*Consumer, error) {
	return p.attachConsumer(pc, false, func(t webrtc.TrackLocal) (*webrtc.RTPSender, error) { return pc.AddTrack(t) })
}

// NewSendonlyConsumer is NewConsumer on a new sendonly transceiver of pc
// (AddTransceiverFromTrack) instead of AddTrack. AddTrack reuses any
// transceiver of the track's kind that has no sender; on the offering side
// that includes transceivers it only receives on, which it turns sendrecv.
// The cluster links' offerer uses this to keep the m-lines it sends on
// apart from the recvonly ones it offers to the peer. Addition to the spec.
func (p *Producer) NewSendonlyConsumer(pc *webrtc.PeerConnection) (*Consumer, error) {
	return p.attachConsumer(pc, false, func(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		return tr.Sender(), nil
	})
}

// attachConsumer creates a consumer whose sender add attaches to pc; a
// shared one (Viewer) has no RTCP reader of its own and leaves the sender
// open when it closes.
func (p *Producer) attachConsumer(pc *webrtc.PeerConnection, shared bool, add func(webrtc.TrackLocal) (*webrtc.RTPSender, error)) (*Consumer, error) {
	if pc == nil {
		return nil, fmt.Errorf("sfu: new consumer: %w: nil peer connection", ErrInvalidArgument)
	}
	if p.closedFlag.Load() {
		return nil, ErrProducerClosed
	}
	sender, err := add(p.track)
	if err != nil {
		return nil, fmt.Errorf("sfu: new consumer for %s: add track: %w", p.info.ID, err)
	}
	c := newConsumer(p, pc, sender)
	c.shared = shared
	// Started before it is listed: Close, which waits for the consumer's
	// reader, may run as soon as it is.
	if !shared {
		c.start()
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		c.Close()
		return nil, ErrProducerClosed
	}
	p.consumers[c] = struct{}{}
	p.mu.Unlock()
	c.setLayer(0, 0) // the lowest layer until the subscriber's allocator decides
	c.requestKeyframe()
	return c, nil
}

// continuation returns the numbering state of the sender with SSRC ssrc
// (its binding's munger), for a Viewer that moves the sender to another
// producer (fanoutTrack.seed); false when the sender is not bound.
func (p *Producer) continuation(ssrc uint32) (munger, bool) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	b := p.track.binding(ssrc)
	if b == nil || !b.m.started {
		return munger{}, false
	}
	m := b.m
	m.layer = -1
	m.cur.valid, m.prev.valid = false, false
	return m, true
}

// removeConsumer forgets c (called by Consumer.Close).
func (p *Producer) removeConsumer(c *Consumer) {
	p.mu.Lock()
	delete(p.consumers, c)
	p.mu.Unlock()
}

// RequestKeyframe asks the source of every layer for a keyframe (see
// requestLayerKeyframe). No-op for audio and after Close. Never blocks
// (beyond the KeyframeRequesters).
func (p *Producer) RequestKeyframe() {
	for i := range p.layers {
		p.requestLayerKeyframe(i)
	}
}

// bound is called when a sender of the track was bound (negotiated): it
// asks for a keyframe of the consumer's layer, since one requested when
// the consumer was created may have passed before there was a binding to
// forward it to. A held consumer (transport not connected) asks on
// release instead.
func (p *Producer) bound(w *layerWant) {
	if w.held.Load() {
		return
	}
	if t := w.target.Load(); t >= 0 {
		p.requestLayerKeyframe(int(t))
	}
}

// requestLayerKeyframe asks layer i's source for a keyframe, at most once
// per Config.KeyframeInterval per layer (requests in between are dropped).
func (p *Producer) requestLayerKeyframe(i int) {
	if p.info.Kind != KindVideo || p.closedFlag.Load() || i < 0 || i >= len(p.layers) {
		return
	}
	l := p.layers[i]
	kr := l.kr.Load()
	if kr == nil {
		return
	}
	p.kfRequests.Add(1)
	now := time.Now().UnixNano()
	last := l.lastKeyframe.Load()
	if last != 0 && now-last < int64(p.interval) {
		return
	}
	if !l.lastKeyframe.CompareAndSwap(last, now) {
		return // a concurrent request won
	}
	p.kfForwarded.Add(1)
	p.stats.count(countKeyframeRequested)
	(*kr).RequestKeyframe()
}

// keyframeStats returns how many keyframe requests were received and
// forwarded (for tests).
func (p *Producer) keyframeStats() (requested, forwarded uint64) {
	return p.kfRequests.Load(), p.kfForwarded.Load()
}

// Close stops the producer: closes its consumers, removes it from the room
// (other local participants get producer-removed and renegotiate; for local
// producers the Observer gets ProducerRemoved). Idempotent; a concurrent
// second call waits until the first completed. Must not be called from an
// EventHandler or Observer callback.
func (p *Producer) Close() {
	<-p.registered
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closing = true
	p.closedFlag.Store(true)
	consumers := make([]*Consumer, 0, len(p.consumers))
	for c := range p.consumers {
		consumers = append(consumers, c)
	}
	p.mu.Unlock()

	for _, c := range consumers {
		c.Close()
	}
	p.room.removeProducer(p)
	if p.level != nil {
		p.room.e.speakers.remove(p)
	}
	p.dyn.remove(p)
	p.stats.removeProducer(p)
	close(p.done)
	p.log.Debug("producer closed")
}

// Done is closed when Close completed.
func (p *Producer) Done() <-chan struct{} { return p.done }

func (p *Producer) isClosed() bool { return p.closedFlag.Load() }
