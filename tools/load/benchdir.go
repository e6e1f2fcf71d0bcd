package load

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confab/confab/tools/host"
)

// Files of a bench directory (written by tools/bench.sh) besides the JSON
// reports.
const (
	// GoBenchFile is the raw output of `go test -bench`.
	GoBenchFile = "go-bench.txt"
	// AllocTestsFile is the `go test -v -run DoesNotAllocate` output of
	// the zero-allocation tests (run without -race).
	AllocTestsFile = "alloc-tests.txt"
	// CommandsFile lists the command lines the bench ran, one per line.
	CommandsFile = "commands.txt"
	// profileTopGlob and profileCumGlob match `go tool pprof -top` and
	// `-top -cum` outputs of the fan-out profile.
	profileTopGlob = "fanout-*-top.txt"
	profileCumGlob = "fanout-*-cum.txt"
	// gitTimeout bounds each git command of DescribeMachine.
	gitTimeout = 10 * time.Second
	// VersusDir is the subdirectory of the side-by-side runs: one fan-out
	// scenario run alternately against the node built from an earlier
	// commit (BENCH_BASE), "base-R.json", and against this commit's,
	// "new-R.json", R the round (1, 2, ...).
	VersusDir = "versus"
	// VersusBaseFile, in VersusDir, names the base: its short hash and
	// subject on the first line.
	VersusBaseFile = "base.txt"
)

// Run kinds: the name of a bench run without its size, in document order.
const (
	KindFanout    = "fanout"
	KindMeeting   = "meeting"
	KindChurn     = "churn"
	KindDirectB   = "direct-b"
	KindCrossNode = "cross-node"
)

// profiledSuffix ends the names of runs taken with the CPU profiler on.
const profiledSuffix = "-profiled"

// sizeSuffix is the "-200" of "fanout-200".
var sizeSuffix = regexp.MustCompile(`-[0-9]+$`)

// BenchRun is one load run of a bench directory.
type BenchRun struct {
	// Name is the JSON file's name without ".json" ("fanout-200").
	Name string
	// Kind is Name without "-profiled" and its size ("fanout", "direct-b").
	Kind string
	// Profiled is true for a run whose name ends in "-profiled": the CPU
	// profiler ran in its window, so its costs are not the node's alone.
	Profiled bool
	Report   *Report
}

// size is N (subscribers) or, for meeting, P (participants).
func (b BenchRun) size() int {
	if b.Report.Scenario == ScenarioMeeting {
		return b.Report.Params.Participants
	}
	return b.Report.Params.Subscribers
}

// ProfileText is one `go tool pprof -top` output.
type ProfileText struct {
	// File is its file name ("fanout-200-top.txt").
	File string
	// Cum is true for the -cum (cumulative) order.
	Cum  bool
	Text string
}

// BenchData is what a bench directory holds. Missing files leave their
// fields empty (Has* false).
type BenchData struct {
	// Runs are the JSON reports in document order: fanout by N, meeting,
	// churn, direct-b, cross-node, other names, then the profiled runs.
	Runs []BenchRun
	// GoBench is GoBenchFile's text.
	GoBench    string
	HasGoBench bool
	// AllocTests is AllocTestsFile's text.
	AllocTests    string
	HasAllocTests bool
	// Commands are CommandsFile's non-empty lines.
	Commands    []string
	HasCommands bool
	// Profiles are the pprof outputs, flat before cumulative per profile.
	Profiles []ProfileText
	// Versus are the side-by-side runs (VersusDir) in run order: by
	// round, the base first.
	Versus []VersusRun
	// FastWrite are the fast write comparison's runs (FastWriteDir) in
	// run order; Base marks --fast-write off.
	FastWrite []VersusRun
	// Base is VersusBaseFile's first line ("" when it is missing).
	Base string
}

