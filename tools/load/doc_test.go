package load

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/document.golden.md")

// benchDir is a sample bench directory: every kind of run, Go benchmark
// output with a log line in between, commands, and profile tops.
const benchDir = "testdata/bench"

// testMachine is a fixed machine, so the document is reproducible.
func testMachine() Machine {
	return Machine{
		Date:      time.Date(2026, 1, 2, 10, 4, 0, 0, time.UTC),
		Commit:    "0e679bb-dirty",
		CPUModel:  "Intel(R) Xeon(R) Processor @ 2.90GHz",
		CPUs:      2,
		Kernel:    "6.1.0-28-amd64",
		GoVersion: "go1.26.8",
	}
}

func readTestBench(t *testing.T) *BenchData {
	t.Helper()
	d, err := ReadBenchDir(benchDir)
	if err != nil {
		t.Fatalf("ReadBenchDir: %v", err)
	}
	return d
}

// TestDocumentGolden renders the sample directory and compares it with
// testdata/document.golden.md (go test -run DocumentGolden -update
// rewrites it; review the diff).
func TestDocumentGolden(t *testing.T) {
	got := Document(testMachine(), readTestBench(t), 5*time.Minute+3*time.Second)
	golden := filepath.Join("testdata", "document.golden.md")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file: %v", err)
	}
	if got != string(want) {
		t.Errorf("document differs from %s (-update rewrites it):\n%s", golden, got)
	}
}

