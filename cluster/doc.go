// Package cluster lets several confab nodes serve one room together.
//
// A node takes part in a cluster through a Membership. Two implementations
// exist:
//
//   - Local (NewLocal) is the single-node mode: no Consul, no links, every
//     observer callback is a no-op and the control channel answers 404.
//   - Node (New) is the Consul-backed mode described below.
//
// # How a Node works
//
// Every node has a stable id (Config.NodeID). On Start it creates a Consul
// session (TTL, behavior "delete", lock delay 1ms), clears whatever the KV
// store still holds for its id from an earlier life, records itself under
// confab/nodes/{node} and registers a Consul service with an HTTP health
// check. Every key the node writes is acquired with its session, so when the
// node dies and its session expires Consul deletes the node's records and the
// other nodes notice through their directory watch (or sooner, through the
// health watch and a probe).
//
// The Node is the sfu.Observer of its engine. When a room opens locally it
// records confab/rooms/{room}/nodes/{node}, reads confab/rooms/{room}/ once
// and exchanges room states with the other nodes serving the room over the
// control channel (roomsync.go); from then on those nodes push every change
// to each other, and Consul KV stays the truth that is read again now and
// then. Local producers are recorded under
// confab/rooms/{room}/producers/{node}/{producer}. A node holds a constant
// number of Consul connections whatever it serves: two blocking queries
// (the node directory on confab/nodes/ and the health of the confab
// service) and short requests (session renewal, KV writes batched into
// transactions, rate-limited room reads). Whenever a room learns of a
// producer of another node that is alive (present in the node directory),
// the node pipes it in through package pipe, which asks the origin node
// over the authenticated control channel to send the track over a WebRTC
// link (one link per pair of nodes, reused for every producer). Producers
// that are withdrawn are unpiped; when a node's record disappears,
// everything piped from it is dropped. When the last local participant
// leaves, the room's goroutine stops, its pipes are closed and its records
// are deleted.
//
// Placement (placement.go) decides on which node a joining participant
// belongs, from the node records' load and the nodes serving the room.
//
// Observer callbacks never block: they update the node's desired KV state,
// which an owned writer goroutine applies to Consul with retries and capped,
// jittered exponential backoff. If the session is lost (for instance after a
// long Consul outage) a new one is created and every record is written again.
// While Consul is unreachable the node keeps serving its rooms and links and
// Ready reports ErrDegraded. When Consul lost its data (an agent restarted
// without it) a resync grace period keeps peers and piped producers until
// every node has registered again (resync.go).
//
// # Failures and planned shutdown
//
// A node notices a dead peer long before Consul expires the peer's session:
// when a link to the peer goes silent (ICE "disconnected", see the ICE
// timeouts of sfu.Config) or fails, it probes the peer's control channel and,
// without a signed answer, drops the peer's pipes at once (liveness.go).
// Drain takes the node out of the rotation before a planned shutdown
// (drain.go). docs/reliability.md lists what is promised and how it is
// tested.
//
// The KV schema, the pipe protocol and the failure behaviour are documented in
// docs/cluster.md.
package cluster
