package pipe

import (
	"cmp"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
)

// LinkStats are the traffic and quality figures of this node's link with
// one peer node, for metrics. There is at most one link per peer, so a
// metric labelled by PeerNode has as many series as the cluster has nodes.
type LinkStats struct {
	// PeerNode is the id of the node at the other end.
	PeerNode string
	// Connected is true while the link's PeerConnection is connected.
	Connected bool
	// PipesIn is the number of producers this node pulls over the link
	// (in any state), PipesOut the number it sends.
	PipesIn, PipesOut int
	// BytesSent and BytesReceived count every byte of the link's ICE
	// transport (SRTP, SRTCP, DTLS, STUN) since the link was set up; a
	// new link (after a failure or an idle close) starts from zero.
	BytesSent, BytesReceived uint64
	// PacketsReceived and PacketsLost are the RTP packets received and
	// lost (from sequence number gaps) on the link's inbound streams that
	// are open now.
	PacketsReceived, PacketsLost int64
	// RTT is the round-trip time of the link's selected ICE candidate pair
	// measured by its STUN checks and keepalives; 0 while unknown.
	RTT time.Duration
}

// LinkStats returns the figures of every open link, sorted by peer node.
// It calls GetStats on each link's PeerConnection: meant for metrics
// scrapes, not for hot paths. Never nil. Safe for concurrent use.
func (p *Pipes) LinkStats() []LinkStats {
	links := p.allLinks()
	out := make([]LinkStats, 0, len(links))
	for _, l := range links {
		ls := LinkStats{PeerNode: l.peer, Connected: l.pc.ConnectionState() == webrtc.PeerConnectionStateConnected}
		l.mu.Lock()
		ls.PipesIn, ls.PipesOut = len(l.pulls), len(l.serves)
		l.mu.Unlock()
		addPCStats(&ls, l.pc.GetStats())
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b LinkStats) int { return cmp.Compare(a.PeerNode, b.PeerNode) })
	return out
}

// addPCStats fills the transport, RTT and loss figures of ls from a
// PeerConnection's stats report.
func addPCStats(ls *LinkStats, report webrtc.StatsReport) {
	for _, s := range report {
		switch s := s.(type) {
		case webrtc.TransportStats:
			ls.BytesSent += s.BytesSent
			ls.BytesReceived += s.BytesReceived
		case webrtc.ICECandidatePairStats:
			if s.Nominated && s.State == webrtc.StatsICECandidatePairStateSucceeded && s.CurrentRoundTripTime > 0 {
				ls.RTT = time.Duration(s.CurrentRoundTripTime * float64(time.Second))
			}
		case webrtc.InboundRTPStreamStats:
			ls.PacketsReceived += int64(s.PacketsReceived)
			ls.PacketsLost += int64(s.PacketsLost)
		}
	}
}
