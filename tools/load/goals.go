package load

import (
	"fmt"
	"slices"
	"strings"
)

// Targets of the performance goals.
const (
	goalUSPerPacket  = 6.0    // node CPU µs per outgoing packet
	goalPipeDelayMS  = 2.0    // pipe's added one-way delay, p50
	goalReceiverCost = 1.5    // cross-node node B cost / direct cost
	goalPropagation  = 300.0  // cross-node propagation p95, ms (strictly less)
	goalJoinMS       = 1000.0 // join to first media p95, ms (strictly less)
	goalVersusRatio  = 1.0    // side by side: this commit's µs per packet ÷ the base's
	// forwardAllocTest is the race-free test that checks that the forwarding
	// path allocates nothing per packet, with real subscribers.
	forwardAllocTest = "TestForwardDoesNotAllocate"
	// forwardBench is the Go benchmark whose process-wide allocations per
	// outgoing packet (metric allocPerPacket) are shown beside it.
	forwardBench   = "BenchmarkForward/consumers=100"
	allocPerPacket = "allocs/pkt-out"
)

// notMeasured is the measured cell of a goal without data.
const notMeasured = "not measured"

// Goal is one performance goal checked against a bench's data.
type Goal struct {
	Name     string
	Target   string
	Measured string // notMeasured when the data is missing
	Met      bool
}

// Goals checks the performance goals against d. A goal whose data is
// missing is not met and says "not measured". Profiled runs are left out.
func (d *BenchData) Goals() []Goal {
	fan := d.largestFanout()
	cross, direct := d.crossAndDirect()
	single, multi := d.broadcastPair()
	return []Goal{
		goalCPU(fan),
		goalLoss(fan),
		goalPipeDelay(cross, direct),
		goalReceiver(cross, direct),
		goalPropagationP95(cross),
		d.goalJoin(),
		d.goalAllocs(),
		d.goalVersus(),
		goalBroadcastCPU(single, multi),
		goalHopDelay(multi),
		goalPulls(multi),
	}
}

// runs returns the unprofiled runs of kind.
func (d *BenchData) runs(kinds ...string) []BenchRun {
	var out []BenchRun
	for _, r := range d.Runs {
		if !r.Profiled && slices.Contains(kinds, r.Kind) {
			out = append(out, r)
		}
	}
	return out
}

// largestFanout returns the fan-out run with the most subscribers.
func (d *BenchData) largestFanout() *BenchRun {
	var best *BenchRun
	for _, r := range d.runs(KindFanout) {
		if best == nil || r.size() > best.size() {
			best = &r
		}
	}
	return best
}

// crossAndDirect returns the first cross-node run and the direct-b run to
// compare it with (one of the same size if there is one).
func (d *BenchData) crossAndDirect() (cross, direct *BenchRun) {
	if c := d.runs(KindCrossNode); len(c) > 0 {
		cross = &c[0]
	}
	for _, r := range d.runs(KindDirectB) {
		if direct == nil || (cross != nil && r.size() == cross.size() && direct.size() != cross.size()) {
			direct = &r
		}
	}
	return cross, direct
}

// errNote mentions a run's errors next to a value taken from it.
func errNote(r *BenchRun) string {
	if n := r.Report.ErrorCount; n > 0 {
		return fmt.Sprintf("; errors in the run: %d", n)
	}
	return ""
}

// nodeUSPerPacket is the receiving node's CPU µs per outgoing packet.
func nodeUSPerPacket(r *BenchRun) (float64, string, bool) {
	if r == nil {
		return 0, "", false
	}
	node, ok := r.Report.receivingNode()
	if !ok {
		return 0, "", false
	}
	v, ok := r.Report.usPerPacket(node.CPUSeconds)
	return v, node.Name, ok
}

func goalCPU(fan *BenchRun) Goal {
	g := Goal{Name: "node CPU per outgoing packet, largest fan-out", Target: fmt.Sprintf("≤ %g µs", goalUSPerPacket), Measured: notMeasured}
	if fan == nil {
		return g
	}
	g.Name = fmt.Sprintf("node CPU per outgoing packet, fan-out N=%d", fan.size())
	if v, _, ok := nodeUSPerPacket(fan); ok {
		g.Measured = fmt.Sprintf("%.2f µs (%s%s)", v, fan.Name, errNote(fan))
		g.Met = v <= goalUSPerPacket
	}
	return g
}

