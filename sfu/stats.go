package sfu

import (
	"sync"
	"sync/atomic"
)

// This file holds the engine's counters for metrics (Engine.Stats). The
// forward path only adds to atomics of its own producer (one writer each, so
// no cache line is shared between producers); everything else is counted
// where RTCP is handled or computed when a snapshot is taken.

// TrafficStats counts the RTP packets of one class of producers: Kind and
// whether they are Remote (piped in from another node). Bytes are RTP
// payload bytes (headers, header extensions and padding are not counted,
// since every hop rewrites them).
type TrafficStats struct {
	// Kind is the media kind of the producers counted.
	Kind Kind
	// Remote is true for producers piped in from another node.
	Remote bool
	// PacketsIn and BytesIn count packets handed to the producers (from
	// publishers for local producers, from node-to-node links for remote
	// ones).
	PacketsIn, BytesIn uint64
	// PacketsOut and BytesOut count packets written to the producers'
	// consumers (subscribers and links to other nodes), one per consumer.
	// Retransmissions are not included.
	PacketsOut, BytesOut uint64
}

// Stats is a snapshot of an engine's gauges and counters (Engine.Stats).
// Counters only grow for the lifetime of the engine.
type Stats struct {
	// Rooms is the number of open rooms.
	Rooms int
	// Participants is the number of local participants.
	Participants int
	// LocalProducers and RemoteProducers are the open producers published
	// on this node and piped in from other nodes.
	LocalProducers, RemoteProducers int
	// Consumers is the number of open consumers (subscriber tracks and
	// tracks sent over node-to-node links).
	Consumers int
	// Traffic has one entry per kind (audio, video) and origin (local,
	// remote), in that order.
	Traffic []TrafficStats
	// NACKs is the number of sequence numbers consumers asked to have
	// retransmitted (generic NACK).
	NACKs uint64
	// Retransmissions is the number of packets retransmitted from the
	// producers' caches in answer to NACKs.
	Retransmissions uint64
	// KeyframeRequests is the number of PLI/FIR packets received from
	// consumers.
	KeyframeRequests uint64
	// KeyframesRequested is the number of keyframe requests passed on to
	// the sources (publishers or the node a remote producer comes from),
	// after rate limiting (Config.KeyframeInterval).
	KeyframesRequested uint64
	// PublishDropped and PublishDroppedBytes count the RTP packets (and
	// their bytes, headers included) that local publishers sent beyond
	// Config.MaxPublishBitrate and that were dropped.
	PublishDropped, PublishDroppedBytes uint64
	// UnhandledDatagrams counts datagrams on the media UDP port that the
	// ICE mux could not route to a peer connection (neither from a known
	// address nor a STUN request for a known session): scans, garbage,
	// stale sessions.
	UnhandledDatagrams uint64
}

// trafficClasses is the number of (kind, origin) classes of TrafficStats.
const trafficClasses = 4

// trafficClass returns the index of a producer's class in Stats.Traffic.
func trafficClass(kind Kind, remote bool) int {
	i := 0
	if kind == KindVideo {
		i = 2
	}
	if remote {
		i++
	}
	return i
}

// traffic is one producer's RTP counters. Written by the producer's single
// writer (Producer.WriteRTP), read by Engine.Stats.
type traffic struct {
	packetsIn, bytesIn, packetsOut, bytesOut atomic.Uint64
}

// addTo adds the counters to t.
func (c *traffic) addTo(t *TrafficStats) {
	t.PacketsIn += c.packetsIn.Load()
	t.BytesIn += c.bytesIn.Load()
	t.PacketsOut += c.packetsOut.Load()
	t.BytesOut += c.bytesOut.Load()
}

// engineStats holds the engine's counters. The RTP counters live in the
// producers; a closing producer folds its counters into closed, under mu,
// so that a snapshot counts every packet once and never goes backwards.
type engineStats struct {
	mu     sync.Mutex // guards live and closed
	live   map[*Producer]struct{}
	closed [trafficClasses]TrafficStats

	events [eventCounters]atomic.Uint64 // by eventCounter
}

