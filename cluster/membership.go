package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/confab/confab/cluster/pipe"
	"github.com/confab/confab/sfu"
)

// Membership is how a node takes part in (or stands alone outside) a cluster.
// Two implementations: *Local (single-node, in-process) and *Node (Consul).
//
// Lifecycle: the composition root creates the Membership, installs it as the
// engine's observer (sfu.Engine.SetObserver), calls Start once, mounts
// Handler at "/cluster/", serves Status at GET /api/cluster and Ready at
// GET /readyz, and calls Close once at shutdown. The observer methods may be
// called from any goroutine at any time, also before Start and after Close
// (they are ignored then or, before Start, applied by Start); they never block.
type Membership interface {
	sfu.Observer
	Placer
	// Start joins the cluster. ctx bounds the start-up work only; the
	// membership's background work lives until Close.
	Start(ctx context.Context) error
	// Status returns the /api/cluster document.
	Status(ctx context.Context) (Status, error)
	// Handler serves the node-to-node control channel, mounted at "/cluster/".
	Handler() http.Handler
	// Ready returns nil when the node is serving normally, otherwise an
	// error saying why (not started, closed, draining, degraded).
	Ready() error
	// Drain takes the node out of the cluster's rotation before a planned
	// shutdown: it keeps serving its rooms and links, but announces that it
	// takes no new participants (Ready returns ErrDraining; a Consul node
	// marks its record draining and its service critical). ctx bounds the
	// announcement; Close afterwards removes every record. Idempotent.
	Drain(ctx context.Context) error
	// Close leaves the cluster and waits for every goroutine of the
	// membership. Idempotent.
	Close() error
}

// Compile-time checks.
var (
	_ Membership = (*Local)(nil)
	_ Membership = (*Node)(nil)
)

// Status is the document served at GET /api/cluster. Slices are never nil, so
// they encode as [] rather than null.
type Status struct {
	// NodeID is the id of the node that answered.
	NodeID string `json:"nodeId"`
	// Mode is "single-node" (Local) or "consul" (Node).
	Mode string `json:"mode"`
	// Nodes are the known nodes, this one included, sorted by id.
	Nodes []NodeInfo `json:"nodes"`
	// Rooms are the rooms open on this node, sorted by name.
	Rooms []RoomStatus `json:"rooms"`
	// Links are this node's links to other nodes (from pipe.Pipes.Status).
	Links []pipe.LinkStatus `json:"links"`
	// Consul describes the connection to Consul; nil in single-node mode.
	Consul *ConsulStatus `json:"consul,omitempty"`
}

// NodeInfo describes one node of the cluster as recorded in
// confab/nodes/{node}.
type NodeInfo struct {
	// ID is the node id.
	ID string `json:"id"`
	// URL is the node's AdvertiseURL.
	URL string `json:"url"`
	// Version is the software version the node runs.
	Version string `json:"version,omitempty"`
	// Load is the node's local participant count when it last wrote its
	// record.
	Load int `json:"load"`
	// StartedAt is when the node started.
	StartedAt time.Time `json:"startedAt"`
	// Draining is true while the node drains (Drain): it still serves its
	// rooms but takes no new participants, so clients must not be sent to
	// it.
	Draining bool `json:"draining,omitempty"`
	// Alive is true while the node's record exists (its session is alive)
	// and its control channel has not been found unreachable by a link
	// probe; a node that went away is listed with Alive false for a while.
	Alive bool `json:"alive"`
	// Self marks the node that answered.
	Self bool `json:"self,omitempty"`
}

// RoomStatus describes one room open on this node.
type RoomStatus struct {
	// Name is the room name.
	Name string `json:"name"`
	// Participants are the participants connected to this node.
	Participants []ParticipantStatus `json:"participants"`
	// LocalProducers are the producers published on this node.
	LocalProducers []ProducerStatus `json:"localProducers"`
	// PipedProducers are the producers piped in from other nodes (Origin
	// names the node).
	PipedProducers []ProducerStatus `json:"pipedProducers"`
	// Nodes are the nodes known to have this room open (from its Consul
	// records and the other nodes' pushes), sorted; empty in single-node
	// mode.
	Nodes []string `json:"nodes"`
}

// ConsulStatus describes the node's connection to Consul.
type ConsulStatus struct {
	// Address is the Consul agent's HTTP address.
	Address string `json:"address"`
	// Session is the id of the node's current session ("" while it has
	// none).
	Session string `json:"session"`
	// Healthy is false while Consul writes or watches are failing.
	Healthy bool `json:"healthy"`
	// LastError is the last Consul error seen while unhealthy.
	LastError string `json:"lastError,omitempty"`
}
