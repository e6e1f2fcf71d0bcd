package pipe

import (
	"cmp"
	"slices"

	"github.com/confab/confab/sfu"
)

// Producer directions in PipedProducer.
const (
	DirectionIn  = "in"  // this node pulls the producer from PeerNode
	DirectionOut = "out" // this node sends the producer to PeerNode
)

// LinkStatus describes this node's link with one peer node (one link per
// pair of nodes, carrying producers both ways) for GET /api/cluster.
type LinkStatus struct {
	PeerNode string `json:"peerNode"`
	// LinkID is chosen by the controller; "" on the answerer until the
	// first offer arrived. Both sides report the same id.
	LinkID string `json:"linkId"`
	// Role is RoleController (this node sends the offers) or RoleAnswerer.
	Role      string          `json:"role"`
	State     string          `json:"state"` // WebRTC connection state: new, connecting, connected, disconnected, failed, closed
	Producers []PipedProducer `json:"producers"`
}

// PipedProducer is one producer carried by a link.
type PipedProducer struct {
	Room      string `json:"room"`
	ID        string `json:"id"`
	Kind      string `json:"kind"`            // "audio" or "video"
	Direction string `json:"direction"`       // DirectionIn or DirectionOut
	State     string `json:"state,omitempty"` // in: pending, offered, accepted, active
}

// Status returns a snapshot of every open link, sorted by peer node, its
// producers sorted by direction, room, then id. Never nil. Safe for
// concurrent use.
func (p *Pipes) Status() []LinkStatus {
	links := p.allLinks()
	out := make([]LinkStatus, 0, len(links))
	for _, l := range links {
		ls := LinkStatus{PeerNode: l.peer, Role: l.role.name(), State: l.pc.ConnectionState().String(), Producers: []PipedProducer{}}
		l.mu.Lock()
		ls.LinkID = l.id
		for k, pp := range l.pulls {
			ls.Producers = append(ls.Producers, PipedProducer{Room: k.room, ID: k.producer, Kind: string(pp.info.Kind), Direction: DirectionIn, State: pp.state.String()})
		}
		for k, s := range l.serves {
			ls.Producers = append(ls.Producers, PipedProducer{Room: k.room, ID: k.producer, Kind: string(s.producer.Info().Kind), Direction: DirectionOut})
		}
		l.mu.Unlock()
		slices.SortFunc(ls.Producers, func(a, b PipedProducer) int {
			return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Room, b.Room), cmp.Compare(a.ID, b.ID))
		})
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b LinkStatus) int { return cmp.Compare(a.PeerNode, b.PeerNode) })
	return out
}

// Piped returns the producers this node pipes (or is setting up to pipe)
// into room, in any state before removal, with Remote=true, sorted by id.
// The orchestrator compares it with the registry to Unpipe stale entries
// and re-PipeIn missing ones. Never nil.
func (p *Pipes) Piped(room string) []sfu.ProducerInfo {
	out := []sfu.ProducerInfo{}
	for _, l := range p.allLinks() {
		l.mu.Lock()
		for k, pp := range l.pulls {
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
