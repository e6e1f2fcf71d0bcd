package load

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the result of one run. Rates and per-packet costs refer to the
// measurement window; packets are counted at the receivers (see the field
// comments). Fields that could not be measured are zero, with the reason in
// Errors or ServerReport.Error.
type Report struct {
	Scenario string `json:"scenario"`
	Params   Params `json:"params"`
	// Pinned is true when the node(s) and the generator were pinned to
	// their CPU lists; PinNote says why not, or to what.
	Pinned  bool   `json:"pinned"`
	PinNote string `json:"pin_note,omitempty"`
	// PinServerCPUs are the CPUs the node(s) were pinned to (when Pinned).
	PinServerCPUs []int     `json:"pin_server_cpus,omitempty"`
	Idle          IdleCheck `json:"idle"`
	// Servers has one entry per node (A, and B for cross-node).
	Servers []ServerReport `json:"servers"`
	// CPUMeasured is true when every node's CPU time was read.
	CPUMeasured bool `json:"cpu_measured"`
	// ServerCPUSeconds is the nodes' user+system CPU time in the window.
	ServerCPUSeconds float64 `json:"server_cpu_s"`
	// Receivers and Tracks are the clients and tracks counted.
	Receivers int `json:"receivers"`
	Tracks    int `json:"tracks"`
	// Packets, Lost and Bytes sum over the counted tracks: unique packets
	// received in the window, sequence gaps, and RTP bytes (header included).
	Packets uint64 `json:"packets"`
	Lost    uint64 `json:"lost"`
	Bytes   uint64 `json:"bytes"`
	// Mbps and PPS are Bytes and Packets per second of window.
	Mbps float64 `json:"mbit_per_s"`
	PPS  float64 `json:"pkts_per_s"`
	// LossPercent is Lost / (Packets + Lost).
	LossPercent float64 `json:"loss_pct"`
	// USPerPacket is server CPU µs per outgoing packet (Packets + Lost).
	USPerPacket float64 `json:"us_per_packet"`
	// MSCPUPerMbit is server CPU ms per forwarded Mbit (Bytes).
	MSCPUPerMbit float64 `json:"ms_cpu_per_mbit"`
	// DelayMS is the one-way delay (receive - send) of packets in the window.
	DelayMS Quantiles `json:"delay_ms"`
	// JoinMS is WebSocket dial start to first media packet, for receivers
	// that joined while media was being published.
	JoinMS Quantiles `json:"join_ms"`
	// PropagationMS is a publisher's "publish" to its first packet at each
	// receiver that joined before it published (cross-node: across nodes).
	PropagationMS Quantiles `json:"propagation_ms"`
	// RSSPerSubscriberKiB is the growth of the receivers' node's RSS from
	// before the joins to the start of the window, per receiver.
	RSSPerSubscriberKiB float64 `json:"rss_per_subscriber_kib"`
	// LoadCPUSeconds is this process's (the generator's) CPU time in the
	// window: close to DurationS times its CPUs means the generator, not the
	// node, was the bottleneck.
	LoadCPUSeconds float64 `json:"load_cpu_s"`
	// DurationS is the length of the window.
	DurationS float64 `json:"duration_s"`
	// Broadcast has the per-node figures of a broadcast run (nil for the
	// other scenarios).
	Broadcast *BroadcastReport `json:"broadcast,omitempty"`
	// Profile is the file the node's CPU profile over the window was
	// written to (empty when none was asked for or the fetch failed).
	Profile string `json:"profile,omitempty"`
	// Errors lists distinct problems (capped); ErrorCount counts them all.
	Errors     []string `json:"errors"`
	ErrorCount int      `json:"error_count"`
}

