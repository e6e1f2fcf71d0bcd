package load

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFastWriteComparison reads a fast write comparison directory (the
// sample side-by-side reports under the names off-R and on-R, and one
// other name that is left out) and checks the rounds' order and the
// rendered table; a bench without it renders nothing.
func TestFastWriteComparison(t *testing.T) {
	dir := t.TempDir()
	fw := filepath.Join(dir, FastWriteDir)
	if err := os.MkdirAll(fw, 0o755); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"base-1": "off-1", "new-1": "on-1", "base-2": "off-2", "new-2": "on-2", "other": "other"} {
		data, err := os.ReadFile(filepath.Join(benchDir, VersusDir, from+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fw, to+".json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := ReadBenchDir(dir)
	if err != nil {
		t.Fatalf("ReadBenchDir: %v", err)
	}
	var got []bool
	for _, r := range d.FastWrite {
		got = append(got, r.Base)
	}
	if want := []bool{true, false, true, false}; !slices.Equal(got, want) {
		t.Errorf("runs (off = true) %v, want %v", got, want)
	}
	var b strings.Builder
	writeFastWrite(&b, d)
	for _, want := range []string{"### Forwarding CPU, --fast-write off vs on", "| 1 | ", "| 2 | ", "| mean | 5.10 | 4.95 | **0.971** |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	writeFastWrite(&b, readTestBench(t))
	if b.Len() != 0 {
		t.Errorf("without runs: %q, want nothing", b.String())
	}
}
