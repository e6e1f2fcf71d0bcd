package pipe

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestLinkStatsOfACall pipes a producer from a to b and checks that both
// ends report the link with its pipes, that its byte and packet counters
// move while media flows, and that an RTT is measured.
func TestLinkStatsOfACall(t *testing.T) {
	ptLeakCheck(t)
	ctx := ptContext(t)
	c := newPTCluster(t, nil, "a", "b")
	a, b := c.node("a"), c.node("b")

	_, prod := ptPublish(ctx, t, a, "room", "alice")
	sub := ptJoin(t, b, "room", "bob")
	if err := b.pipes.PipeIn(ctx, "room", prod); err != nil {
		t.Fatalf("PipeIn: %v", err)
	}
	ptWaitMedia(ctx, t, sub, prod)

	linkTo := func(n *ptNode, peer string) (LinkStats, bool) {
		for _, ls := range n.pipes.LinkStats() {
			if ls.PeerNode == peer {
				return ls, true
			}
		}
		return LinkStats{}, false
	}
	var first LinkStats
	ptWait(ctx, t, "b's link to a with traffic and an RTT", func() bool {
		ls, ok := linkTo(b, "a")
		first = ls
		return ok && ls.Connected && ls.PipesIn == 1 && ls.PacketsReceived > 0 && ls.BytesReceived > 0 && ls.RTT > 0
	})
	if first.PipesOut != 0 {
		t.Errorf("b's link PipesOut = %d, want 0", first.PipesOut)
	}
	ptWait(ctx, t, "b's link counters moving", func() bool {
		ls, _ := linkTo(b, "a")
		return ls.PacketsReceived > first.PacketsReceived && ls.BytesReceived > first.BytesReceived
	})
	ptWait(ctx, t, "a's link to b sending", func() bool {
		ls, ok := linkTo(a, "b")
		return ok && ls.Connected && ls.PipesOut == 1 && ls.PipesIn == 0 && ls.BytesSent > 0
	})
	if got := len(a.pipes.LinkStats()); got != 1 {
		t.Errorf("a has %d links in LinkStats, want 1", got)
	}
}

// TestAddPCStats checks which entries of a stats report count.
func TestAddPCStats(t *testing.T) {
	pair := func(nominated bool, state webrtc.StatsICECandidatePairState, rtt float64) webrtc.ICECandidatePairStats {
		return webrtc.ICECandidatePairStats{Nominated: nominated, State: state, CurrentRoundTripTime: rtt}
	}
	tests := []struct {
		name   string
		report webrtc.StatsReport
		want   LinkStats
	}{
		{"empty", webrtc.StatsReport{}, LinkStats{}},
		{"transport bytes", webrtc.StatsReport{
			"iceTransport": webrtc.TransportStats{BytesSent: 10, BytesReceived: 20},
		}, LinkStats{BytesSent: 10, BytesReceived: 20}},
		{"rtt of the nominated succeeded pair only", webrtc.StatsReport{
			"p1": pair(false, webrtc.StatsICECandidatePairStateSucceeded, 0.5),
			"p2": pair(true, webrtc.StatsICECandidatePairStateSucceeded, 0.025),
			"p3": pair(true, webrtc.StatsICECandidatePairStateFailed, 0.7),
		}, LinkStats{RTT: 25 * time.Millisecond}},
		{"inbound streams summed", webrtc.StatsReport{
			"in1": webrtc.InboundRTPStreamStats{PacketsReceived: 100, PacketsLost: 3},
			"in2": webrtc.InboundRTPStreamStats{PacketsReceived: 50, PacketsLost: 1},
		}, LinkStats{PacketsReceived: 150, PacketsLost: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got LinkStats
			addPCStats(&got, tt.report)
			if got != tt.want {
				t.Errorf("addPCStats = %+v, want %+v", got, tt.want)
			}
		})
	}
}