// Params are the inputs of a run as reported.
type Params struct {
	URL  string `json:"url"`
	URLB string `json:"url_b,omitempty"`
	// URLPeers are the other nodes of a broadcast (B, C, ...).
	URLPeers       []string `json:"url_peers,omitempty"`
	Room           string   `json:"room"`
	Subscribers    int      `json:"subscribers,omitempty"`
	Participants   int      `json:"participants,omitempty"`
	Clip           string   `json:"clip"`
	ClipKbps       float64  `json:"clip_kbps"`
	DurationS      float64  `json:"duration_s"`
	WarmupS        float64  `json:"warmup_s"`
	JoinRate       float64  `json:"join_rate"`
	ChurnRate      float64  `json:"churn_rate,omitempty"`
	ChurnLifetimeS float64  `json:"churn_lifetime_s,omitempty"`
	// Churned is how many churning subscribers were started.
	Churned int `json:"churned,omitempty"`
}

// IdleCheck is the result of the pre-run idle check.
type IdleCheck struct {
	Checked bool    `json:"checked"`
	Max     float64 `json:"max"`
	Total   float64 `json:"total"`
	MaxCPU  float64 `json:"max_cpu"`
}

// ServerReport is one node's CPU and memory.
type ServerReport struct {
	Name       string  `json:"name"`
	URL        string  `json:"url"`
	PID        int     `json:"pid"`
	Measured   bool    `json:"measured"`
	CPUSeconds float64 `json:"cpu_s"`
	// RSS before the joins, at the start of the window and at its end.
	RSSBeforeKiB int64  `json:"rss_before_kib"`
	RSSJoinedKiB int64  `json:"rss_joined_kib"`
	RSSEndKiB    int64  `json:"rss_end_kib"`
	Error        string `json:"error,omitempty"`
}

// Quantiles are percentiles of a distribution in milliseconds; N samples.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	N   uint64  `json:"n"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// histQuantiles summarizes a histogram.
func histQuantiles(h *Histogram) Quantiles {
	return Quantiles{P50: ms(h.Quantile(0.50)), P95: ms(h.Quantile(0.95)), P99: ms(h.Quantile(0.99)), N: h.Count()}
}

// sampleQuantiles summarizes exact samples (sorted in place).
func sampleQuantiles(s []time.Duration) Quantiles {
	return Quantiles{P50: ms(quantile(s, 0.50)), P95: ms(quantile(s, 0.95)), P99: ms(quantile(s, 0.99)), N: uint64(len(s))}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("load: write json report: %w", err)
	}
	return nil
}