func goalLoss(fan *BenchRun) Goal {
	g := Goal{Name: "loss, largest fan-out, node pinned to one CPU", Target: "0 %", Measured: notMeasured}
	if fan == nil {
		return g
	}
	r := fan.Report
	g.Name = fmt.Sprintf("loss at fan-out N=%d, node pinned to one CPU", fan.size())
	if r.Packets == 0 {
		return g
	}
	pin := "node not pinned"
	onOne := r.Pinned && len(r.PinServerCPUs) == 1
	switch {
	case onOne:
		pin = fmt.Sprintf("node on CPU %d", r.PinServerCPUs[0])
	case r.Pinned:
		pin = fmt.Sprintf("node on CPUs %v", r.PinServerCPUs)
	case r.PinNote != "":
		pin += ": " + r.PinNote
	}
	g.Measured = fmt.Sprintf("%.3f %% (%d of %d packets; %s, %s%s)", r.LossPercent, r.Lost, r.Lost+r.Packets, fan.Name, pin, errNote(fan))
	g.Met = r.Lost == 0 && onOne
	return g
}

func goalPipeDelay(cross, direct *BenchRun) Goal {
	g := Goal{Name: "pipe's added one-way delay (cross-node − direct-b)", Target: fmt.Sprintf("p50 ≤ %g ms", goalPipeDelayMS), Measured: notMeasured}
	if cross == nil || direct == nil || cross.Report.DelayMS.N == 0 || direct.Report.DelayMS.N == 0 {
		return g
	}
	c, b := cross.Report.DelayMS, direct.Report.DelayMS
	p50 := c.P50 - b.P50
	g.Measured = fmt.Sprintf("p50 %+.2f ms (%.2f − %.2f), p95 %+.2f ms (%.2f − %.2f)%s%s",
		p50, c.P50, b.P50, c.P95-b.P95, c.P95, b.P95, errNote(cross), errNote(direct))
	g.Met = p50 <= goalPipeDelayMS
	return g
}

func goalReceiver(cross, direct *BenchRun) Goal {
	g := Goal{Name: "receiving node's cost: cross-node node B ÷ direct-b, CPU per packet", Target: fmt.Sprintf("≤ %g", goalReceiverCost), Measured: notMeasured}
	c, node, okC := nodeUSPerPacket(cross)
	b, _, okB := nodeUSPerPacket(direct)
	if !okC || !okB || b <= 0 {
		return g
	}
	ratio := c / b
	g.Measured = fmt.Sprintf("%.2f (%s %.2f µs vs %.2f µs per packet)%s%s", ratio, node, c, b, errNote(cross), errNote(direct))
	g.Met = ratio <= goalReceiverCost
	return g
}

func goalPropagationP95(cross *BenchRun) Goal {
	g := Goal{Name: "cross-node propagation (publish on A → first packet on B), p95", Target: fmt.Sprintf("< %g ms", goalPropagation), Measured: notMeasured}
	if cross == nil || cross.Report.PropagationMS.N == 0 {
		return g
	}
	p := cross.Report.PropagationMS
	g.Measured = fmt.Sprintf("%.0f ms (p50 %.0f ms, %d subscribers%s)", p.P95, p.P50, p.N, errNote(cross))
	g.Met = p.P95 < goalPropagation
	return g
}

// goalJoin is the worst join p95 of the fan-out and churn runs.
func (d *BenchData) goalJoin() Goal {
	g := Goal{Name: "join → first media, p95 (worst of the fan-out and churn runs)", Target: fmt.Sprintf("< %g s", goalJoinMS/1000), Measured: notMeasured}
	var worst *BenchRun
	count := 0
	for _, r := range d.runs(KindFanout, KindChurn) {
		if r.Report.JoinMS.N == 0 {
			continue
		}
		count++
		if worst == nil || r.Report.JoinMS.P95 > worst.Report.JoinMS.P95 {
			worst = &r
		}
	}
	if worst == nil {
		return g
	}
	of := ""
	if count > 1 {
		of = fmt.Sprintf(", worst of %d runs", count)
	}
	g.Measured = fmt.Sprintf("%.0f ms (%s%s%s)", worst.Report.JoinMS.P95, worst.Name, of, errNote(worst))
	g.Met = worst.Report.JoinMS.P95 < goalJoinMS
	return g
}

