package pipe

import (
	"errors"
	"slices"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/confab/confab/sfu"
)

// servedPipe is one local producer sent to the peer on a link: one link
// track (its top layer), or for a layered pipe one track per layer the
// peer wants. tracks is guarded by the link's mu.
type servedPipe struct {
	key      pipeKey
	pipeID   string // the peer's pipe instance
	layered  bool   // the peer asked for layers (PipeRef.Layers)
	producer *sfu.Producer
	tracks   []*servedTrack // ascending layers
	stop     chan struct{}  // closed when no longer served
}

// servedTrack is one link sender of a served producer: a consumer pinned
// to one layer. Pinned consumers count in the producer's dynacast demand,
// so the origin's publisher sends the layers the peer wants.
type servedTrack struct {
	layer    int
	consumer *sfu.Consumer
	ssrc     uint32 // SSRC of the link sender (announced, and used for BYE)
}

// consumersLocked returns the consumers of s. Caller holds the link mu.
func (s *servedPipe) consumersLocked() []*sfu.Consumer {
	cs := make([]*sfu.Consumer, len(s.tracks))
	for i, t := range s.tracks {
		cs[i] = t.consumer
	}
	return cs
}

// acceptedLocked is s on the wire (mids are filled by fillMids). Caller
// holds the link mu.
func (s *servedPipe) acceptedLocked() AcceptedPipe {
	a := AcceptedPipe{Room: s.key.room, ProducerID: s.key.producer, PipeID: s.pipeID}
	if !s.layered {
		if len(s.tracks) > 0 {
			a.SSRC = s.tracks[0].ssrc
		}
		return a
	}
	a.Layers = make([]PipeLayer, 0, len(s.tracks))
	for _, t := range s.tracks {
		a.Layers = append(a.Layers, PipeLayer{Layer: t.layer, SSRC: t.ssrc})
	}
	return a
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
		if !validID(w.Room) || !validID(w.ProducerID) || len(w.PipeID) > maxIDLength ||
			len(w.Layers) > maxPipeLayers || slices.ContainsFunc(w.Layers, func(l int) bool { return l < 0 || l >= maxPipeLayers }) {
			rejected = append(rejected, RejectedPipe{Room: w.Room, ProducerID: w.ProducerID, PipeID: w.PipeID, Reason: RejectInvalid})
			continue
		}
		order = append(order, w)
	}
	return order, rejected
}

// reconcileServes makes the served set exactly the peer's wanted set:
// senders no longer wanted, whose producer closed, or wanted as a new pipe
// instance are removed (first, which frees their producer's track), as are
// layer tracks no longer wanted; newly wanted local producers and layers
// are attached. It returns the accepted entries (with SSRCs and, when
// already known, mids) and the rejected ones. Called only from the link's
// negotiation step (serialized): on the controller before it creates the
// offer, on the answerer after it applied the offer.
func (l *link) reconcileServes(wantedRefs []PipeRef) ([]AcceptedPipe, []RejectedPipe) {
	wanted, rejected := dedupeRefs(wantedRefs)
	refs := make(map[pipeKey]PipeRef, len(wanted))
	for _, w := range wanted {
		refs[pipeKey{room: w.Room, producer: w.ProducerID}] = w
	}
	var (
		drop    []*servedPipe
		closing []*sfu.Consumer
	)
	l.mu.Lock()
	for k, s := range l.serves {
		w, ok := refs[k]
		if !ok || w.PipeID != s.pipeID || (w.Layers != nil) != s.layered || isDone(s.producer.Done()) {
			delete(l.serves, k)
			drop = append(drop, s)
			closing = append(closing, s.consumersLocked()...)
			continue
		}
		layers := servedLayers(w, s.producer)
		s.tracks = slices.DeleteFunc(s.tracks, func(t *servedTrack) bool {
			if slices.Contains(layers, t.layer) {
				return false
			}
			closing = append(closing, t.consumer)
			return true
		})
	}
	l.mu.Unlock()
	for _, s := range drop {
		s.stopOnce()
	}
	for _, c := range closing {
		c.Close()
	}

	accepted := make([]AcceptedPipe, 0, len(wanted))
	if rejected == nil {
		rejected = []RejectedPipe{}
	}
	for _, w := range wanted {
		a, reason := l.serve(w)
		if reason != "" {
			rejected = append(rejected, RejectedPipe{Room: w.Room, ProducerID: w.ProducerID, PipeID: w.PipeID, Reason: reason})
			continue
		}
		accepted = append(accepted, a)
	}
	return accepted, rejected
}

// servedLayers returns the layers of prod to send for w: its top layer
// for a pipe without layers, else the wanted layers prod has.
func servedLayers(w PipeRef, prod *sfu.Producer) []int {
	n := prod.Layers()
	if w.Layers == nil {
		return []int{n - 1}
	}
	out := make([]int, 0, len(w.Layers))
	for _, layer := range w.Layers {
		if layer < n && !slices.Contains(out, layer) {
			out = append(out, layer)
		}
	}
	slices.Sort(out)
	return out
}

// stopOnce closes s.stop (a dropped served pipe); idempotent.
func (s *servedPipe) stopOnce() {
	if !isDone(s.stop) {
		close(s.stop)
	}
}

