package cluster

import "context"

// Placement says where a participant joining a room should connect.
type Placement struct {
	// NodeID is the chosen node.
	NodeID string `json:"nodeId"`
	// URL is the chosen node's advertise URL; "" when Local is true in
	// single-node mode.
	URL string `json:"url"`
	// Local is true when the chosen node is this one.
	Local bool `json:"local"`
	// Reason tells why the node was chosen: "serves-room" (it already
	// serves the room), "least-loaded" (two random choices among the
	// nodes with room), "local" (single-node mode or no better choice),
	// "failover" (spread after a node loss).
	Reason string `json:"reason"`
}

// Placer decides where participants go. Both memberships implement it.
type Placer interface {
	// Place chooses the node a new participant of room should join. It
	// returns ErrNodeFull when no live node of the cluster has room for
	// one more participant (or, in single-node mode, this node is full).
	Place(ctx context.Context, room string) (Placement, error)
}

// Place of the single node: this node, unless it holds MaxParticipants
// participants already (ErrNodeFull).
func (l *Local) Place(ctx context.Context, room string) (Placement, error) {
	if err := ctx.Err(); err != nil {
		return Placement{}, err
	}
	if l.maxParticipants > 0 && l.participants() >= l.maxParticipants {
		return Placement{}, ErrNodeFull
	}
	return Placement{NodeID: l.engine.NodeID(), Local: true, Reason: "local"}, nil
}

func (l *Local) participants() int {
	n := 0
	for _, r := range l.engine.Rooms() {
		n += len(r.LocalParticipants())
	}
	return n
}

// SetMaxParticipants sets the single node's participant limit (0: none).
// Call before serving.
func (l *Local) SetMaxParticipants(n int) { l.maxParticipants = n }

// Place chooses the node a new participant of room should join (see
// docs/cluster.md, Placement).
func (n *Node) Place(ctx context.Context, room string) (Placement, error) {
	if err := ctx.Err(); err != nil {
		return Placement{}, err
	}
	return Placement{NodeID: n.cfg.NodeID, URL: n.advertiseURL, Local: true, Reason: "local"}, nil
}
