package sfu

import (
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
// ones by Room.AddProducer. RTP is fanned out through a single track bound
// to every consumer's RTPSender (fanoutTrack: SSRC and payload type are set
// per binding, no per-consumer copy, no lock, no allocation). Video
// producers keep their recent packets in one packetCache from which every
// consumer answers NACKs. The datagrams of one fan-out leave in batches
// (batchConn). All methods are safe for concurrent use.
type Producer struct {
	room     *Room
	info     ProducerInfo
	owner    *Participant // nil for remote producers
	kr       KeyframeRequester
	track    *fanoutTrack
	cache    *packetCache // nil for audio (no NACK negotiated)
	batch    *batchConn   // the engine socket's write batching
	interval time.Duration
	log      *slog.Logger
	stats    *engineStats // the engine's counters; nil in some unit tests
	class    int          // index of the producer's class in Stats.Traffic
	traffic  traffic      // RTP counters, written by WriteRTP only

	seq uint64 // publish order; guarded by room.mu

	// registered is closed once room registration was attempted, so that
	// Close never reports ProducerRemoved before ProducerAdded.
	registered chan struct{}
	done       chan struct{}

	closedFlag   atomic.Bool  // fast path for WriteRTP
	lastKeyframe atomic.Int64 // unix nanos of the last forwarded keyframe request
	kfRequests   atomic.Uint64
	kfForwarded  atomic.Uint64

	mu        sync.Mutex // guards the fields below
	closing   bool
	consumers map[*Consumer]struct{}
}

func newProducer(r *Room, info ProducerInfo, kr KeyframeRequester, owner *Participant) (*Producer, error) {
	if KindOf(info.Codec.MimeType) == "" {
		return nil, fmt.Errorf("sfu: producer track: %w: codec %q", ErrInvalidArgument, info.Codec.MimeType)
	}
	var cache *packetCache
	if info.Kind == KindVideo {
		cache = &packetCache{}
	}
	return &Producer{
		room:       r,
		info:       info,
		owner:      owner,
		kr:         kr,
		track:      newFanoutTrack(info.Codec.Capability(), info.ID, info.ParticipantID),
		cache:      cache,
		batch:      r.e.tr.batch,
		interval:   r.e.cfg.KeyframeInterval,
		stats:      r.e.stats,
		class:      trafficClass(info.Kind, owner == nil),
		log:        r.log.With("producer", info.ID),
		registered: make(chan struct{}),
		done:       make(chan struct{}),
		consumers:  make(map[*Consumer]struct{}),
	}, nil
}

// register adds the producer to its room. Called exactly once per producer,
// before Close can complete.
func (p *Producer) register() error {
	defer close(p.registered)
	if err := p.room.addProducer(p); err != nil {
		return err
	}
	p.stats.addProducer(p)
	return nil
}

// Info returns the producer's description (immutable).
func (p *Producer) Info() ProducerInfo { return p.info }

// WriteRTP forwards pkt to all consumers: marker, sequence number,
// timestamp, CSRCs and payload are kept, SSRC and payload type are the
// consumer's, header extensions and padding are dropped (each sender adds
// its own extensions). pkt is not retained or modified. Per-consumer write
// errors (e.g. a consumer peer connection that just closed) are ignored;
// the only error is ErrProducerClosed after Close. Called by one goroutine
// at a time (the engine's reader for local producers, the cluster pipe for
// remote ones). Steady state: no allocation, no lock shared with other
// producers' consumers except the socket's batch queue.
func (p *Producer) WriteRTP(pkt *rtp.Packet) error {
	if p.closedFlag.Load() {
		return ErrProducerClosed
	}
	if p.cache != nil {
		p.cache.put(pkt)
	}
	size := uint64(len(pkt.Payload))
	p.traffic.packetsIn.Add(1)
	p.traffic.bytesIn.Add(size)
	bs := p.track.snapshot()
	if len(bs) > 1 { // one datagram gains nothing from a batch
		p.batch.begin()
		defer p.batch.end() // never leave a burst open: other writers would wait for it
	}
	p.track.write(bs, pkt)
	if n := uint64(len(bs)); n > 0 {
		p.traffic.packetsOut.Add(n)
		p.traffic.bytesOut.Add(n * size)
	}
	return nil
}

// resend answers a NACK of the consumer whose sender has SSRC ssrc for
// sequence number seq from the packet cache, through that sender only.
// h and buf are the caller's scratch space (buf holds maxCachedPayload
// bytes). It reports whether the packet was found.
func (p *Producer) resend(ssrc uint32, seq uint16, h *rtp.Header, buf []byte) bool {
	if p.cache == nil {
		return false
	}
	b := p.track.binding(ssrc)
	if b == nil {
		return false
	}
	payload, ok := p.cache.get(seq, h, buf)
	if !ok {
		return false
	}
	h.SSRC = b.ssrc
	h.PayloadType = b.payloadType
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
	return p.attachConsumer(pc, func(t webrtc.TrackLocal) (*webrtc.RTPSender, error) { return pc.AddTrack(t) })
}

// NewSendonlyConsumer is NewConsumer on a new sendonly transceiver of pc
// (AddTransceiverFromTrack) instead of AddTrack. AddTrack reuses any
// transceiver of the track's kind that has no sender; on the offering side
// that includes transceivers it only receives on, which it turns sendrecv.
// The cluster links' offerer uses this to keep the m-lines it sends on
// apart from the recvonly ones it offers to the peer. Addition to the spec.
func (p *Producer) NewSendonlyConsumer(pc *webrtc.PeerConnection) (*Consumer, error) {
	return p.attachConsumer(pc, func(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
		tr, err := pc.AddTransceiverFromTrack(t, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		return tr.Sender(), nil
	})
}

// attachConsumer creates a consumer whose sender add attaches to pc.
func (p *Producer) attachConsumer(pc *webrtc.PeerConnection, add func(webrtc.TrackLocal) (*webrtc.RTPSender, error)) (*Consumer, error) {
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
	// Started before it is listed: Close, which waits for the consumer's
	// reader, may run as soon as it is.
	c.start()
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		c.Close()
		return nil, ErrProducerClosed
	}
	p.consumers[c] = struct{}{}
	p.mu.Unlock()
	p.RequestKeyframe()
	return c, nil
}

// removeConsumer forgets c (called by Consumer.Close).
func (p *Producer) removeConsumer(c *Consumer) {
	p.mu.Lock()
	delete(p.consumers, c)
	p.mu.Unlock()
}

// RequestKeyframe asks the source for a keyframe, at most once per
// Config.KeyframeInterval (requests in between are dropped). No-op for
// audio and after Close. Never blocks (beyond the KeyframeRequester).
func (p *Producer) RequestKeyframe() {
	if p.info.Kind != KindVideo || p.kr == nil || p.closedFlag.Load() {
		return
	}
	p.kfRequests.Add(1)
	now := time.Now().UnixNano()
	last := p.lastKeyframe.Load()
	if last != 0 && now-last < int64(p.interval) {
		return
	}
	if !p.lastKeyframe.CompareAndSwap(last, now) {
		return // a concurrent request won
	}
	p.kfForwarded.Add(1)
	p.stats.count(countKeyframeRequested)
	p.kr.RequestKeyframe()
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
	p.stats.removeProducer(p)
	close(p.done)
	p.log.Debug("producer closed")
}

// Done is closed when Close completed.
func (p *Producer) Done() <-chan struct{} { return p.done }

func (p *Producer) isClosed() bool { return p.closedFlag.Load() }
