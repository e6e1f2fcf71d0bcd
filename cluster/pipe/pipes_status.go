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
	// Wanted are the layers this node asks the origin for (in, simulcast
	// producers only: they follow the local subscribers' demand).
	Wanted []int `json:"wanted,omitempty"`
	// Layers are the producer's link tracks: the layers flowing over the
	// link (a single-layer producer has one, layer 0; a single track of a
	// simulcast producer carries its top layer).
	Layers []PipedLayer `json:"layers,omitempty"`
}

// PipedLayer is one link track of a piped producer.
type PipedLayer struct {
	Layer int    `json:"layer"`         // 0 = lowest
	RID   string `json:"rid,omitempty"` // simulcast RID
	SSRC  uint32 `json:"ssrc"`          // of the link track
	// Bitrate is the layer's current bitrate in bit/s (payload): in, as
	// received from the link; out, as the origin's publisher sends it.
	Bitrate int `json:"bitrate"`
	// Packets and Bytes count the RTP packets and payload bytes received
	// on the track (in only).
	Packets uint64 `json:"packets,omitempty"`
	Bytes   uint64 `json:"bytes,omitempty"`
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
			pr := PipedProducer{Room: k.room, ID: k.producer, Kind: string(pp.info.Kind), Direction: DirectionIn, State: pp.state.String()}
			if pp.layered {
				pr.Wanted = slices.Clone(pp.want)
			}
			var st []sfu.LayerStatus
			if pp.producer != nil {
				st = pp.producer.LayerStatus()
			}
			for _, t := range pp.tracks {
				if t.track != nil {
					pr.Layers = append(pr.Layers, pipedLayer(t.layer, t.ssrc, st, t.packets.Load(), t.bytes.Load()))
				}
			}
			ls.Producers = append(ls.Producers, pr)
		}
		for k, s := range l.serves {
			pr := PipedProducer{Room: k.room, ID: k.producer, Kind: string(s.producer.Info().Kind), Direction: DirectionOut}
			st := s.producer.LayerStatus()
			for _, t := range s.tracks {
				pr.Layers = append(pr.Layers, pipedLayer(t.layer, t.ssrc, st, 0, 0))
			}
			ls.Producers = append(ls.Producers, pr)
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

// pipedLayer describes one link track feeding (or fed by) layer of a
// producer whose layers are st.
func pipedLayer(layer int, ssrc uint32, st []sfu.LayerStatus, packets, bytes uint64) PipedLayer {
	pl := PipedLayer{Layer: layer, SSRC: ssrc, Packets: packets, Bytes: bytes}
	if layer < len(st) {
		pl.RID, pl.Bitrate = st[layer].RID, st[layer].Bitrate
	}
	return pl
}
