package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/tools/load"
)

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"none", nil, true},
		{"0", []int{0}, true},
		{"1", []int{1}, true},
		{"0-2", []int{0, 1, 2}, true},
		{"0,2, 4-5", []int{0, 2, 4, 5}, true},
		{"x", nil, false},
		{"-1", nil, false},
		{"3-1", nil, false},
		{"1-", nil, false},
	}
	for _, tt := range tests {
		got, err := parseCPUList(tt.in)
		if (err == nil) != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseRun(t *testing.T) {
	var out strings.Builder
	o, err := parseRun([]string{"--clip", "c", "--scenario", "meeting", "--participants", "5",
		"--pin-server", "none", "--pin-load", "1", "--duration", "7s", "--json", "r.json"}, &out)
	if err != nil {
		t.Fatalf("parseRun: %v", err)
	}
	c := o.cfg
	if c.Scenario != load.ScenarioMeeting || c.Participants != 5 || c.Clip != "c" || c.Duration != 7*time.Second ||
		c.PinServer != nil || !slices.Equal(c.PinLoad, []int{1}) || o.json != "r.json" || c.URL != load.DefaultURL ||
		c.IdleMax != load.DefaultIdleMax || c.Timeout <= c.Duration {
		t.Errorf("parsed %+v", o)
	}

	b, err := parseRun([]string{"--clip", "c", "--scenario", "broadcast", "--subscribers", "300",
		"--url", "http://127.0.0.1:1", "--url-peer", "http://127.0.0.1:2", "--url-peer", "http://127.0.0.1:3",
		"--server-pid", "10", "--server-pid-peer", "20", "--server-pid-peer", "30",
		"--metrics-url", "http://127.0.0.1:4/metrics", "--metrics-url", "http://127.0.0.1:5/metrics",
		"--metrics-url", "http://127.0.0.1:6/metrics"}, &out)
	if err != nil {
		t.Fatalf("parseRun broadcast: %v", err)
	}
	if bc := b.cfg; bc.Scenario != load.ScenarioBroadcast || bc.Subscribers != 300 || bc.ServerPID != 10 ||
		!slices.Equal(bc.URLPeers, []string{"http://127.0.0.1:2", "http://127.0.0.1:3"}) ||
		!slices.Equal(bc.ServerPIDPeers, []int{20, 30}) || len(bc.MetricsURLs) != 3 ||
		bc.MetricsURLs[2] != "http://127.0.0.1:6/metrics" {
		t.Errorf("parsed broadcast %+v", bc)
	}

	defaults, err := parseRun([]string{"--clip", "c"}, &out)
	if err != nil {
		t.Fatalf("parseRun: %v", err)
	}
	if !slices.Equal(defaults.cfg.PinServer, []int{0}) || !slices.Equal(defaults.cfg.PinLoad, []int{1}) {
		t.Errorf("default pinning %v %v, want [0] [1]", defaults.cfg.PinServer, defaults.cfg.PinLoad)
	}

	for _, args := range [][]string{
		{},                                 // no --clip
		{"--clip", "c", "--scenario", "x"}, // bad scenario
		{"--clip", "c", "--pin-load", "a"}, // bad CPU list
		{"--clip", "c", "--log-level", "loud"},
		{"--clip", "c", "extra"},
		{"--clip", "c", "--scenario", "cross-node"}, // no --url-b
		{"--clip", "c", "--scenario", "broadcast", "--url-peer", "http://127.0.0.1:2", "--server-pid-peer", "x"},
		{"--clip", "c", "--scenario", "broadcast", "--url-peer", "http://127.0.0.1:2", "--metrics-url", "http://127.0.0.1:4/metrics"},
		{"--clip", "c", "--url-peer", "http://127.0.0.1:2"}, // fanout has no peers
		{"--nope"},
	} {
		if _, err := parseRun(args, &out); err == nil {
			t.Errorf("parseRun(%q) succeeded", args)
		}
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"no command", nil, 2, "Usage"},
		{"help", []string{"--help"}, 0, "confab-load run"},
		{"unknown command", []string{"bench"}, 2, `unknown command "bench"`},
		{"run without clip", []string{"run"}, 2, "--clip is required"},
		{"run help", []string{"run", "-h"}, 0, "-subscribers"},
		{"clip without out", []string{"clip"}, 2, "--out is required"},
		{"clip bad flag", []string{"clip", "--colour"}, 2, "colour"},
		{"run with missing clip", []string{"run", "--clip", "/nonexistent", "--idle-max", "0"}, 1, "/nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), tt.args, &stdout, &stderr)
			all := stdout.String() + stderr.String()
			if code != tt.code || !strings.Contains(all, tt.want) {
				t.Errorf("exit %d, want %d; output does not contain %q?\n%s", code, tt.code, tt.want, all)
			}
		})
	}
}

// TestWriteOutputs checks the JSON file and that the markdown file gets its
// header once and a row per run.
func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	o := runOptions{json: filepath.Join(dir, "r.json"), markdown: filepath.Join(dir, "r.md")}
	rep := &load.Report{Scenario: load.ScenarioFanout, DurationS: 1, Errors: []string{}}
	var stdout strings.Builder
	for range 2 {
		if err := writeOutputs(rep, o, &stdout); err != nil {
			t.Fatalf("writeOutputs: %v", err)
		}
	}
	js, err := os.ReadFile(o.json)
	if err != nil || !strings.Contains(string(js), `"scenario": "fanout"`) {
		t.Errorf("json %s, %v", js, err)
	}
	md, err := os.ReadFile(o.markdown)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(md), "| scenario |"); n != 1 {
		t.Errorf("markdown has %d headers:\n%s", n, md)
	}
	if n := strings.Count(string(md), "| fanout |"); n != 2 {
		t.Errorf("markdown has %d rows:\n%s", n, md)
	}
}

// TestClipCommand generates a tiny clip with vpxenc and opusenc (installed
// by the Makefile, like the rest of the toolchain) and loads it back.
func TestClipCommand(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"clip", "--out", dir, "--width", "64", "--height", "64",
		"--seconds", "1", "--video-kbps", "100", "--keyframe-interval", "10"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	m, err := load.LoadMedia(dir)
	if err != nil {
		t.Fatalf("LoadMedia: %v", err)
	}
	if m.Bitrate() <= 0 {
		t.Errorf("bitrate %v", m.Bitrate())
	}
}