// eventCounter names one of the engine's RTCP-driven counters.
type eventCounter int

// The RTCP-driven counters of engineStats.events.
const (
	countNACK                eventCounter = iota // sequence numbers NACKed by consumers
	countResend                                  // packets retransmitted from a cache
	countKeyframeRequest                         // PLI/FIR received from consumers
	countKeyframeRequested                       // keyframe requests passed on to sources
	countPublishDropped                          // published packets over the bitrate cap
	countPublishDroppedBytes                     // their bytes
	countUnhandledDatagram                       // datagrams the ICE mux could not route
	eventCounters
)

func newEngineStats() *engineStats {
	return &engineStats{live: make(map[*Producer]struct{})}
}

// addProducer starts counting p's traffic. Nil-safe (tests build producers
// without an engine).
func (s *engineStats) addProducer(p *Producer) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.live[p] = struct{}{}
	s.mu.Unlock()
}

// removeProducer folds p's counters into the totals of closed producers.
func (s *engineStats) removeProducer(p *Producer) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if _, ok := s.live[p]; ok {
		delete(s.live, p)
		p.traffic.addTo(&s.closed[p.class])
	}
	s.mu.Unlock()
}

// count adds one to counter c. Nil-safe.
func (s *engineStats) count(c eventCounter) {
	if s != nil {
		s.events[c].Add(1)
	}
}

// Load returns the number of local participants and of producers published
// on this node: what placement and the cluster's node record count. It is
// cheaper than Stats (no traffic, no consumers) and allocates nothing per
// room.
func (e *Engine) Load() (participants, localProducers int) {
	s := e.stats
	s.mu.Lock()
	for p := range s.live {
		if p.owner != nil {
			localProducers++
		}
	}
	s.mu.Unlock()
	for _, r := range e.Rooms() {
		participants += r.localCount()
	}
	return participants, localProducers
}

// Stats returns a snapshot of the engine's gauges and counters. It takes
// the engine's locks briefly (like Rooms) and is meant to be called at
// metrics scrape time, not per packet.
func (e *Engine) Stats() Stats {
	s := e.stats
	st := Stats{
		Traffic:            make([]TrafficStats, trafficClasses),
		NACKs:              s.events[countNACK].Load(),
		Retransmissions:    s.events[countResend].Load(),
		KeyframeRequests:   s.events[countKeyframeRequest].Load(),
		KeyframesRequested: s.events[countKeyframeRequested].Load(),

		PublishDropped:      s.events[countPublishDropped].Load(),
		PublishDroppedBytes: s.events[countPublishDroppedBytes].Load(),
		UnhandledDatagrams:  s.events[countUnhandledDatagram].Load(),
	}
	for i := range st.Traffic {
		st.Traffic[i].Kind = KindAudio
		if i >= 2 {
			st.Traffic[i].Kind = KindVideo
		}
		st.Traffic[i].Remote = i%2 == 1
	}
	s.mu.Lock()
	producers := make([]*Producer, 0, len(s.live))
	for i, c := range s.closed {
		st.Traffic[i].PacketsIn = c.PacketsIn
		st.Traffic[i].BytesIn = c.BytesIn
		st.Traffic[i].PacketsOut = c.PacketsOut
		st.Traffic[i].BytesOut = c.BytesOut
	}
	for p := range s.live {
		p.traffic.addTo(&st.Traffic[p.class])
		producers = append(producers, p)
	}
	s.mu.Unlock()

	for _, p := range producers {
		if p.owner == nil {
			st.RemoteProducers++
		} else {
			st.LocalProducers++
		}
		p.mu.Lock()
		st.Consumers += len(p.consumers)
		p.mu.Unlock()
	}
	for _, r := range e.Rooms() {
		st.Rooms++
		st.Participants += r.localCount()
	}
	return st
}

// localCount returns the number of local participants of r.
func (r *Room) localCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.locals)
}
