package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// sessionLockDelay is the lock delay of the node's sessions. Consul's default
// (15s) would stop a restarted node from acquiring its own keys for 15s
// after its previous session was invalidated.
const sessionLockDelay = time.Millisecond

func sessionName(node string) string { return "confab-" + node }

// createSession creates a session with the registry's TTL, behavior delete
// (keys held by the session are deleted when it is invalidated) and a 1ms
// lock delay.
func (r *registry) createSession(ctx context.Context) (string, error) {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	id, _, err := r.client.Session().Create(&api.SessionEntry{
		Name:      sessionName(r.nodeID),
		TTL:       r.ttl.String(),
		Behavior:  api.SessionBehaviorDelete,
		LockDelay: sessionLockDelay,
	}, r.writeOpts(ctx))
	if err != nil {
		return "", fmt.Errorf("cluster: create session: %w", err)
	}
	return id, nil
}

// renewSession renews session id; it returns an error wrapping ErrSessionLost
// when Consul no longer knows the session.
func (r *registry) renewSession(ctx context.Context, id string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	entry, _, err := r.client.Session().Renew(id, r.writeOpts(ctx))
	if err != nil {
		return fmt.Errorf("cluster: renew session: %w", err)
	}
	if entry == nil {
		return fmt.Errorf("cluster: renew session %s: %w", id, ErrSessionLost)
	}
	return nil
}

// destroySession invalidates session id, which deletes every key it holds.
func (r *registry) destroySession(ctx context.Context, id string) error {
	ctx, cancel := r.bound(ctx)
	defer cancel()
	if _, err := r.client.Session().Destroy(id, r.writeOpts(ctx)); err != nil {
		return fmt.Errorf("cluster: destroy session: %w", err)
	}
	return nil
}

// destroyStaleSessions destroys the sessions an earlier life of this node left
// behind (same name, other id than keep). Call it after clearNode, so the
// stale sessions hold no keys and no lock delay starts.
func (r *registry) destroyStaleSessions(ctx context.Context, keep string) (int, error) {
	lctx, cancel := r.bound(ctx)
	entries, _, err := r.client.Session().List((&api.QueryOptions{}).WithContext(lctx))
	cancel()
	if err != nil {
		return 0, fmt.Errorf("cluster: list sessions: %w", err)
	}
	n := 0
	for _, e := range entries {
		if e.Name != sessionName(r.nodeID) || e.ID == keep {
			continue
		}
		if err := r.destroySession(ctx, e.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// runSession keeps the node's session alive until ctx is done: it renews it
// every TTL/2, retries failed renewals with backoff, and when Consul reports
// the session gone (after an outage longer than the TTL, or a destroy) it
// creates a new one, registers the service again and marks every record for
// rewriting. It also refreshes the node record's load on every renewal.
// Owned by Node; started by Start, stopped by Close.
func (n *Node) runSession(ctx context.Context) {
	defer n.wg.Done()
	const activity = "session"
	b := backoff{min: 250 * time.Millisecond, max: n.cfg.MaxBackoff}
	wait := n.cfg.SessionTTL / 2
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-n.checkSession:
			t.Stop()
		}
		id := n.sessionID()
		if id == "" {
			newID, err := n.reg.createSession(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				n.health.fail(activity, err)
				wait = b.next()
				continue
			}
			n.setSession(newID)
			n.log.Info("consul session re-created; writing records again", "session", newID)
			n.kv.markAll()
			n.kickWriter()
			if err := n.registerService(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("cluster: register service again", "err", err)
			}
			n.health.ok(activity)
			b.reset()
			wait = n.cfg.SessionTTL / 2
			continue
		}
		err := n.reg.renewSession(ctx, id)
		switch {
		case err == nil:
			n.health.ok(activity)
			b.reset()
			wait = n.cfg.SessionTTL / 2
			n.refreshRecord(false)
		case ctx.Err() != nil:
			return
		case isSessionLost(err):
			n.log.Warn("consul session lost; its records are gone, re-registering", "session", id)
			n.setSession("")
			// Consul lost data (restarted without it) or expired us after
			// a long outage: the other nodes' records may be missing too
			// until they re-register, so do not take absences as departures
			// for a while.
			n.startResync("session lost")
			wait = 0
		default:
			n.health.fail(activity, err)
			// Retry well before the TTL runs out.
			wait = min(b.next(), n.cfg.SessionTTL/4)
		}
	}
}
