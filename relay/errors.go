package relay

import "errors"

// Errors of package relay. Config.Validate wraps ErrConfig; the TURN
// server's refusals are never returned to Go callers (the client gets a
// TURN error response) but are logged with these reasons.
var (
	// ErrConfig is wrapped by every Config.Validate error.
	ErrConfig = errors.New("relay: invalid config")

	errBadUsername = errors.New("username is not <expiry>:<participant id>")
	errExpired     = errors.New("credential expired")
	errTCPRelay    = errors.New("TCP relay allocations (RFC 6062) are not offered")
	errPeerDenied  = errors.New("peer address is not one of this node's media addresses")
)
