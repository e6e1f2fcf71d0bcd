package cluster

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// Local is the single-node Membership: no Consul, no links to other nodes.
// The observer methods do nothing, Handler answers 404 to every control
// request and Ready always returns nil. Safe for concurrent use.
type Local struct {
	engine          *sfu.Engine
	startedAt       time.Time
	maxParticipants int
}

// NewLocal returns the single-node membership of engine.
func NewLocal(engine *sfu.Engine) *Local {
	return &Local{engine: engine, startedAt: time.Now().UTC()}
}

// Start does nothing and returns nil.
func (l *Local) Start(context.Context) error { return nil }

// Status reports this node alone, its rooms, and no links.
func (l *Local) Status(context.Context) (Status, error) {
	rooms := roomStatuses(l.engine, nil)
	load := 0
	for _, r := range rooms {
		load += len(r.Participants)
	}
	return Status{
		NodeID: l.engine.NodeID(),
		Mode:   "single-node",
		Nodes: []NodeInfo{{
			ID:        l.engine.NodeID(),
			Load:      load,
			StartedAt: l.startedAt,
			Alive:     true,
			Self:      true,
		}},
		Rooms: rooms,
		Links: []pipe.LinkStatus{},
	}, nil
}

// Handler answers 404 to every request: a single node has no control channel.
func (l *Local) Handler() http.Handler { return http.NotFoundHandler() }

// Ready returns nil.
func (l *Local) Ready() error { return nil }

// Drain does nothing and returns nil: a single node has no rotation to
// leave (the app's own drain refuses new participants).
func (l *Local) Drain(context.Context) error { return nil }

// Close does nothing and returns nil.
func (l *Local) Close() error { return nil }

// RoomOpened does nothing.
func (l *Local) RoomOpened(*sfu.Room) {}

// RoomClosed does nothing.
func (l *Local) RoomClosed(string) {}

// ProducerAdded does nothing.
func (l *Local) ProducerAdded(*sfu.Room, sfu.ProducerInfo) {}

// ProducerRemoved does nothing.
func (l *Local) ProducerRemoved(string, sfu.ProducerInfo) {}

// ParticipantChanged does nothing.
func (l *Local) ParticipantChanged(*sfu.Room, sfu.ParticipantInfo, bool) {}

// ChatSent does nothing.
func (l *Local) ChatSent(*sfu.Room, sfu.ChatMessage) {}

// Moderated does nothing.
func (l *Local) Moderated(*sfu.Room, sfu.Moderation) {}

// roomStatuses describes the engine's rooms, sorted by name. roomNodes, when
// not nil, returns the nodes known to have a room open.
func roomStatuses(engine *sfu.Engine, roomNodes func(room string) []string) []RoomStatus {
	rooms := engine.Rooms()
	out := make([]RoomStatus, 0, len(rooms))
	for _, r := range rooms {
		rs := RoomStatus{
			Name:           r.Name(),
			Participants:   participantStatuses(r.LocalParticipants()),
			LocalProducers: []ProducerStatus{},
			PipedProducers: []ProducerStatus{},
			Nodes:          []string{},
		}
		for _, p := range r.Producers() {
			if p.Remote {
				rs.PipedProducers = append(rs.PipedProducers, producerStatus(p))
			} else {
				rs.LocalProducers = append(rs.LocalProducers, producerStatus(p))
			}
		}
		sortProducers(rs.LocalProducers)
		sortProducers(rs.PipedProducers)
		if roomNodes != nil {
			if nodes := roomNodes(rs.Name); nodes != nil {
				rs.Nodes = nodes
			}
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortProducers(ps []ProducerStatus) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Origin != ps[j].Origin {
			return ps[i].Origin < ps[j].Origin
		}
		return ps[i].ID < ps[j].ID
	})
}