// cpuCell formats a CPU-derived value, or "-" when CPU was not measured.
func (r *Report) cpuCell(format string, v float64) string {
	if !r.CPUMeasured {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// serverCPUCell is the nodes' CPU seconds, split per node when there are
// several ("1.50 (A 0.40, B 1.10)").
func (r *Report) serverCPUCell() string {
	cell := r.cpuCell("%.2f", r.ServerCPUSeconds)
	if !r.CPUMeasured || len(r.Servers) < 2 {
		return cell
	}
	parts := make([]string, len(r.Servers))
	for i, s := range r.Servers {
		parts[i] = fmt.Sprintf("%s %.2f", s.Name, s.CPUSeconds)
	}
	return cell + " (" + strings.Join(parts, ", ") + ")"
}

// loadCPUCell is the generator's CPU as a percentage of one CPU.
func (r *Report) loadCPUCell() string {
	if r.DurationS <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", 100*r.LoadCPUSeconds/r.DurationS)
}

// clients is the scenario's size as shown in tables (a broadcast's with
// its nodes: "N=300 on A+B+C").
func (r *Report) clients() string {
	if r.Scenario == ScenarioMeeting {
		return fmt.Sprintf("P=%d", r.Params.Participants)
	}
	if r.Broadcast != nil {
		return fmt.Sprintf("N=%d on %s", r.Params.Subscribers, r.Broadcast.nodeNames())
	}
	return fmt.Sprintf("N=%d", r.Params.Subscribers)
}

// WriteTable writes the report as an aligned two-column text table.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("scenario", "%s %s (room %s, clip %.0f kbit/s)", r.Scenario, r.clients(), r.Params.Room, r.Params.ClipKbps)
	if r.Scenario == ScenarioChurn {
		row("churn", "%.1f/s, lifetime %gs, %d started", r.Params.ChurnRate, r.Params.ChurnLifetimeS, r.Params.Churned)
	}
	row("window", "%.1f s (warm-up %.1f s)", r.DurationS, r.Params.WarmupS)
	pin := yesNo(r.Pinned)
	if r.PinNote != "" {
		pin += " (" + r.PinNote + ")"
	}
	row("pinned", "%s", pin)
	if r.Idle.Checked {
		row("idle check", "%.0f%% busy (busiest CPU %.0f%%), limit %.0f%%", 100*r.Idle.Total, 100*r.Idle.MaxCPU, 100*r.Idle.Max)
	} else {
		row("idle check", "off")
	}
	if r.DurationS == 0 && r.Receivers == 0 {
		// Stopped before anything was measured: only say why.
		row("errors", "%d", r.ErrorCount)
		for _, e := range r.Errors {
			row("", "%s", e)
		}
		return flush(tw)
	}
	for _, s := range r.Servers {
		if s.Measured {
			row("node "+s.Name, "pid %d, CPU %.2f s, RSS %d -> %d -> %d KiB", s.PID, s.CPUSeconds, s.RSSBeforeKiB, s.RSSJoinedKiB, s.RSSEndKiB)
		} else {
			row("node "+s.Name, "not measured: %s", s.Error)
		}
	}
	row("receivers", "%d (%d tracks)", r.Receivers, r.Tracks)
	row("packets", "%d received, %d lost (%.3f %%)", r.Packets, r.Lost, r.LossPercent)
	row("throughput", "%.0f pkts/s, %.2f Mbit/s", r.PPS, r.Mbps)
	row("server CPU", "%s s", r.cpuCell("%.2f", r.ServerCPUSeconds))
	row("CPU per packet", "%s µs", r.cpuCell("%.2f", r.USPerPacket))
	row("CPU per Mbit", "%s ms", r.cpuCell("%.2f", r.MSCPUPerMbit))
	if r.DurationS > 0 {
		row("generator CPU", "%.2f s (%.0f%% of one CPU)", r.LoadCPUSeconds, 100*r.LoadCPUSeconds/r.DurationS)
	}
	row("delay", "p50 %.2f, p95 %.2f, p99 %.2f ms (%d samples)", r.DelayMS.P50, r.DelayMS.P95, r.DelayMS.P99, r.DelayMS.N)
	row("join", "p50 %.0f, p95 %.0f ms (%d)", r.JoinMS.P50, r.JoinMS.P95, r.JoinMS.N)
	row("propagation", "p50 %.0f, p95 %.0f ms (%d)", r.PropagationMS.P50, r.PropagationMS.P95, r.PropagationMS.N)
	row("RSS per subscriber", "%s KiB", r.cpuCell("%.0f", r.RSSPerSubscriberKiB))
	if r.Broadcast != nil {
		r.Broadcast.writeRows(tw)
	}
	row("errors", "%d", r.ErrorCount)
	for _, e := range r.Errors {
		row("", "%s", e)
	}
	return flush(tw)
}

func flush(tw *tabwriter.Writer) error {
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("load: write table: %w", err)
	}
	return nil
}

// column is one column of a markdown table of reports.
type column struct {
	name string
	cell func(r *Report) string
}

// sizeColumns name the scenario and its size.
func sizeColumns() []column {
	return []column{
		{"scenario", func(r *Report) string { return r.Scenario }},
		{"clients", (*Report).clients},
	}
}