// TestDocumentContent checks the parts of the document that matter, so that
// a careless -update of the golden file cannot hide them.
func TestDocumentContent(t *testing.T) {
	doc := Document(testMachine(), readTestBench(t), 5*time.Minute+3*time.Second)
	for _, want := range []string{
		"- Commit: 0e679bb-dirty\n",
		"- Machine: Intel(R) Xeon(R) Processor @ 2.90GHz, 2 CPUs, Linux 6.1.0-28-amd64, go1.26.8\n",
		"- Bench wall time: 5m3s\n",
		"- CPU pinning: yes, nodes on CPUs [0], generator on [1] (every run)\n",
		"`make bench`, which ran:\n\n```text\ngo test -run",
		// µs/pkt of cross-node: B alone, A+B in brackets.
		"| cross-node-100 | cross-node | N=100 | 220.00 | 25000 | 0.000 | B 5.20 (A+B 6.40) |",
		"| fanout-200 | fanout | N=200 | 440.00 | 50000 | 0.000 | 4.75 |",
		"| meeting-10 | meeting | P=10 |",
		"- churn-50, errors (1): a churning subscriber got no media",
		"| node CPU per outgoing packet, fan-out N=200 | ≤ 6 µs | 4.75 µs (fanout-200) | yes |",
		"| loss at fan-out N=200, node pinned to one CPU | 0 % | 0.000 % (0 of 1000000 packets; fanout-200, node on CPU 0) | yes |",
		"p50 +0.50 ms (1.50 − 1.00), p95 +1.10 ms (3.60 − 2.50) | yes |",
		"| 1.30 (B 5.20 µs vs 4.00 µs per packet) | yes |",
		"| < 300 ms | 180 ms (p50 95 ms, 100 subscribers) | yes |",
		"| < 1 s | 870 ms (churn-50, worst of 3 runs; errors in the run: 1) | yes |",
		"| 0 | 0 in the forwarding path (TestForwardDoesNotAllocate passed: one layer and three, to 10 real subscribers); whole process in Forward/consumers=100: 2.92 per outgoing packet, receivers and ICE keepalives included | yes |",
		// The side-by-side runs: per round, then the means; the base named.
		"### Forwarding CPU, this commit vs BENCH_BASE\n",
		"against the node built from BENCH_BASE = 9fd9194 (\"sfu: VideoSettings,",
		"and against this commit's (0e679bb-dirty)",
		"| round | 9fd9194 µs/pkt | this commit µs/pkt | this ÷ base |",
		"| 1 | 5.00 | 4.90 | 0.980 | 50000 / 50000 |",
		"| 2 | 5.20 | 5.00 | 0.962 |",
		"| mean | 5.10 | 4.95 | **0.971** |",
		"with the flags, measurement window and CPU pinning of the other scenarios. µs/pkt is the node's CPU time per outgoing packet",
		"| node CPU per outgoing packet, fan-out N=200 side by side, this commit ÷ BENCH_BASE | ≤ 1.00 | 0.971 (this commit 4.95 µs over 2 runs, 4.90–5.00; 9fd9194 5.10 µs over 2 runs, 5.00–5.20) | yes |",
		// Broadcast: per node, A's datagrams include its link datagrams.
		"| broadcast-abc-300 | broadcast | N=300 on A+B+C | 660.00 | 75000 | 0.000 | A 5.50, B 5.20, C 5.40 | - |",
		"### Broadcast across nodes\n",
		"| broadcast-abc-300 | A | 100 | 25500 (25000 + 500) | 2.81 | 5.50 | 1.10 | 0.000 | 1.0 / 2.5 / 4.0 | - | 0 / 4 | 4.40 |",
		"| broadcast-abc-300 | C | 100 | 25000 (25000 + 0) | 2.70 | 5.40 | 1.08 | 0.000 | 1.5 / 3.4 / 5.5 | 1.002 | 2 / 0 | 0.01 |",
		"- broadcast-abc-300: stream 250 pkts/s; pulls B 1.00, C 1.00; hop's added delay p50 +0.45 ms, p95 +0.80 ms",
		"| broadcast N=300 on A+B+C: per-node CPU per outgoing datagram ÷ on A alone (N=300) | ≤ 1.2 on every node | worst 1.10 (A 1.10, B 1.04, C 1.08; 5.00 µs on A alone) | yes |",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	// Benchmark logs and the bare name line before them are left out.
	for _, absent := range []string{"bench_test.go:99", "BenchmarkForward/consumers=100-2\n"} {
		if strings.Contains(doc, absent) {
			t.Errorf("document has %q", absent)
		}
	}
	// Table order: fanout by N, meeting, churn, direct-b, cross-node,
	// broadcasts by nodes, profiled.
	var order []string
	for _, name := range []string{"fanout-50 ", "fanout-200 ", "meeting-10 ", "churn-50 ", "direct-b-100 ", "cross-node-100 ",
		"broadcast-a-300 ", "broadcast-abc-300 ", "fanout-200-profiled "} {
		order = append(order, name)
		if i := strings.Index(doc, "| "+name+"|"); i < 0 {
			t.Errorf("no row %q", name)
		}
	}
	for i := 1; i < len(order); i++ {
		if strings.Index(doc, "| "+order[i-1]+"|") > strings.Index(doc, "| "+order[i]+"|") {
			t.Errorf("row %q after %q", order[i-1], order[i])
		}
	}
	// Profiles: the head and 25 entries each, flat before cumulative.
	flat, cum := strings.Index(doc, "fanout-200-top.txt (flat, top 25)"), strings.Index(doc, "fanout-200-cum.txt (cumulative, top 25)")
	if flat < 0 || cum < flat {
		t.Errorf("profile sections at %d and %d", flat, cum)
	}
	if !strings.Contains(doc, "runtime.chanrecv\n") || strings.Contains(doc, "runtime.chansend\n") {
		t.Error("profile not cut after 25 entries")
	}
}

// TestDocumentMissing renders an empty directory: every goal is "not
// measured" and not met, and every section says what is missing.
func TestDocumentMissing(t *testing.T) {
	d, err := ReadBenchDir(t.TempDir())
	if err != nil {
		t.Fatalf("ReadBenchDir: %v", err)
	}
	for _, g := range d.Goals() {
		if g.Measured != notMeasured || g.Met {
			t.Errorf("goal %q: measured %q, met %v; want not measured, no", g.Name, g.Measured, g.Met)
		}
	}
	doc := Document(Machine{}, d, 0)
	for _, want := range []string{"Commit: unknown", "Bench wall time: not given", "commands.txt missing",
		"No load reports", "go-bench.txt missing", "No CPU profile", "No side-by-side runs"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q:\n%s", want, doc)
		}
	}
}

