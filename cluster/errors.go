package cluster

import "errors"

// Errors of the membership side of the package (the pipes have their own in
// package pipe). Returned errors wrap these; test with errors.Is.
var (
	// ErrBadNodeURL is wrapped by CheckNodeURL: a node URL that must not
	// be dialled or handed to browsers.
	ErrBadNodeURL = errors.New("cluster: unusable node URL")
	// ErrInvalidConfig is wrapped by Config.Validate and New.
	ErrInvalidConfig = errors.New("cluster: invalid config")
	// ErrNotStarted is returned by Ready before Start completed.
	ErrNotStarted = errors.New("cluster: not started")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("cluster: already started")
	// ErrNodeClosed is returned by Start, Status and Ready after Close.
	ErrNodeClosed = errors.New("cluster: node closed")
	// ErrDegraded is wrapped by Ready while the node runs but Consul is
	// unreachable or the node has no session: it keeps serving its rooms
	// and existing links, local joins and publishing work, but it cannot
	// learn about other nodes' changes or announce its own until Consul is
	// back.
	ErrDegraded = errors.New("cluster: degraded: consul unreachable; serving existing rooms and links")
	// ErrDraining is returned by Ready after Drain: the node is leaving the
	// cluster's rotation and should take no new participants.
	ErrDraining = errors.New("cluster: node draining")
	// ErrKeyHeld means a KV key is held by another Consul session, usually
	// a second live process using the same node id.
	ErrKeyHeld = errors.New("cluster: key held by another session")
	// ErrNodeFull is returned by Place when no live node of the cluster
	// (or, single-node, this node) has room for another participant.
	ErrNodeFull = errors.New("cluster: every node is full")
	// ErrConsulDenied is wrapped by Start when Consul refuses a request for
	// the node's ACL token (HTTP 403): no token where the agent's default
	// policy is deny, an unknown token, or a token whose policies lack a
	// rule confab needs (deploy/consul-acl-policy.hcl lists them).
	ErrConsulDenied = errors.New("cluster: consul denied the request: check the node's ACL token and its policy")
	// ErrSessionLost means the node's Consul session no longer exists.
	ErrSessionLost = errors.New("cluster: consul session lost")
)

// errNoMeta is reported when a Consul response lacks its query metadata.
var errNoMeta = errors.New("cluster: consul response without index")
