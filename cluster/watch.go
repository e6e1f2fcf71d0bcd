package cluster

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// kvLister is the part of *api.KV a watch needs (a fake in tests).
type kvLister interface {
	List(prefix string, q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error)
}

// watchMinInterval rate-limits blocking queries on a prefix that changes
// constantly, as Consul's blocking-query documentation asks clients to do.
const watchMinInterval = 50 * time.Millisecond

// prefixWatch runs Consul blocking queries on one KV prefix.
type prefixWatch struct {
	kv         kvLister
	prefix     string
	wait       time.Duration // WaitTime of one blocking query
	timeout    time.Duration // extra slack over wait before a query is abandoned
	maxBackoff time.Duration
	health     *consulHealth // may be nil
	log        *slog.Logger
	// onReset, when set, is called (on run's goroutine, before the result
	// is delivered) when the index went backwards: the store lost data.
	onReset func()
	// restart, when set, makes the watch drop its index and query again
	// from 0 at once whenever it fires (a blocking query in flight is
	// abandoned).
	restart *restartSignal
}

// restartSignal tells watches to start over from index 0: after Consul lost
// its data, a blocking query with an old (higher) WaitIndex would block
// until the fresh store's index catches up or the wait times out (30s by
// default), hiding every change meanwhile. Safe for concurrent use.
type restartSignal struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

func newRestartSignal() *restartSignal {
	r := &restartSignal{}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r
}

// current returns a context that is cancelled by the next fire.
func (r *restartSignal) current() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ctx
}

// fire restarts every watch using the signal.
func (r *restartSignal) fire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel()
	r.ctx, r.cancel = context.WithCancel(context.Background())
}

// stop releases the signal's context.
func (r *restartSignal) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel()
}

// nextIndex applies the blocking-query index rules of Consul's documentation
// to the index got returned by a query made with WaitIndex prev. It returns
// the WaitIndex of the next query and whether the result must be treated as
// new:
//   - an index lower than prev (Consul restarted without its data, snapshot
//     restore, ...) resets the loop: the next query uses index 0 and the
//     result is new;
//   - an index of 0 is clamped to 1 so the next query blocks;
//   - an unchanged index means the wait timed out: nothing new.
func nextIndex(prev, got uint64, first bool) (next uint64, changed bool) {
	if got < prev {
		return 0, true
	}
	if got == 0 {
		got = 1
	}
	return got, first || got != prev
}

// run queries until ctx is done and calls deliver with the pairs of every
// result that may differ from the previous one (always the first). deliver
// runs on run's goroutine; it must not block for long. Errors are retried
// with capped, jittered exponential backoff and logged once per failure
// period through health; the first query after an error does not block, so
// that an index that went backwards meanwhile is noticed at once.
func (w *prefixWatch) run(ctx context.Context, deliver func(api.KVPairs)) {
	watchLoop(ctx, w, "watch "+w.prefix, func(q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error) {
		return w.kv.List(w.prefix, q)
	}, deliver)
}

// watchLoop runs the blocking query query with the settings of w (all but
// its kv and prefix) until ctx is done, as run describes; activity names it
// in health and logs. The node's health watch (health.go) uses it too.
func watchLoop[T any](ctx context.Context, w *prefixWatch, activity string,
	query func(*api.QueryOptions) (T, *api.QueryMeta, error), deliver func(T)) {
	if w.health != nil {
		defer w.health.forget(activity)
	}
	b := backoff{min: 250 * time.Millisecond, max: w.maxBackoff}
	var index uint64
	first := true
	failed := false // the last query failed
	for ctx.Err() == nil {
		start := time.Now()
		restarted := context.Background()
		if w.restart != nil {
			restarted = w.restart.current()
		}
		qctx, cancel := context.WithTimeout(ctx, w.wait+w.wait/16+w.timeout)
		stop := context.AfterFunc(restarted, cancel)
		waitIndex := index
		if failed {
			// After an error, ask without blocking: if the agent came back
			// without its data, a blocking query with the old index would
			// hang until the new index caught up; the answer's index tells
			// at once whether it went backwards.
			waitIndex = 0
		}
		q := (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: w.wait}).WithContext(qctx)
		result, meta, err := query(q)
		stop()
		cancel()
		if ctx.Err() != nil {
			return
		}
		if restarted.Err() != nil {
			index, first = 0, true // start over; the next result is delivered
			continue
		}
		if err != nil || meta == nil {
			if err == nil {
				err = errNoMeta
			}
			if w.health != nil {
				w.health.fail(activity, err)
			}
			failed = true
			if !sleepCtx(ctx, b.next()) {
				return
			}
			continue
		}
		failed = false
		if w.health != nil {
			w.health.ok(activity)
		}
		b.reset()
		next, changed := nextIndex(index, meta.LastIndex, first)
		if next == 0 && index != 0 {
			w.log.Info("consul index went backwards; restarting watch", "watch", activity, "was", index, "now", meta.LastIndex)
			if w.onReset != nil {
				w.onReset()
			}
		}
		index = next
		first = false
		if changed {
			deliver(result)
		}
		if d := watchMinInterval - time.Since(start); d > 0 && changed {
			if !sleepCtx(ctx, d) {
				return
			}
		}
	}
}