// metricColumns are the measured values, shared by the table of single runs
// (MarkdownRow) and that of a bench document (Document). CPU costs are the
// receiving node's, with the total of all nodes beside it for cross-node.
func metricColumns() []column {
	return []column{
		{"Mbit/s", func(r *Report) string { return fmt.Sprintf("%.2f", r.Mbps) }},
		{"pkts/s", func(r *Report) string { return fmt.Sprintf("%.0f", r.PPS) }},
		{"loss %", func(r *Report) string { return fmt.Sprintf("%.3f", r.LossPercent) }},
		{"node µs/pkt", func(r *Report) string {
			if r.Broadcast != nil { // per node, per own outgoing datagram
				return r.Broadcast.usCell()
			}
			return r.nodeCostCell(r.usPerPacket)
		}},
		{"node ms CPU/Mbit", func(r *Report) string {
			if r.Broadcast != nil { // a node's link datagrams are no viewer's Mbit
				return "-"
			}
			return r.nodeCostCell(r.msPerMbit)
		}},
		{"delay p50/p95/p99 ms", func(r *Report) string {
			return fmt.Sprintf("%.1f / %.1f / %.1f", r.DelayMS.P50, r.DelayMS.P95, r.DelayMS.P99)
		}},
		{"join p50/p95 ms", func(r *Report) string { return fmt.Sprintf("%.0f / %.0f", r.JoinMS.P50, r.JoinMS.P95) }},
		{"prop. p50/p95 ms", func(r *Report) string {
			return fmt.Sprintf("%.0f / %.0f", r.PropagationMS.P50, r.PropagationMS.P95)
		}},
		{"RSS/sub KiB", func(r *Report) string { return r.cpuCell("%.0f", r.RSSPerSubscriberKiB) }},
		{"generator CPU %", (*Report).loadCPUCell},
		{"errors", func(r *Report) string { return fmt.Sprintf("%d", r.ErrorCount) }},
	}
}

// runColumns are the columns of MarkdownRow.
func runColumns() []column {
	cols := append(sizeColumns(),
		column{"pinned", func(r *Report) string { return yesNo(r.Pinned) }},
		column{"server CPU s", (*Report).serverCPUCell})
	return append(cols, metricColumns()...)
}

// cells renders r in cols.
func (r *Report) cells(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.cell(r)
	}
	return out
}

// columnNames returns the headers of cols.
func columnNames(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

// mdRow renders one markdown table row.
func mdRow(cells []string) string {
	return "| " + strings.Join(cells, " | ") + " |\n"
}

// mdHeader renders the header and separator rows of a markdown table.
func mdHeader(names []string) string {
	return mdRow(names) + "|" + strings.Repeat("---|", len(names)) + "\n"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// receivingNode returns the node the receivers joined (B for cross-node),
// when its CPU was measured.
func (r *Report) receivingNode() (ServerReport, bool) {
	i := 0
	if r.Scenario == ScenarioCrossNode {
		i = 1
	}
	if !r.CPUMeasured || i >= len(r.Servers) || !r.Servers[i].Measured {
		return ServerReport{}, false
	}
	return r.Servers[i], true
}

// usPerPacket converts CPU seconds to µs per outgoing packet (received +
// lost); false when no packet was counted.
func (r *Report) usPerPacket(cpuS float64) (float64, bool) {
	out := r.Packets + r.Lost
	if out == 0 {
		return 0, false
	}
	return cpuS * 1e6 / float64(out), true
}

// msPerMbit converts CPU seconds to ms per received Mbit; false when no
// byte was counted.
func (r *Report) msPerMbit(cpuS float64) (float64, bool) {
	if r.Bytes == 0 {
		return 0, false
	}
	return cpuS * 1e3 / (float64(r.Bytes) * 8 / 1e6), true
}

// nodeCostCell renders a CPU cost (per converts CPU seconds): the receiving
// node's, and with several nodes also the total ("B 1.20 (A+B 1.90)").
func (r *Report) nodeCostCell(per func(cpuS float64) (float64, bool)) string {
	recv, ok := r.receivingNode()
	if !ok {
		return "-"
	}
	v, ok := per(recv.CPUSeconds)
	if !ok {
		return "-"
	}
	if len(r.Servers) < 2 {
		return fmt.Sprintf("%.2f", v)
	}
	total, _ := per(r.ServerCPUSeconds)
	names := make([]string, len(r.Servers))
	for i, s := range r.Servers {
		names[i] = s.Name
	}
	return fmt.Sprintf("%s %.2f (%s %.2f)", recv.Name, v, strings.Join(names, "+"), total)
}

// MarkdownHeader returns the header (and separator) lines of the markdown
// table whose rows MarkdownRow renders.
func MarkdownHeader() string {
	return mdHeader(columnNames(runColumns()))
}

// MarkdownRow renders the report as one row of the MarkdownHeader table.
func (r *Report) MarkdownRow() string {
	return mdRow(r.cells(runColumns()))
}
