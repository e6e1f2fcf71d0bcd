package cluster

import (
	"context"
	"errors"
	"fmt"
)

// drainReason is the Consul maintenance reason of a draining node.
const drainReason = "confab node draining (planned shutdown)"

// Drain takes the node out of the cluster's rotation before a planned
// shutdown. The node keeps serving its rooms and links (other nodes keep
// piping its producers) and keeps its records, but:
//
//   - Ready returns ErrDraining (GET /readyz fails, the app stops taking
//     participants);
//   - its node record gets "draining": true, so other nodes list it with
//     Draining in Status and the peer lists offered to browsers skip it;
//   - its Consul service is put into maintenance mode (critical), so
//     service discovery and load balancers skip it.
//
// ctx (further bounded by the Consul timeout) bounds writing the record and
// the maintenance flag; on failure Drain returns the error but the node
// stays draining and the writer keeps retrying the record in the
// background. Close afterwards destroys the session, which removes every
// record. Idempotent. Returns ErrNotStarted before Start and ErrNodeClosed
// after Close.
func (n *Node) Drain(ctx context.Context) error {
	n.mu.Lock()
	switch n.state {
	case stateRunning:
	case stateClosed:
		n.mu.Unlock()
		return ErrNodeClosed
	default:
		n.mu.Unlock()
		return ErrNotStarted
	}
	already := n.draining
	n.draining = true
	session := n.session
	n.mu.Unlock()
	if !already {
		n.log.Info("draining: leaving the rotation; rooms and links keep running")
	}

	ctx, cancel := context.WithTimeout(ctx, n.cfg.ConsulTimeout)
	defer cancel()
	var errs []error
	// The writer applies the record too (and retries it); writing it here
	// lets Drain report whether the cluster knows.
	rec := n.refreshRecord(true)
	if session == "" {
		errs = append(errs, fmt.Errorf("cluster: drain: write node record: %w", ErrSessionLost))
	} else if err := n.reg.acquire(ctx, nodeKey(n.cfg.NodeID), rec, session); err != nil {
		errs = append(errs, fmt.Errorf("cluster: drain: %w", err))
	}
	if err := n.reg.setMaintenance(ctx, true, drainReason); err != nil {
		errs = append(errs, fmt.Errorf("cluster: drain: %w", err))
	}
	return errors.Join(errs...)
}

// isDraining reports whether Drain was called.
func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// registerService registers the node's Consul service and, while draining,
// puts it into maintenance mode again (a re-registration after Consul lost
// its data would otherwise bring it back into rotation).
func (n *Node) registerService(ctx context.Context) error {
	if err := n.reg.registerService(ctx, n.advertiseURL, n.cfg.Version); err != nil {
		return err
	}
	if n.isDraining() {
		if err := n.reg.setMaintenance(ctx, true, drainReason); err != nil {
			return err
		}
	}
	return nil
}
