package load

import (
	"strconv"
	"strings"
)

// Benchmark is one result line of `go test -bench` output, e.g.
//
//	BenchmarkForward/consumers=100-2   1000   667209 ns/op   57323 B/op   292 allocs/op
type Benchmark struct {
	// Pkg is the package of the preceding "pkg:" line ("" when none).
	Pkg string
	// Name is the full name without the -GOMAXPROCS suffix
	// ("BenchmarkForward/consumers=100").
	Name string
	// Procs is the GOMAXPROCS suffix (1 when absent).
	Procs int
	// Iterations is b.N.
	Iterations int64
	// Metrics maps a unit ("ns/op", "allocs/op", custom ones) to its value.
	Metrics map[string]float64
}

// ParseBenchmarks returns the result lines of `go test -bench` output in
// order; other lines (logs, PASS, ok) are skipped.
func ParseBenchmarks(text string) []Benchmark {
	var out []Benchmark
	pkg := ""
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if p, ok := strings.CutPrefix(line, "pkg:"); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if b, ok := parseBenchmarkLine(line); ok {
			b.Pkg = pkg
			out = append(out, b)
		}
	}
	return out
}

// parseBenchmarkLine parses "Name-P N v1 unit1 v2 unit2 ...".
func parseBenchmarkLine(line string) (Benchmark, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
		return Benchmark{}, false
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n <= 0 {
		return Benchmark{}, false
	}
	b := Benchmark{Name: f[0], Procs: 1, Iterations: n, Metrics: make(map[string]float64, (len(f)-2)/2)}
	if i := strings.LastIndexByte(f[0], '-'); i > 0 {
		if p, err := strconv.Atoi(f[0][i+1:]); err == nil && p > 0 {
			b.Name, b.Procs = f[0][:i], p
		}
	}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Benchmark{}, false
		}
		b.Metrics[f[i+1]] = v
	}
	return b, true
}

// benchSummaryLines keeps the lines of `go test -bench` output worth
// showing: the environment (goos, goarch, pkg, cpu), the results, and each
// package's ok or FAIL line.
func benchSummaryLines(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		t := strings.TrimSpace(line)
		keep := false
		for _, p := range []string{"goos:", "goarch:", "pkg:", "cpu:", "ok ", "ok\t", "FAIL", "--- FAIL"} {
			keep = keep || strings.HasPrefix(t, p)
		}
		if _, ok := parseBenchmarkLine(t); keep || ok {
			out = append(out, line)
		}
	}
	return out
}

// pprofTop keeps the head of `go tool pprof -top` output (everything up to
// and including the "flat  flat%" column line) and its first n entries.
func pprofTop(text string, n int) []string {
	var out []string
	entries, inTable := 0, false
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if inTable {
			if entries == n {
				break
			}
			entries++
		} else if f := strings.Fields(line); len(f) > 1 && f[0] == "flat" && f[1] == "flat%" {
			inTable = true
		}
		out = append(out, line)
	}
	return out
}