// serve makes sure the local producer w names is sent on the link for
// pipe instance w.PipeID, with a track per wanted layer, and returns its
// accepted entry, or the reason it cannot be served.
func (l *link) serve(w PipeRef) (AcceptedPipe, string) {
	k := pipeKey{room: w.Room, producer: w.ProducerID}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return AcceptedPipe{}, RejectShuttingDown
	}
	s := l.serves[k]
	l.mu.Unlock()

	fresh := s == nil
	if fresh {
		if may := l.p.cfg.MayServe; may != nil && !may(l.peer, k.room) {
			return AcceptedPipe{}, RejectNotInRoom
		}
		room := l.p.engine.Room(k.room)
		if room == nil {
			return AcceptedPipe{}, RejectRoomNotFound
		}
		prod := room.Producer(k.producer)
		if prod == nil {
			return AcceptedPipe{}, RejectUnknownProducer
		}
		info := prod.Info()
		if info.Remote || info.Origin != l.p.cfg.NodeID {
			// Only the node where a producer was published serves it: piping
			// onward could loop and would double the hops.
			return AcceptedPipe{}, RejectRemoteProducer
		}
		s = &servedPipe{key: k, pipeID: w.PipeID, layered: w.Layers != nil, producer: prod, stop: make(chan struct{})}
	}
	// Only this (serialized) step changes s.tracks: reading it unlocked
	// here is safe; writes take the lock for Status and shutdown.
	for _, layer := range servedLayers(w, s.producer) {
		if slices.ContainsFunc(s.tracks, func(t *servedTrack) bool { return t.layer == layer }) {
			continue
		}
		t, reason := l.attachLayer(s, layer)
		if reason != "" {
			l.mu.Lock()
			cs := s.consumersLocked()
			if !fresh && l.serves[k] == s {
				delete(l.serves, k)
			}
			s.tracks = nil
			l.mu.Unlock()
			s.stopOnce()
			for _, c := range cs {
				c.Close()
			}
			return AcceptedPipe{}, reason
		}
		l.mu.Lock()
		if l.closed {
			cs := append(s.consumersLocked(), t.consumer)
			l.mu.Unlock()
			for _, c := range cs { // idempotent: shutdown may close them too
				c.Close()
			}
			return AcceptedPipe{}, RejectShuttingDown
		}
		s.tracks = append(s.tracks, t)
		slices.SortFunc(s.tracks, func(a, b *servedTrack) int { return a.layer - b.layer })
		l.mu.Unlock()
		l.log.Info("serving producer", "room", k.room, "producer", k.producer, "pipe", w.PipeID, "layer", layer, "ssrc", t.ssrc)
	}
	l.mu.Lock()
	if l.closed {
		cs := s.consumersLocked()
		l.mu.Unlock()
		for _, c := range cs { // shutdown did not see a fresh s
			c.Close()
		}
		return AcceptedPipe{}, RejectShuttingDown
	}
	if fresh {
		l.serves[k] = s
		l.p.wg.Add(1)
		go l.watch(s)
	}
	a := s.acceptedLocked()
	l.mu.Unlock()
	return a, ""
}

// attachLayer adds a link sender for layer of s's producer: a consumer
// pinned to that layer.
func (l *link) attachLayer(s *servedPipe, layer int) (*servedTrack, string) {
	// The controller sends on sendonly m-lines of its own; the answerer's
	// AddTrack takes the recvonly m-lines the controller offered for it.
	newConsumer := s.producer.NewConsumer
	if l.role.sendsOnOwnLines() {
		newConsumer = s.producer.NewSendonlyConsumer
	}
	cons, err := newConsumer(l.pc)
	if err != nil {
		if errors.Is(err, sfu.ErrProducerClosed) {
			return nil, RejectProducerClosed
		}
		l.log.Warn("attaching producer to link failed", "room", s.key.room, "producer", s.key.producer, "err", err)
		return nil, RejectConsumerFailed
	}
	cons.SetLayer(layer)
	if !l.role.sendsOnOwnLines() && midOf(l.pc, cons.Sender()) == "" {
		// AddTrack found no m-line of the offer to reuse (the controller
		// offers one recvonly m-line per new track it wants, so this
		// means the peer is confused): the track could not be sent.
		cons.Close()
		l.log.Warn("no free m-line in the offer for a served producer", "room", s.key.room, "producer", s.key.producer, "layer", layer)
		return nil, RejectNoSlot
	}
	return &servedTrack{layer: layer, consumer: cons, ssrc: senderSSRC(cons.Sender())}, ""
}

// fillMids sets the mids of every accepted entry from its senders'
// transceivers (known once the offer was created, or the answerer applied
// it).
func (l *link) fillMids(accepted []AcceptedPipe) {
	type trackKey struct {
		k     pipeKey
		layer int
	}
	mids := make(map[trackKey]string, len(accepted))
	l.mu.Lock()
	for k, s := range l.serves {
		for _, t := range s.tracks {
			mids[trackKey{k, t.layer}] = midOf(l.pc, t.consumer.Sender())
			if !s.layered {
				mids[trackKey{k, -1}] = mids[trackKey{k, t.layer}]
			}
		}
	}
	l.mu.Unlock()
	for i := range accepted {
		a := &accepted[i]
		k := pipeKey{room: a.Room, producer: a.ProducerID}
		if a.Layers == nil {
			a.Mid = mids[trackKey{k, -1}]
		}
		for j := range a.Layers {
			a.Layers[j].Mid = mids[trackKey{k, a.Layers[j].Layer}]
		}
	}
}

// watch sends an RTCP BYE for s's SSRCs when its producer closes while it
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
	l.mu.Lock()
	var ssrcs []uint32
	for _, t := range s.tracks {
		if t.ssrc != 0 {
			ssrcs = append(ssrcs, t.ssrc)
		}
	}
	l.mu.Unlock()
	if len(ssrcs) == 0 {
		return
	}
	if err := l.pc.WriteRTCP([]rtcp.Packet{&rtcp.Goodbye{Sources: ssrcs, Reason: "producer closed"}}); err != nil {
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