// goalAllocs reads the outcome of forwardAllocTest in the alloc tests'
// output (the goal: met when it passed) and shows beside it forwardBench's
// process-wide allocations per outgoing packet (mean over its result
// lines), which also count the in-process receivers and time-driven work
// such as ICE keepalives and RTCP timers, so they are not the verdict.
func (d *BenchData) goalAllocs() Goal {
	g := Goal{Name: "heap allocations per forwarded packet per subscriber", Target: "0", Measured: notMeasured}
	var parts []string
	switch {
	case !d.HasAllocTests:
	case strings.Contains(d.AllocTests, "--- PASS: "+forwardAllocTest+" "):
		parts = append(parts, "0 in the forwarding path ("+forwardAllocTest+" passed: one layer and three, to 10 real subscribers)")
		g.Met = true
	case strings.Contains(d.AllocTests, "--- FAIL: "+forwardAllocTest+" "):
		parts = append(parts, "the forwarding path allocates ("+forwardAllocTest+" failed)")
	}
	var sum float64
	n := 0
	for _, b := range ParseBenchmarks(d.GoBench) {
		if v, ok := b.Metrics[allocPerPacket]; ok && b.Name == forwardBench {
			sum += v
			n++
		}
	}
	if n > 0 {
		parts = append(parts, fmt.Sprintf("whole process in %s: %.2f per outgoing packet, receivers and ICE keepalives included",
			strings.TrimPrefix(forwardBench, "Benchmark"), sum/float64(n)))
	}
	if len(parts) > 0 {
		g.Measured = strings.Join(parts, "; ")
	}
	if len(parts) == 0 || !strings.HasPrefix(parts[0], "0 in") {
		g.Met = false
	}
	return g
}

// versusSide is one binary's runs of the side-by-side comparison.
type versusSide struct {
	us       []float64 // node µs per outgoing packet of each measured run
	mean     float64
	min, max float64
	errors   int // error count over its runs
}

// add counts one run.
func (s *versusSide) add(r *Report) {
	s.errors += r.ErrorCount
	node, ok := r.receivingNode()
	if !ok {
		return
	}
	v, ok := r.usPerPacket(node.CPUSeconds)
	if !ok {
		return
	}
	if len(s.us) == 0 || v < s.min {
		s.min = v
	}
	if len(s.us) == 0 || v > s.max {
		s.max = v
	}
	s.us = append(s.us, v)
	s.mean += (v - s.mean) / float64(len(s.us))
}

// String is "7.10 µs over 2 runs, 7.02–7.18".
func (s *versusSide) String() string {
	if len(s.us) == 1 {
		return fmt.Sprintf("%.2f µs, 1 run", s.mean)
	}
	return fmt.Sprintf("%.2f µs over %d runs, %.2f–%.2f", s.mean, len(s.us), s.min, s.max)
}

// versus sums up the side-by-side runs: the base's and this commit's
// sides, the subscribers of the scenario, and whether both sides have a
// measured run.
func (d *BenchData) versus() (base, head versusSide, n int, ok bool) {
	for _, r := range d.Versus {
		if n == 0 {
			n = r.Report.Params.Subscribers
		}
		if r.Base {
			base.add(r.Report)
		} else {
			head.add(r.Report)
		}
	}
	return base, head, n, len(base.us) > 0 && len(head.us) > 0 && base.mean > 0
}

// baseName is the base commit's hash, or "BENCH_BASE" when unknown.
func (d *BenchData) baseName() string {
	if h, _, _ := strings.Cut(d.Base, " "); h != "" {
		return h
	}
	return "BENCH_BASE"
}

// goalVersus: this commit's node CPU per outgoing packet in the
// side-by-side fan-out runs must not exceed the base's (mean over mean).
func (d *BenchData) goalVersus() Goal {
	g := Goal{Name: "node CPU per outgoing packet, fan-out side by side, this commit ÷ BENCH_BASE",
		Target: fmt.Sprintf("≤ %.2f", goalVersusRatio), Measured: notMeasured}
	base, head, n, ok := d.versus()
	if n > 0 {
		g.Name = fmt.Sprintf("node CPU per outgoing packet, fan-out N=%d side by side, this commit ÷ BENCH_BASE", n)
	}
	if !ok {
		return g
	}
	ratio := head.mean / base.mean
	g.Measured = fmt.Sprintf("%.3f (this commit %s; %s %s)", ratio, head.String(), d.baseName(), base.String())
	if e := base.errors + head.errors; e > 0 {
		g.Measured += fmt.Sprintf("; errors in the runs: %d", e)
	}
	g.Met = ratio <= goalVersusRatio
	return g
}