// TestGoals checks goals that depend on details of the runs.
func TestGoals(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(d *BenchData)
		goal   int // index in Goals()
		met    bool
		substr string // of Measured
	}{
		{"sample cpu", func(*BenchData) {}, 0, true, "4.75 µs"},
		{"cpu over target", func(d *BenchData) { run(d, "fanout-200").Servers[0].CPUSeconds = 7 }, 0, false, "7.00 µs"},
		{"cpu not measured", func(d *BenchData) { run(d, "fanout-200").CPUMeasured = false }, 0, false, notMeasured},
		{"loss", func(d *BenchData) { run(d, "fanout-200").Lost = 1 }, 1, false, "(1 of 1000001 packets"},
		{"loss unpinned", func(d *BenchData) { r := run(d, "fanout-200"); r.Pinned = false; r.PinNote = "only 1 CPU" }, 1, false, "node not pinned: only 1 CPU"},
		{"loss two CPUs", func(d *BenchData) { run(d, "fanout-200").PinServerCPUs = []int{0, 1} }, 1, false, "node on CPUs [0 1]"},
		{"loss without packets", func(d *BenchData) { run(d, "fanout-200").Packets = 0 }, 1, false, notMeasured},
		{"pipe delay too high", func(d *BenchData) { run(d, "cross-node-100").DelayMS.P50 = 3.5 }, 2, false, "p50 +2.50 ms"},
		{"no direct run", func(d *BenchData) { drop(d, "direct-b-100") }, 2, false, notMeasured},
		{"receiver cost too high", func(d *BenchData) { run(d, "cross-node-100").Servers[1].CPUSeconds = 4 }, 3, false, "2.00 (B 8.00 µs"},
		{"no cross-node run", func(d *BenchData) { drop(d, "cross-node-100") }, 4, false, notMeasured},
		{"propagation too slow", func(d *BenchData) { run(d, "cross-node-100").PropagationMS.P95 = 300 }, 4, false, "300 ms"},
		{"join too slow", func(d *BenchData) { run(d, "fanout-50").JoinMS.P95 = 1200 }, 5, false, "1200 ms (fanout-50, worst of 3 runs)"},
		{"profiled join ignored", func(d *BenchData) { run(d, "fanout-200-profiled").JoinMS.P95 = 5000 }, 5, true, "870 ms"},
		{"alloc test passed", func(d *BenchData) {
			d.GoBench = "BenchmarkForward/consumers=100-2 100 5 ns/op 0.12 allocs/pkt-out 0 B/op 12 allocs/op\n"
		}, 6, true, "0 in the forwarding path (TestForwardDoesNotAllocate passed"},
		{"process-wide mean shown", func(d *BenchData) {
			d.GoBench = "BenchmarkForward/consumers=100-2 100 5 ns/op 0.1 allocs/pkt-out\nBenchmarkForward/consumers=100-2 100 5 ns/op 0.3 allocs/pkt-out\n"
		}, 6, true, "whole process in Forward/consumers=100: 0.20 per outgoing packet"},
		{"alloc test failed", func(d *BenchData) {
			d.AllocTests = "=== RUN   TestForwardDoesNotAllocate\n--- FAIL: TestForwardDoesNotAllocate (0.12s)\nFAIL\n"
		}, 6, false, "the forwarding path allocates (TestForwardDoesNotAllocate failed)"},
		{"alloc test missing", func(d *BenchData) {
			d.AllocTests, d.HasAllocTests = "", false
			d.GoBench = "BenchmarkForward/consumers=100-2 100 5 ns/op 0.1 allocs/pkt-out\n"
		}, 6, false, "whole process"},
		{"nothing measured", func(d *BenchData) { d.AllocTests, d.HasAllocTests, d.GoBench = "", false, "" }, 6, false, notMeasured},
		{"side by side", func(*BenchData) {}, 7, true, "0.971 (this commit 4.95 µs over 2 runs"},
		{"side by side worse", func(d *BenchData) { d.Versus[3].Report.Servers[0].CPUSeconds = 5.5 }, 7, false, "1.020 (this commit 5.20 µs over 2 runs, 4.90–5.50"},
		{"side by side, a run not measured", func(d *BenchData) { d.Versus[3].Report.CPUMeasured = false }, 7, true,
			"0.961 (this commit 4.90 µs, 1 run; 9fd9194 5.10 µs over 2 runs"},
		{"side by side with errors", func(d *BenchData) { d.Versus[0].Report.ErrorCount = 2 }, 7, true, "; errors in the runs: 2"},
		{"side by side, base unnamed", func(d *BenchData) { d.Base = "" }, 7, true, "; BENCH_BASE 5.10 µs"},
		{"side by side without the base", func(d *BenchData) {
			d.Versus = slices.DeleteFunc(d.Versus, func(r VersusRun) bool { return r.Base })
		}, 7, false, notMeasured},
		{"broadcast cpu", func(*BenchData) {}, 8, true, "worst 1.10 (A 1.10, B 1.04, C 1.08; 5.00 µs on A alone)"},
		{"broadcast cpu over target", func(d *BenchData) {
			n := &run(d, "broadcast-abc-300").Broadcast.Nodes[2]
			n.USPerDatagram = 6.5
		}, 8, false, "worst 1.30 (A 1.10, B 1.04, C 1.30"},
		{"broadcast cpu, a node not measured", func(d *BenchData) {
			run(d, "broadcast-abc-300").Broadcast.Nodes[1].CPUMeasured = false
		}, 8, false, notMeasured},
		{"broadcast cpu without the single node", func(d *BenchData) { drop(d, "broadcast-a-300") }, 8, false, notMeasured},
		{"broadcast cpu, the widest run judged", func(d *BenchData) {
			two := *run(d, "broadcast-abc-300")
			b := *two.Broadcast
			b.Nodes = b.Nodes[:2]
			two.Broadcast = &b
			d.Runs = append(d.Runs, BenchRun{Name: "broadcast-ab-300", Kind: "broadcast-ab", Report: &two})
			run(d, "broadcast-abc-300").Broadcast.Nodes[0].USPerDatagram = 7
		}, 8, false, "worst 1.40 (A 1.40"},
		{"hop delay", func(*BenchData) {}, 9, true, "p95 +0.80 ms (3.30 − 2.50), p50 +0.45 ms"},
		{"hop delay too high", func(d *BenchData) { run(d, "broadcast-abc-300").Broadcast.HopMS.P95 = 2.01 }, 9, false, "p95 +2.01 ms"},
		{"hop delay with one node only", func(d *BenchData) { drop(d, "broadcast-abc-300") }, 9, false, notMeasured},
		{"pulls", func(*BenchData) {}, 10, true, "B 1.000 (100 viewers, 2 pipes in); C 1.002"},
		{"pulled twice", func(d *BenchData) { run(d, "broadcast-abc-300").Broadcast.Nodes[2].Pulls = 2 }, 10, false, "C 2.000"},
		{"pulls without metrics", func(d *BenchData) { run(d, "broadcast-abc-300").Broadcast.Nodes[1].Metrics = nil }, 10, false, notMeasured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := readTestBench(t)
			tt.mod(d)
			g := d.Goals()[tt.goal]
			if g.Met != tt.met || !strings.Contains(g.Measured, tt.substr) {
				t.Errorf("goal %q: measured %q, met %v; want %q in it, met %v", g.Name, g.Measured, g.Met, tt.substr, tt.met)
			}
		})
	}
}

