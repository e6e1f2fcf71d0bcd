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
	n := 0
	for _, r := range d.FastWrite {
		if n == 0 {
			n = r.Report.Params.Subscribers
		}
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
	writePairs(b, d.FastWrite, []string{"off µs/pkt", "on µs/pkt", "on ÷ off"}, "off / on")
}