// VersusRun is one run of the side-by-side comparison.
type VersusRun struct {
	// Round counts from 1; each round runs the base, then this commit.
	Round int
	// Base is true for the node built from the base commit.
	Base   bool
	Report *Report
}

// Name is the name of the run's report without ".json" ("base-1").
func (r VersusRun) Name() string {
	who := "new"
	if r.Base {
		who = "base"
	}
	return fmt.Sprintf("%s-%d", who, r.Round)
}

// versusName matches the name of a side-by-side run's report.
var versusName = regexp.MustCompile(`^(base|new)-([0-9]+)$`)

// ReadBenchDir reads dir's *.json reports, GoBenchFile, CommandsFile and
// the fan-out profile outputs. Only an unreadable directory or a malformed
// report is an error; missing files are left out.
func ReadBenchDir(dir string) (*BenchData, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("load: bench directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("load: bench directory %s: not a directory", dir)
	}
	d := &BenchData{}
	jsons, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("load: bench directory %s: %w", dir, err)
	}
	for _, p := range jsons {
		run, err := readRun(p)
		if err != nil {
			return nil, err
		}
		d.Runs = append(d.Runs, run)
	}
	slices.SortFunc(d.Runs, compareRuns)

	if d.GoBench, d.HasGoBench, err = readOptional(filepath.Join(dir, GoBenchFile)); err != nil {
		return nil, err
	}
	if d.AllocTests, d.HasAllocTests, err = readOptional(filepath.Join(dir, AllocTestsFile)); err != nil {
		return nil, err
	}
	var commands string
	if commands, d.HasCommands, err = readOptional(filepath.Join(dir, CommandsFile)); err != nil {
		return nil, err
	}
	for line := range strings.Lines(commands) {
		if line = strings.TrimSpace(line); line != "" {
			d.Commands = append(d.Commands, line)
		}
	}
	if d.Profiles, err = readProfiles(dir); err != nil {
		return nil, err
	}
	if err := d.readVersus(filepath.Join(dir, VersusDir)); err != nil {
		return nil, err
	}
	if err := d.readFastWrite(filepath.Join(dir, FastWriteDir)); err != nil {
		return nil, err
	}
	return d, nil
}

// readVersus reads the side-by-side runs and the base's name from dir;
// reports with other names are left out.
func (d *BenchData) readVersus(dir string) error {
	base, _, err := readOptional(filepath.Join(dir, VersusBaseFile))
	if err != nil {
		return err
	}
	d.Base, _, _ = strings.Cut(strings.TrimSpace(base), "\n")
	d.Versus, err = readPairedRuns(dir, versusName, "base")
	return err
}

// readPairedRuns reads the runs of an alternating comparison from dir:
// reports named "SIDE-ROUND.json" as name matches them (side, round),
// Base set for side base, ordered by round with the base first; other
// names are left out.
func readPairedRuns(dir string, name *regexp.Regexp, base string) ([]VersusRun, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("load: bench directory %s: %w", dir, err)
	}
	var out []VersusRun
	for _, p := range paths {
		m := name.FindStringSubmatch(strings.TrimSuffix(filepath.Base(p), ".json"))
		if m == nil {
			continue
		}
		run, err := readRun(p)
		if err != nil {
			return nil, err
		}
		round, _ := strconv.Atoi(m[2])
		out = append(out, VersusRun{Round: round, Base: m[1] == base, Report: run.Report})
	}
	slices.SortFunc(out, func(a, b VersusRun) int {
		return cmp.Or(cmp.Compare(a.Round, b.Round), -cmpBool(a.Base, b.Base))
	})
	return out, nil
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// readRun reads one JSON report.
func readRun(path string) (BenchRun, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return BenchRun{}, fmt.Errorf("load: read report: %w", err)
	}
	rep := &Report{}
	if err := json.Unmarshal(data, rep); err != nil {
		return BenchRun{}, fmt.Errorf("load: report %s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".json")
	base, profiled := strings.CutSuffix(name, profiledSuffix)
	return BenchRun{Name: name, Kind: sizeSuffix.ReplaceAllString(base, ""), Profiled: profiled, Report: rep}, nil
}

// kindRank orders run kinds; broadcasts ("broadcast-abc") come after the
// known ones, unknown ones last.
func kindRank(kind string) int {
	kinds := []string{KindFanout, KindMeeting, KindChurn, KindDirectB, KindCrossNode}
	if i := slices.Index(kinds, kind); i >= 0 {
		return i
	}
	if kind == KindBroadcast || strings.HasPrefix(kind, KindBroadcast+"-") {
		return len(kinds)
	}
	return len(kinds) + 1
}

// compareRuns is the document order of runs.
func compareRuns(a, b BenchRun) int {
	rank := func(r BenchRun) int {
		if r.Profiled {
			return 1
		}
		return 0
	}
	return cmp.Or(
		cmp.Compare(rank(a), rank(b)),
		cmp.Compare(kindRank(a.Kind), kindRank(b.Kind)),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.size(), b.size()),
		cmp.Compare(a.Name, b.Name))
}