// run returns the report of the named run of d.
func run(d *BenchData, name string) *Report {
	for _, r := range d.Runs {
		if r.Name == name {
			return r.Report
		}
	}
	panic("no run " + name)
}

// drop removes the named run from d.
func drop(d *BenchData, name string) {
	d.Runs = slices.DeleteFunc(d.Runs, func(r BenchRun) bool { return r.Name == name })
}

func TestReadBenchDir(t *testing.T) {
	d := readTestBench(t)
	var names, kinds []string
	for _, r := range d.Runs {
		names = append(names, r.Name)
		kinds = append(kinds, r.Kind)
	}
	wantNames := []string{"fanout-50", "fanout-200", "meeting-10", "churn-50", "direct-b-100", "cross-node-100",
		"broadcast-a-300", "broadcast-abc-300", "fanout-200-profiled"}
	wantKinds := []string{"fanout", "fanout", "meeting", "churn", "direct-b", "cross-node", "broadcast-a", "broadcast-abc", "fanout"}
	if !slices.Equal(names, wantNames) || !slices.Equal(kinds, wantKinds) {
		t.Errorf("runs %v, kinds %v; want %v, %v", names, kinds, wantNames, wantKinds)
	}
	if !d.HasGoBench || !d.HasCommands || len(d.Commands) != 3 || len(d.Profiles) != 2 {
		t.Errorf("go bench %v, commands %v %d, profiles %d", d.HasGoBench, d.HasCommands, len(d.Commands), len(d.Profiles))
	}
	// Side by side: run order (by round, base first); other names left out.
	var versus []string
	for _, r := range d.Versus {
		versus = append(versus, r.Name())
	}
	if want := []string{"base-1", "new-1", "base-2", "new-2"}; !slices.Equal(versus, want) || !strings.HasPrefix(d.Base, "9fd9194 sfu: ") {
		t.Errorf("side-by-side runs %v, base %q; want %v, 9fd9194 and its subject", versus, d.Base, want)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBenchDir(bad); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Errorf("malformed report: err %v, want one naming x.json", err)
	}
	if _, err := ReadBenchDir(filepath.Join(bad, "nope")); err == nil {
		t.Error("missing directory: no error")
	}
}

