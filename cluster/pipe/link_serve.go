package pipe

import (
	"errors"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// servedPipe is one local producer sent to the peer on a link.
type servedPipe struct {
	key      pipeKey
	pipeID   string // the peer's pipe instance
	producer *sfu.Producer
	consumer *sfu.Consumer
	ssrc     uint32        // SSRC of the link sender (announced, and used for BYE)
	stop     chan struct{} // closed when no longer served
}

// dedupeRefs validates a wanted list from the peer: the first entry of a
// key counts, invalid entries are rejected. order keeps the wire order.
func dedupeRefs(refs []PipeRef) (order []PipeRef, rejected []RejectedPipe) {
	seen := make(map[pipeKey]bool, len(refs))
	for _, w := range refs {
		k := pipeKey{room: w.Room, producer: w.ProducerID}
		if seen[k] {
			continue // listed twice: serve once, report once
		}
		seen[k] = true
		if !validID(w.Room) || !validID(w.ProducerID) || len(w.PipeID) > maxIDLength {
			rejected = append(rejected, RejectedPipe{Room: w.Room, ProducerID: w.ProducerID, PipeID: w.PipeID, Reason: RejectInvalid})
			continue
		}
		order = append(order, w)
	}
	return order, rejected
}

// reconcileServes makes the served set exactly the peer's wanted set:
// senders no longer wanted, whose producer closed, or wanted as a new pipe
// instance are removed (first, which frees their producer's track), newly
// wanted local producers are attached. It returns the accepted entries
// (with SSRC and, when already known, mid) and the rejected ones. Called
// only from the link's negotiation step (serialized): on the controller
// before it creates the offer, on the answerer after it applied the offer.
func (l *link) reconcileServes(wantedRefs []PipeRef) ([]AcceptedPipe, []RejectedPipe) {
	wanted, rejected := dedupeRefs(wantedRefs)
	ids := make(map[pipeKey]string, len(wanted))
	for _, w := range wanted {
		ids[pipeKey{room: w.Room, producer: w.ProducerID}] = w.PipeID
	}
	var drop []*servedPipe
	l.mu.Lock()
	for k, s := range l.serves {
		if id, ok := ids[k]; !ok || id != s.pipeID || isDone(s.producer.Done()) {
			delete(l.serves, k)
			drop = append(drop, s)
		}
	}
	l.mu.Unlock()
	for _, s := range drop {
		close(s.stop)
		s.consumer.Close()
	}

	accepted := make([]AcceptedPipe, 0, len(wanted))
	if rejected == nil {
		rejected = []RejectedPipe{}
	}
	for _, w := range wanted {
		k := pipeKey{room: w.Room, producer: w.ProducerID}
		s, reason := l.serve(k, w.PipeID)
		if reason != "" {
			rejected = append(rejected, RejectedPipe{Room: w.Room, ProducerID: w.ProducerID, PipeID: w.PipeID, Reason: reason})
			continue
		}
		accepted = append(accepted, AcceptedPipe{Room: w.Room, ProducerID: w.ProducerID, PipeID: w.PipeID, SSRC: s.ssrc})
	}
	return accepted, rejected
}

// serve makes sure the local producer k is sent on the link for pipe
// instance pipeID and returns it, or the reason it cannot be served.
func (l *link) serve(k pipeKey, pipeID string) (*servedPipe, string) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, RejectShuttingDown
	}
	if s := l.serves[k]; s != nil {
		l.mu.Unlock()
		return s, "" // still served (stale entries were dropped before)
	}
	l.mu.Unlock()

	room := l.p.engine.Room(k.room)
	if room == nil {
		return nil, RejectRoomNotFound
	}
	prod := room.Producer(k.producer)
	if prod == nil {
		return nil, RejectUnknownProducer
	}
	info := prod.Info()
	if info.Remote || info.Origin != l.p.cfg.NodeID {
		// Only the node where a producer was published serves it: piping
		// onward could loop and would double the hops.
		return nil, RejectRemoteProducer
	}
	// The controller sends on sendonly m-lines of its own; the answerer's
	// AddTrack takes the recvonly m-lines the controller offered for it.
	newConsumer := prod.NewConsumer
	if l.role.sendsOnOwnLines() {
		newConsumer = prod.NewSendonlyConsumer
	}
	cons, err := newConsumer(l.pc)
	if err == nil {
		// One pipe carries one layer: the top one (every subscriber on the
		// receiving node gets it).
		cons.SetLayer(prod.Layers() - 1)
	}
	if err != nil {
		if errors.Is(err, sfu.ErrProducerClosed) {
			return nil, RejectProducerClosed
		}
		l.log.Warn("attaching producer to link failed", "room", k.room, "producer", k.producer, "err", err)
		return nil, RejectConsumerFailed
	}
	if !l.role.sendsOnOwnLines() && midOf(l.pc, cons.Sender()) == "" {
		// AddTrack found no m-line of the offer to reuse (the controller
		// offers one recvonly m-line per new pipe instance, so this means
		// the peer is confused): the track could not be sent.
		cons.Close()
		l.log.Warn("no free m-line in the offer for a served producer", "room", k.room, "producer", k.producer)
		return nil, RejectNoSlot
	}
	s := &servedPipe{key: k, pipeID: pipeID, producer: prod, consumer: cons, ssrc: senderSSRC(cons.Sender()), stop: make(chan struct{})}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		cons.Close()
		return nil, RejectShuttingDown
	}
	l.serves[k] = s
	l.p.wg.Add(1)
	l.mu.Unlock()
	go l.watch(s)
	l.log.Info("serving producer", "room", k.room, "producer", k.producer, "pipe", pipeID, "ssrc", s.ssrc)
	return s, ""
}

// fillMids sets the mid of every accepted entry from its sender's
// transceiver (known once the offer was created, or the answerer applied
// it).
func (l *link) fillMids(accepted []AcceptedPipe) {
	mids := make(map[pipeKey]string, len(accepted))
	l.mu.Lock()
	for k, s := range l.serves {
		mids[k] = midOf(l.pc, s.consumer.Sender())
	}
	l.mu.Unlock()
	for i := range accepted {
		accepted[i].Mid = mids[pipeKey{room: accepted[i].Room, producer: accepted[i].ProducerID}]
	}
}

// watch sends an RTCP BYE for s's SSRC when its producer closes while it
// is served, so the peer drops the pipe without waiting for the registry.
func (l *link) watch(s *servedPipe) {
	defer l.p.wg.Done()
	select {
	case <-s.producer.Done():
	case <-s.stop:
		return
	case <-l.done:
		return
	}
	if s.ssrc == 0 {
		return
	}
	if err := l.pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: []uint32{s.ssrc}, Reason: "producer closed"}}); err != nil {
		l.log.Debug("writing BYE on link failed", "producer", s.key.producer, "err", err)
	}
}

// midOf returns the mid of sender's transceiver on pc, "" when it has
// none (yet) or sender is not on pc.
func midOf(pc *webrtc.PeerConnection, sender *webrtc.RTPSender) string {
	if sender != nil {
		for _, t := range pc.GetTransceivers() {
			if t.Sender() == sender {
				return t.Mid()
			}
		}
	}
	return ""
}

// senderSSRC returns the SSRC of a link sender, or 0.
func senderSSRC(s *webrtc.RTPSender) uint32 {
	if s == nil {
		return 0
	}
	if enc := s.GetParameters().Encodings; len(enc) > 0 {
		return uint32(enc[0].SSRC)
	}
	return 0
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
