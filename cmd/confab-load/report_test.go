package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/confab/confab/tools/load"
)

// TestFreeport checks that freeport prints a loopback port one can listen on.
func TestFreeport(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run(context.Background(), []string{"freeport"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	port, err := strconv.Atoi(strings.TrimSpace(stdout.String()))
	if err != nil || port < 1 || port > 65535 {
		t.Fatalf("output %q: not a port (%v)", stdout.String(), err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen on the printed port: %v", err)
	}
	ln.Close()

	stdout.Reset()
	if code := run(context.Background(), []string{"freeport", "x"}, &stdout, &stderr); code != 2 || stdout.Len() != 0 {
		t.Errorf("freeport x: exit %d, output %q; want 2 and nothing", code, stdout.String())
	}
}

// TestReportCommand writes the sample bench directory of tools/load into a
// document with hand-written text around the markers.
func TestReportCommand(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "performance.md")
	head, tail := "# Performance\n\nHand-written.\n\n", "\n## Notes\n\nKept.\n"
	if err := os.WriteFile(doc, []byte(head+load.DocBegin+"\nold\n"+load.DocEnd+"\n"+tail), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"report", "--dir", "../../tools/load/testdata/bench", "--doc", doc, "--elapsed", "5m3s"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(got)
	if !strings.HasPrefix(text, head+load.DocBegin+"\n## Measured run\n") || !strings.HasSuffix(text, load.DocEnd+"\n"+tail) {
		t.Errorf("document:\n%s", text)
	}
	for _, want := range []string{"- Bench wall time: 5m3s", "| fanout-200 |", "### Goals", "fanout-200-cum.txt", "### Broadcast across nodes", "| broadcast-abc-300 | C |"} {
		if !strings.Contains(text, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	if strings.Contains(text, "\nold\n") {
		t.Error("the old generated part is still there")
	}
	if !strings.Contains(stdout.String(), "9 load reports") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestReportCommandErrors(t *testing.T) {
	doc := filepath.Join(t.TempDir(), "p.md")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dir", []string{"report", "--doc", doc}, 2, "--dir and --doc are required"},
		{"no doc", []string{"report", "--dir", "."}, 2, "--dir and --doc are required"},
		{"argument", []string{"report", "--dir", ".", "--doc", doc, "x"}, 2, "no arguments"},
		{"bad elapsed", []string{"report", "--dir", ".", "--doc", doc, "--elapsed", "soon"}, 2, "elapsed"},
		{"missing dir", []string{"report", "--dir", "/nonexistent/bench", "--doc", doc}, 1, "/nonexistent/bench"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d; stderr %q lacks %q?", code, tt.code, stderr.String(), tt.want)
			}
		})
	}
	if _, err := os.Stat(doc); err == nil {
		t.Error("a failed report wrote the document")
	}
}

func TestParseRunProfile(t *testing.T) {
	var out strings.Builder
	o, err := parseRun([]string{"--clip", "c", "--pprof-url", "http://127.0.0.1:6060", "--pprof-out", "f.pprof"}, &out)
	if err != nil || o.cfg.ProfileURL != "http://127.0.0.1:6060" || o.cfg.ProfileOut != "f.pprof" {
		t.Errorf("parsed %+v, %v", o.cfg, err)
	}
	if _, err := parseRun([]string{"--clip", "c", "--pprof-url", "http://127.0.0.1:6060"}, &out); err == nil {
		t.Error("--pprof-url without --pprof-out accepted")
	}
}