func TestParseBenchmarks(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want Benchmark
	}{
		{"standard", "BenchmarkX-2   100   12.5 ns/op   3 B/op   1 allocs/op", true,
			Benchmark{Name: "BenchmarkX", Procs: 2, Iterations: 100, Metrics: map[string]float64{"ns/op": 12.5, "B/op": 3, "allocs/op": 1}}},
		{"sub-benchmark and custom metric", "BenchmarkF/consumers=100-8\t2000\t667209 ns/op\t2.920 allocs/pkt-out", true,
			Benchmark{Name: "BenchmarkF/consumers=100", Procs: 8, Iterations: 2000, Metrics: map[string]float64{"ns/op": 667209, "allocs/pkt-out": 2.92}}},
		{"no procs suffix", "BenchmarkY 5 1 ns/op", true,
			Benchmark{Name: "BenchmarkY", Procs: 1, Iterations: 5, Metrics: map[string]float64{"ns/op": 1}}},
		{"name only (output followed)", "BenchmarkX-2", false, Benchmark{}},
		{"odd fields", "BenchmarkX-2 100 12 ns/op 3", false, Benchmark{}},
		{"bad value", "BenchmarkX-2 100 fast ns/op", false, Benchmark{}},
		{"not a benchmark", "ok  \tpkg\t1.0s", false, Benchmark{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseBenchmarks("pkg: p\n" + tt.line + "\n")
			if !tt.ok {
				if len(got) != 0 {
					t.Errorf("parsed %+v from %q", got, tt.line)
				}
				return
			}
			tt.want.Pkg = "p"
			if len(got) != 1 || got[0].Name != tt.want.Name || got[0].Procs != tt.want.Procs || got[0].Pkg != "p" ||
				got[0].Iterations != tt.want.Iterations || !mapsEqual(got[0].Metrics, tt.want.Metrics) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestBenchSummaryLines(t *testing.T) {
	text := "goos: linux\nBenchmarkX-2\n    x_test.go:1: log\nBenchmarkX-2 10 1 ns/op\nPASS\nok  \tp\t1s\n--- FAIL: BenchmarkY\nFAIL\tq\t1s\n"
	got := benchSummaryLines(text)
	want := []string{"goos: linux", "BenchmarkX-2 10 1 ns/op", "ok  \tp\t1s", "--- FAIL: BenchmarkY", "FAIL\tq\t1s"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPprofTop(t *testing.T) {
	text := "File: x\n      flat  flat%   sum%        cum   cum%\n a\n b\n c\n"
	tests := []struct {
		n    int
		want []string
	}{
		{2, []string{"File: x", "      flat  flat%   sum%        cum   cum%", " a", " b"}},
		{5, []string{"File: x", "      flat  flat%   sum%        cum   cum%", " a", " b", " c"}},
		{0, []string{"File: x", "      flat  flat%   sum%        cum   cum%"}},
	}
	for _, tt := range tests {
		if got := pprofTop(text, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("pprofTop(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	const sec = "new\n"
	tests := []struct {
		name, doc, want string
		err             string
	}{
		{"empty", "", DocBegin + "\nnew\n" + DocEnd + "\n", ""},
		{"replace", "# T\r\n\n" + DocBegin + "\nold\nold2\n" + DocEnd + "\ntail  \n",
			"# T\r\n\n" + DocBegin + "\nnew\n" + DocEnd + "\ntail  \n", ""},
		{"replace empty part", "a\n" + DocBegin + "\n" + DocEnd, "a\n" + DocBegin + "\nnew\n" + DocEnd, ""},
		{"append", "# T\n\ntext", "# T\n\ntext\n\n" + DocBegin + "\nnew\n" + DocEnd + "\n", ""},
		{"append after newline", "text\n", "text\n\n" + DocBegin + "\nnew\n" + DocEnd + "\n", ""},
		{"only the first pair", DocBegin + "\nx\n" + DocEnd + "\n" + DocBegin + "\ny\n" + DocEnd + "\n",
			DocBegin + "\nnew\n" + DocEnd + "\n" + DocBegin + "\ny\n" + DocEnd + "\n", ""},
		{"begin without end", "a\n" + DocBegin + "\nb\n", "", "no END"},
		{"end before begin", DocEnd + "\n" + DocBegin + "\n", "", "END marker before"},
		{"marker inside a line is not a marker", "x " + DocBegin + "\n", "x " + DocBegin + "\n\n" + DocBegin + "\nnew\n" + DocEnd + "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReplaceSection([]byte(tt.doc), sec)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestUpdateDoc(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "perf.md")
	if err := UpdateDoc(path, "one\n"); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := os.WriteFile(path, []byte("# Perf\n\n"+DocBegin+"\none\n"+DocEnd+"\n\nhand-written\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(path, "two\n"); err != nil {
		t.Fatalf("update: %v", err)
	}
	got, err := os.ReadFile(path)
	if want := "# Perf\n\n" + DocBegin + "\ntwo\n" + DocEnd + "\n\nhand-written\n"; err != nil || string(got) != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600 kept", st.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory, want no temporary file left", len(entries))
	}
	if err := os.WriteFile(path, []byte(DocBegin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(path, "x\n"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("broken markers: err %v, want one naming the file", err)
	}
}

// TestDescribeMachine reads this machine: the fields every Linux box has.
func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine(t.Context())
	if m.CPUs < 1 || m.Kernel == "" || !strings.HasPrefix(m.GoVersion, "go") || m.Date.IsZero() {
		t.Errorf("machine %+v", m)
	}
}
