// Command confab-load is confab's load generator.
//
//	confab-load run --scenario fanout|meeting|cross-node|churn [flags]
//	confab-load clip --out dir [flags]
//
// run simulates participants (WebSocket signaling + pion peer connections
// sending and receiving a real VP8/Opus clip) against running confab nodes
// and prints a report: loss, one-way delay, join and propagation times,
// node CPU per forwarded packet and Mbit, memory per subscriber. clip
// generates that clip with vpxenc and opusenc. `confab-load <command> -h`
// lists the flags.
//
// On SIGINT or SIGTERM a run stops early: every simulated participant
// leaves, and the partial report is printed. A second signal exits at once.
// Exit status: 0 on success, 2 for invalid flags, 1 when the command fails.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/confab/confab/tools/clip"
	"github.com/confab/confab/tools/load"
)

func main() {
	os.Exit(realMain())
}

// realMain is main without os.Exit, so deferred calls run before exiting.
func realMain() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	// Owned by realMain, ends with it at the latest: the first signal stops
	// the run cleanly, a second one exits immediately.
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(os.Stderr, "confab-load: interrupted; leaving (a second signal exits at once)")
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			os.Exit(1)
		case <-done:
		}
	}()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// run dispatches a subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "clip":
		return clipCmd(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "confab-load: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  confab-load run --scenario fanout|meeting|cross-node|churn --clip dir [flags]
  confab-load clip --out dir [flags]

run:  simulate participants against confab nodes and report loss, delay,
      join/propagation times and node CPU and memory per forwarded packet.
clip: generate the VP8/Opus test clip (needs vpxenc and opusenc).

"confab-load run -h" and "confab-load clip -h" list the flags.
`)
}

// runOptions are the flags of run that are not part of load.Config.
type runOptions struct {
	cfg      load.Config
	json     string
	markdown string
	logLevel slog.Level
}

// parseRun parses the flags of run.
func parseRun(args []string, output io.Writer) (runOptions, error) {
	var o runOptions
	fs := flag.NewFlagSet("confab-load run", flag.ContinueOnError)
	fs.SetOutput(output)
	c := &o.cfg
	fs.StringVar(&c.Scenario, "scenario", load.ScenarioFanout, "scenario: "+strings.Join(load.Scenarios(), ", "))
	fs.StringVar(&c.URL, "url", load.DefaultURL, "base URL of node A (publishers; subscribers except cross-node)")
	fs.StringVar(&c.URLB, "url-b", "", "base URL of node B (cross-node subscribers)")
	fs.StringVar(&c.Room, "room", "", "room name (default: random)")
	fs.IntVar(&c.Subscribers, "subscribers", load.DefaultSubscribers, "subscribers N (fanout, cross-node, churn: steady ones)")
	fs.IntVar(&c.Participants, "participants", load.DefaultParticipants, "participants P (meeting)")
	fs.StringVar(&c.Clip, "clip", "", "clip directory with video.ivf and audio.ogg (required; see confab-load clip)")
	fs.DurationVar(&c.Duration, "duration", load.DefaultDuration, "measurement window")
	fs.DurationVar(&c.Warmup, "warmup", load.DefaultWarmup, "warm-up between the joins (media flowing) and the window")
	fs.Float64Var(&c.JoinRate, "join-rate", load.DefaultJoinRate, "joins per second")
	fs.Float64Var(&c.ChurnRate, "churn-rate", load.DefaultChurnRate, "churning subscribers joining per second (churn)")
	fs.DurationVar(&c.ChurnLifetime, "churn-lifetime", load.DefaultChurnLifetime, "how long each churning subscriber stays (churn)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "pid of node A for CPU/RSS (0: the process listening on --url's port; -1: do not measure)")
	fs.IntVar(&c.ServerPIDB, "server-pid-b", 0, "pid of node B (cross-node; like --server-pid)")
	pinServer := fs.String("pin-server", "0", `CPUs to pin the node(s) to, e.g. "0" or "0-1,3" ("" or "none": no pinning)`)
	pinLoad := fs.String("pin-load", "1", `CPUs to pin this process to ("" or "none": no pinning)`)
	fs.Float64Var(&c.IdleMax, "idle-max", load.DefaultIdleMax, "abort when the machine is busier than this fraction of all CPUs before the start (0: no check)")
	fs.DurationVar(&c.MediaTimeout, "media-timeout", load.DefaultMediaTimeout, "how long to wait for media at every receiver after the joins")
	fs.DurationVar(&c.Timeout, "timeout", 0, "hard cap for the whole run; leaving afterwards is bounded separately (0: joins + media timeout + warm-up + duration + 1m)")
	fs.StringVar(&o.json, "json", "", "write the report as JSON to this file (- for stdout)")
	fs.StringVar(&o.markdown, "markdown", "", "append the report as a markdown table row to this file (header when new; nothing when the run stopped before measuring)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.PinServer, err = parseCPUList(*pinServer); err != nil {
		return o, fmt.Errorf("--pin-server: %w", err)
	}
	if c.PinLoad, err = parseCPUList(*pinLoad); err != nil {
		return o, fmt.Errorf("--pin-load: %w", err)
	}
	if err := o.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return o, fmt.Errorf("--log-level: %w", err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

// parseCPUList parses "0", "0-3", "0,2,4-5"; "" and "none" are no CPUs.
func parseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad CPU %q in list %q", part, s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1023 {
				return nil, fmt.Errorf("bad CPU range %q in list %q", part, s)
			}
		}
		for cpu := a; cpu <= b; cpu++ {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseRun(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "confab-load run: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	rep, runErr := load.Run(ctx, o.cfg, log)
	if rep == nil {
		fmt.Fprintf(stderr, "confab-load run: %v\n", runErr)
		return 1
	}
	status := 0
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "confab-load run: %v\n", err)
		status = 1
	}
	if err := writeOutputs(rep, o, stdout); err != nil {
		fmt.Fprintf(stderr, "confab-load run: %v\n", err)
		status = 1
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "confab-load run: %v\n", runErr)
		status = 1
	}
	return status
}

// writeOutputs writes the JSON report and appends the markdown row.
func writeOutputs(rep *load.Report, o runOptions, stdout io.Writer) error {
	var errs []error
	switch o.json {
	case "":
	case "-":
		errs = append(errs, rep.WriteJSON(stdout))
	default:
		errs = append(errs, writeFile(o.json, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, func(f *os.File) error {
			return rep.WriteJSON(f)
		}))
	}
	if o.markdown != "" && rep.DurationS > 0 { // no row for a run that never measured
		errs = append(errs, writeFile(o.markdown, os.O_CREATE|os.O_APPEND|os.O_WRONLY, func(f *os.File) error {
			st, err := f.Stat()
			if err != nil {
				return err
			}
			text := rep.MarkdownRow()
			if st.Size() == 0 {
				text = load.MarkdownHeader() + text
			}
			_, err = io.WriteString(f, text)
			return err
		}))
	}
	return errors.Join(errs...)
}

// writeFile opens path with flag, lets write fill it and closes it.
func writeFile(path string, flag int, write func(*os.File) error) error {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// clipTimeout bounds clip generation (a 1080p clip of a minute encodes in
// well under that on two cores).
const clipTimeout = 10 * time.Minute

func clipCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("confab-load clip", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write video.ivf and audio.ogg to (required)")
	var o clip.Options
	fs.IntVar(&o.Width, "width", 0, "picture width in pixels (default 1280)")
	fs.IntVar(&o.Height, "height", 0, "picture height in pixels (default 720)")
	fs.IntVar(&o.FPS, "fps", 0, "frames per second (default 30)")
	fs.IntVar(&o.Seconds, "seconds", 0, "length in seconds (default 10)")
	fs.IntVar(&o.VideoKbps, "video-kbps", 0, "VP8 bit rate in kbit/s (default 2000)")
	fs.IntVar(&o.KeyframeInterval, "keyframe-interval", 0, "a keyframe every this many frames (default 60)")
	fs.IntVar(&o.AudioKbps, "audio-kbps", 0, "Opus bit rate in kbit/s (default 32)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *out == "" {
		fmt.Fprintln(stderr, "confab-load clip: --out is required and no arguments are taken")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, clipTimeout)
	defer cancel()
	if err := clip.Generate(ctx, *out, o); err != nil {
		fmt.Fprintf(stderr, "confab-load clip: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "clip written to %s\n", *out)
	return 0
}