// readOptional returns a file's text; false when it does not exist.
func readOptional(path string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("load: %w", err)
	}
	return string(data), true, nil
}

// readProfiles reads the pprof outputs: per profile, flat then cumulative.
func readProfiles(dir string) ([]ProfileText, error) {
	var out []ProfileText
	for _, pattern := range []string{profileTopGlob, profileCumGlob} {
		paths, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return nil, fmt.Errorf("load: bench directory %s: %w", dir, err)
		}
		for _, p := range paths {
			text, _, err := readOptional(p)
			if err != nil {
				return nil, err
			}
			out = append(out, ProfileText{File: filepath.Base(p), Cum: pattern == profileCumGlob, Text: text})
		}
	}
	profile := func(p ProfileText) string {
		return strings.TrimSuffix(strings.TrimSuffix(p.File, "-top.txt"), "-cum.txt")
	}
	slices.SortFunc(out, func(a, b ProfileText) int {
		ca, cb := 0, 0
		if a.Cum {
			ca = 1
		}
		if b.Cum {
			cb = 1
		}
		return cmp.Or(cmp.Compare(profile(a), profile(b)), cmp.Compare(ca, cb))
	})
	return out, nil
}

// Machine describes where and from what a bench ran.
type Machine struct {
	// Date is when the document was generated.
	Date time.Time
	// Commit is the short commit hash, "-dirty" with uncommitted changes;
	// empty when git could not tell.
	Commit string
	// CPUModel is /proc/cpuinfo's first "model name" (empty if unknown).
	CPUModel string
	// CPUs is the number of online CPUs.
	CPUs int
	// Kernel is the kernel release (empty if unknown).
	Kernel string
	// GoVersion is the Go toolchain of this binary.
	GoVersion string
}

// DescribeMachine describes this machine and the git checkout of the
// working directory. What cannot be read is left empty.
func DescribeMachine(ctx context.Context) Machine {
	return Machine{
		Date:      time.Now().UTC(),
		Commit:    gitCommit(ctx),
		CPUModel:  cpuModel(),
		CPUs:      host.NumCPU(),
		Kernel:    readTrimmed("/proc/sys/kernel/osrelease"),
		GoVersion: runtime.Version(),
	}
}

// gitCommit returns `git rev-parse --short HEAD`, plus "-dirty" when `git
// status --porcelain` lists anything; "" when git fails or is missing.
func gitCommit(ctx context.Context) string {
	git := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, gitTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, "git", args...).Output()
		return strings.TrimSpace(string(out)), err
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil || head == "" {
		return ""
	}
	if status, err := git("status", "--porcelain"); err != nil || status != "" {
		head += "-dirty" // an unknown state is not claimed clean
	}
	return head
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range bytes.Lines(data) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// readTrimmed returns a file's trimmed text, "" on error.
func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
