package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// result collects what a scenario measured, for finish.
type result struct {
	// receivers are the clients whose tracks count for loss, delay and
	// throughput; the receivers' node is where they joined.
	receivers    []*Client
	receiverNode int // index into runner.servers
	// joiners are the clients whose join time counts (they joined while
	// media was published); joins are extra join times (churners, measured
	// before they closed).
	joiners []*Client
	joins   []time.Duration
	// publishers are the clients that published, for propagation.
	publishers []*Client
}

// fanout: one publisher and N subscribers on node A.
func (r *runner) fanout(ctx context.Context) error {
	var all []*Client
	defer func() { r.closeAll(all) }()
	pub, subs, err := r.startFanout(ctx, &all)
	if err != nil {
		return err
	}
	err = r.measure(ctx)
	r.closeAll(all)
	r.finish(result{receivers: subs, joiners: subs, publishers: []*Client{pub}})
	return err
}

// startFanout starts what fanout and churn measure: the publisher on node
// A, publishing, and N subscribers there that received media. Every client
// that joined is appended to *all, also on error.
func (r *runner) startFanout(ctx context.Context, all *[]*Client) (pub *Client, subs []*Client, err error) {
	pub = r.join(ctx, r.cfg.URL, "publisher")
	if pub == nil {
		return nil, nil, r.fatal(ctx, "the publisher could not join")
	}
	*all = append(*all, pub)
	if err := pub.Publish(ctx, r.media); err != nil {
		return nil, nil, err
	}
	subs = r.joinMany(ctx, r.cfg.URL, "sub", r.cfg.Subscribers, false)
	*all = append(*all, subs...)
	if err := r.settle(ctx, subs); err != nil {
		return nil, nil, err
	}
	return pub, subs, nil
}

// meeting: P participants each publishing and receiving all others.
func (r *runner) meeting(ctx context.Context) error {
	var all []*Client
	defer func() { r.closeAll(all) }()
	all = r.joinMany(ctx, r.cfg.URL, "peer", r.cfg.Participants, true)
	if len(all) < 2 {
		return r.fatal(ctx, "fewer than two participants joined")
	}
	if err := r.settle(ctx, all); err != nil {
		return err
	}
	err := r.measure(ctx)
	r.closeAll(all)
	// The first participant joined an empty room: its join time would be
	// the wait for the second one.
	r.finish(result{receivers: all, joiners: all[1:], publishers: all})
	return err
}

// crossNode: N subscribers on node B, then one publisher on node A; the
// propagation time is the publisher's "publish" to its first packet at each
// subscriber.
func (r *runner) crossNode(ctx context.Context) error {
	var all []*Client
	defer func() { r.closeAll(all) }()
	subs := r.joinMany(ctx, r.cfg.URLB, "sub", r.cfg.Subscribers, false)
	all = append(all, subs...)
	if len(subs) == 0 {
		return r.fatal(ctx, "no subscriber could join node B")
	}
	pub := r.join(ctx, r.cfg.URL, "publisher")
	if pub == nil {
		return r.fatal(ctx, "the publisher could not join node A")
	}
	all = append(all, pub)
	if err := pub.Publish(ctx, r.media); err != nil {
		return err
	}
	if err := r.settle(ctx, subs); err != nil {
		return err
	}
	err := r.measure(ctx)
	r.closeAll(all)
	r.finish(result{receivers: subs, receiverNode: 1, publishers: []*Client{pub}})
	return err
}

// churn: fanout plus subscribers joining at ChurnRate per second during the
// warm-up and the window, each leaving after ChurnLifetime. Loss and delay
// are those of the steady subscribers; join times include the churners'.
func (r *runner) churn(ctx context.Context) error {
	var all []*Client
	defer func() { r.closeAll(all) }()
	pub, subs, err := r.startFanout(ctx, &all)
	if err != nil {
		return err
	}

	cctx, stop := context.WithCancel(ctx)
	ch := r.startChurn(cctx)
	err = r.measure(ctx)
	stop()
	joins, started := ch.wait()
	r.rep.Params.Churned = started
	r.closeAll(all)
	r.finish(result{receivers: subs, joiners: subs, joins: joins, publishers: []*Client{pub}})
	return err
}

// churner runs the churning subscribers of the churn scenario.
type churner struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	joins   []time.Duration
	started int
}

// startChurn starts a subscriber every 1/ChurnRate s until ctx ends; each
// lives ChurnLifetime (or until ctx ends), then closes. Owned by the caller
// through wait.
func (r *runner) startChurn(ctx context.Context) *churner {
	ch := &churner{}
	ch.wg.Add(1)
	go func() {
		defer ch.wg.Done()
		p := newPacer(r.cfg.ChurnRate)
		for i := 0; ; i++ {
			if p.wait(ctx, i) != nil {
				return
			}
			ch.mu.Lock()
			ch.started++
			ch.mu.Unlock()
			ch.wg.Add(1)
			go func() {
				defer ch.wg.Done()
				r.churnOne(ctx, ch, fmt.Sprintf("churn-%04d", i+1))
			}()
		}
	}()
	return ch
}

