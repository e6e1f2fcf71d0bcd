package cluster

import (
	"cmp"
	"slices"

	"github.com/confab/confab/sfu"
)

// Link directions in LinkStatus.
const (
	DirectionIn  = "in"  // this node pulls producers from PeerNode
	DirectionOut = "out" // this node sends producers to PeerNode
)

// LinkStatus describes one node-to-node link for GET /api/cluster.
type LinkStatus struct {
	PeerNode  string          `json:"peerNode"`
	Direction string          `json:"direction"` // DirectionIn or DirectionOut
	LinkID    string          `json:"linkId"`
	State     string          `json:"state"` // WebRTC connection state: new, connecting, connected, disconnected, failed, closed
	Producers []PipedProducer `json:"producers"`
}

// PipedProducer is one producer carried by a link.
type PipedProducer struct {
	Room  string   `json:"room"`
	ID    string   `json:"id"`
	Kind  sfu.Kind `json:"kind"`
	State string   `json:"state,omitempty"` // in-links: pending, offered, accepted, active
}

// Status returns a snapshot of every open link, sorted by peer node then
// direction, producers sorted by room then id. Never nil. Safe for
// concurrent use.
func (p *Pipes) Status() []LinkStatus {
	p.mu.Lock()
	ins := make([]*inLink, 0, len(p.in))
	for _, l := range p.in {
		ins = append(ins, l)
	}
	outs := make([]*outLink, 0, len(p.out))
	for _, l := range p.out {
		outs = append(outs, l)
	}
	p.mu.Unlock()

	out := make([]LinkStatus, 0, len(ins)+len(outs))
	for _, l := range ins {
		ls := LinkStatus{PeerNode: l.peer, Direction: DirectionIn, LinkID: l.id, State: l.pc.ConnectionState().String(), Producers: []PipedProducer{}}
		l.mu.Lock()
		for k, pp := range l.pipes {
			ls.Producers = append(ls.Producers, PipedProducer{Room: k.room, ID: k.producer, Kind: pp.info.Kind, State: pp.state.String()})
		}
		l.mu.Unlock()
		out = append(out, ls)
	}
	for _, l := range outs {
		ls := LinkStatus{PeerNode: l.peer, Direction: DirectionOut, LinkID: l.id, State: l.pc.ConnectionState().String(), Producers: []PipedProducer{}}
		l.mu.Lock()
		for k, s := range l.served {
			ls.Producers = append(ls.Producers, PipedProducer{Room: k.room, ID: k.producer, Kind: s.producer.Info().Kind})
		}
		l.mu.Unlock()
		out = append(out, ls)
	}
	for i := range out {
		slices.SortFunc(out[i].Producers, func(a, b PipedProducer) int {
			return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(a.ID, b.ID))
		})
	}
	slices.SortFunc(out, func(a, b LinkStatus) int {
		return cmp.Or(cmp.Compare(a.PeerNode, b.PeerNode), cmp.Compare(a.Direction, b.Direction))
	})
	return out
}

// Piped returns the producers this node pipes (or is setting up to pipe)
// into room, in any state before removal, with Remote=true, sorted by id.
// The orchestrator compares it with the registry to Unpipe stale entries
// and re-PipeIn missing ones. Never nil.
func (p *Pipes) Piped(room string) []sfu.ProducerInfo {
	out := []sfu.ProducerInfo{}
	for _, l := range p.inLinks() {
		l.mu.Lock()
		for k, pp := range l.pipes {
			if k.room == room {
				info := pp.info
				info.Remote = true
				out = append(out, info)
			}
		}
		l.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b sfu.ProducerInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
