package cluster

import (
	"context"
	"log/slog"
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
// period through health.
func (w *prefixWatch) run(ctx context.Context, deliver func(api.KVPairs)) {
	activity := "watch " + w.prefix
	if w.health != nil {
		defer w.health.forget(activity)
	}
	b := backoff{min: 250 * time.Millisecond, max: w.maxBackoff}
	var index uint64
	first := true
	for ctx.Err() == nil {
		start := time.Now()
		qctx, cancel := context.WithTimeout(ctx, w.wait+w.wait/16+w.timeout)
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: w.wait}).WithContext(qctx)
		pairs, meta, err := w.kv.List(w.prefix, q)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || meta == nil {
			if err == nil {
				err = errNoMeta
			}
			if w.health != nil {
				w.health.fail(activity, err)
			}
			if !sleepCtx(ctx, b.next()) {
				return
			}
			continue
		}
		if w.health != nil {
			w.health.ok(activity)
		}
		b.reset()
		next, changed := nextIndex(index, meta.LastIndex, first)
		if next == 0 && index != 0 {
			w.log.Info("consul index went backwards; restarting watch", "prefix", w.prefix, "was", index, "now", meta.LastIndex)
			if w.onReset != nil {
				w.onReset()
			}
		}
		index = next
		first = false
		if changed {
			deliver(pairs)
		}
		if d := watchMinInterval - time.Since(start); d > 0 && changed {
			if !sleepCtx(ctx, d) {
				return
			}
		}
	}
}
