package load

import (
	"fmt"
	"regexp"
	"strings"
)

// FastWriteDir is the subdirectory of the fast write comparison: one
// fan-out scenario run alternately against this commit's node with
// --fast-write off, "off-R.json", and on, "on-R.json", R the round.
const FastWriteDir = "fastwrite"

// fastWriteName matches the name of a fast write comparison run.
var fastWriteName = regexp.MustCompile(`^(off|on)-([0-9]+)$`)

// readFastWrite reads the fast write comparison's runs from dir into
// d.FastWrite (Base: fast write off); other names are left out, a missing
// directory leaves it empty.
func (d *BenchData) readFastWrite(dir string) (err error) {
	d.FastWrite, err = readPairedRuns(dir, fastWriteName, "off")
	return err
}

// writeFastWrite writes the fast write comparison, when it was run: per
// round the node CPU per outgoing packet with --fast-write off and on,
// their ratio, rate and loss, then the means.
func writeFastWrite(b *strings.Builder, d *BenchData) {
	if len(d.FastWrite) == 0 {
		return
	}
	b.WriteString("### Forwarding CPU, --fast-write off vs on\n\n")
	var off, on versusSide
	n := 0
	rounds := map[int][2]*Report{}
	var order []int
	for _, r := range d.FastWrite {
		if n == 0 {
			n = r.Report.Params.Subscribers
		}
		pair, seen := rounds[r.Round]
		if !seen {
			order = append(order, r.Round)
		}
		if r.Base {
			pair[0] = r.Report
			off.add(r.Report)
		} else {
			pair[1] = r.Report
			on.add(r.Report)
		}
		rounds[r.Round] = pair
	}
	fmt.Fprintf(b, "The fan-out scenario at N=%d run alternately against this commit's node with --fast-write off "+
		"and on (experimental: subscriber media through the node's own SRTP context straight to the UDP socket), "+
		"off first in each round; one fresh node per run, flags, window and pinning as in the other scenarios.\n\n", n)
	runs := make([]BenchRun, len(d.FastWrite))
	for i, r := range d.FastWrite {
		who := "on"
		if r.Base {
			who = "off"
		}
		runs[i] = BenchRun{Name: fmt.Sprintf("%s-%d", who, r.Round), Report: r.Report}
	}
	fmt.Fprintf(b, "- CPU pinning: %s\n- Idle check: %s\n\n", pinSummary(runs), idleSummary(runs))
	b.WriteString(mdHeader([]string{"round", "off µs/pkt", "on µs/pkt", "on ÷ off",
		"pkts/s (off / on)", "loss % (off / on)", "errors (off / on)"}))
	cell := func(r *Report, f func(r *Report) string) string {
		if r == nil {
			return "-"
		}
		return f(r)
	}
	us := func(r *Report) string { return r.nodeCostCell(r.usPerPacket) }
	pps := func(r *Report) string { return fmt.Sprintf("%.0f", r.PPS) }
	loss := func(r *Report) string { return fmt.Sprintf("%.3f", r.LossPercent) }
	errs := func(r *Report) string { return fmt.Sprintf("%d", r.ErrorCount) }
	for _, round := range order {
		pair := rounds[round]
		ratio := "-"
		if pair[0] != nil && pair[1] != nil {
			var o, f versusSide
			o.add(pair[0])
			f.add(pair[1])
			if len(o.us) > 0 && len(f.us) > 0 && o.mean > 0 {
				ratio = fmt.Sprintf("%.3f", f.mean/o.mean)
			}
		}
		b.WriteString(mdRow([]string{fmt.Sprint(round), cell(pair[0], us), cell(pair[1], us), ratio,
			cell(pair[0], pps) + " / " + cell(pair[1], pps), cell(pair[0], loss) + " / " + cell(pair[1], loss),
			cell(pair[0], errs) + " / " + cell(pair[1], errs)}))
	}
	if len(off.us) > 0 && len(on.us) > 0 && off.mean > 0 {
		b.WriteString(mdRow([]string{"mean", fmt.Sprintf("%.2f", off.mean), fmt.Sprintf("%.2f", on.mean),
			fmt.Sprintf("**%.3f**", on.mean/off.mean), "", "", ""}))
	}
	b.WriteString("\n")
}