// churnOne is one churning subscriber.
func (r *runner) churnOne(ctx context.Context, ch *churner, name string) {
	c := r.join(ctx, r.cfg.URL, name)
	if c == nil {
		return
	}
	// Stay the lifetime, or until the churn stops at the end of the window
	// (a churner cut short then without media is not an error).
	_ = sleep(ctx, r.cfg.ChurnLifetime)
	d, ok := c.JoinTime()
	if err := c.Close(); err != nil {
		r.addError(err.Error())
	}
	if !ok {
		if ctx.Err() == nil {
			r.addError(fmt.Sprintf("a churning subscriber got no media within its lifetime %v", r.cfg.ChurnLifetime))
		}
		return
	}
	ch.mu.Lock()
	ch.joins = append(ch.joins, d)
	ch.mu.Unlock()
}

// wait waits for the churn loop and every churner.
func (ch *churner) wait() ([]time.Duration, int) {
	ch.wg.Wait()
	return ch.joins, ch.started
}

// settle waits for media at the receivers (bounded).
func (r *runner) settle(ctx context.Context, receivers []*Client) error {
	if len(receivers) == 0 {
		return r.fatal(ctx, "no receiver could join")
	}
	return r.waitMedia(ctx, receivers)
}

// fatal returns the error that ends a scenario early: ctx's if it ended,
// else one with msg.
func (r *runner) fatal(ctx context.Context, msg string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("load: " + msg)
}

// finish computes the report from the closed clients of res.
func (r *runner) finish(res result) {
	rep := r.rep
	var delay Histogram
	for _, c := range res.receivers {
		rep.Receivers++
		for _, t := range c.tracks {
			rep.Tracks++
			rep.Packets += t.seq.received
			rep.Lost += t.seq.lost()
			rep.Bytes += t.bytes
			delay.Merge(&t.delay)
			if t.readErr != nil {
				r.addError(fmt.Sprintf("reading a track of %s: %v", c.cfg.Name, t.readErr))
			}
		}
		if err := c.Err(); err != nil {
			r.addError(err.Error())
		}
		if msgs, _ := c.Errors(); len(msgs) > 0 {
			for _, m := range msgs {
				r.addError(c.cfg.Name + ": " + m)
			}
		}
	}
	rep.DelayMS = histQuantiles(&delay)

	joins := append([]time.Duration(nil), res.joins...)
	for _, c := range res.joiners {
		if d, ok := c.JoinTime(); ok {
			joins = append(joins, d)
		}
	}
	rep.JoinMS = sampleQuantiles(joins)
	rep.PropagationMS = sampleQuantiles(propagation(res.receivers, res.publishers))

	window := r.env.Window.Length()
	rep.DurationS = window.Seconds()
	if window > 0 {
		rep.PPS = float64(rep.Packets) / window.Seconds()
		rep.Mbps = float64(rep.Bytes) * 8 / 1e6 / window.Seconds()
	}
	if total := rep.Packets + rep.Lost; total > 0 {
		rep.LossPercent = 100 * float64(rep.Lost) / float64(total)
	}

	rep.CPUMeasured = true
	var cpu time.Duration
	for _, s := range r.servers {
		sr := ServerReport{Name: s.name, URL: s.url, PID: s.pid}
		if s.err != nil {
			sr.Error = s.err.Error()
			rep.CPUMeasured = false
		} else {
			sr.Measured = true
			sr.CPUSeconds = (s.cpuEnd - s.cpuStart).Seconds()
			sr.RSSBeforeKiB, sr.RSSJoinedKiB, sr.RSSEndKiB = s.rssBefore/1024, s.rssJoined/1024, s.rssEnd/1024
			cpu += s.cpuEnd - s.cpuStart
		}
		rep.Servers = append(rep.Servers, sr)
	}
	if rep.CPUMeasured {
		rep.ServerCPUSeconds = cpu.Seconds()
		if out := rep.Packets + rep.Lost; out > 0 {
			rep.USPerPacket = float64(cpu.Microseconds()) / float64(out)
		}
		if rep.Bytes > 0 {
			rep.MSCPUPerMbit = float64(cpu) / float64(time.Millisecond) / (float64(rep.Bytes) * 8 / 1e6)
		}
		if n := len(res.receivers); n > 0 {
			s := r.servers[res.receiverNode]
			rep.RSSPerSubscriberKiB = float64(s.rssJoined-s.rssBefore) / 1024 / float64(n)
		}
	}
}

// propagation returns, for every receiver that joined before a publisher
// published, the time from that "publish" to the receiver's first packet of
// the publisher.
func propagation(receivers, publishers []*Client) []time.Duration {
	var out []time.Duration
	for _, p := range publishers {
		publishAt := p.publishAt.Load()
		if publishAt == 0 {
			continue
		}
		for _, c := range receivers {
			if c == p || c.joinedAt >= publishAt {
				continue
			}
			var first int64
			for _, t := range c.tracks {
				if t.publisher == p.id && t.first > 0 && (first == 0 || t.first < first) {
					first = t.first
				}
			}
			if first > 0 {
				out = append(out, time.Duration(first-publishAt))
			}
		}
	}
	return out
}
