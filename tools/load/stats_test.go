package load

import (
	"math"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one sample", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond},
		{"small exact", []time.Duration{10 * time.Microsecond, 20 * time.Microsecond, 30 * time.Microsecond}, 0.5, 20 * time.Microsecond},
		{"p99 of 1..100 ms", series(100, time.Millisecond), 0.99, 99 * time.Millisecond},
		{"p50 of 1..100 ms", series(100, time.Millisecond), 0.50, 50 * time.Millisecond},
		{"p95 of 1..1000 µs", series(1000, time.Microsecond), 0.95, 950 * time.Microsecond},
		{"negative counts as zero", []time.Duration{-time.Second}, 0.5, 0},
		{"huge is capped", []time.Duration{time.Hour}, 0.5, 36 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, s := range tt.samples {
				h.Add(s)
			}
			got := h.Quantile(tt.q)
			if rel := math.Abs(float64(got-tt.want)) / math.Max(float64(tt.want), 1); rel > 0.04 && got != tt.want {
				t.Errorf("Quantile(%v) = %v, want %v (±4%%)", tt.q, got, tt.want)
			}
			if h.Count() != uint64(len(tt.samples)) {
				t.Errorf("Count = %d, want %d", h.Count(), len(tt.samples))
			}
		})
	}
}

func series(n int, unit time.Duration) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i+1) * unit
	}
	return s
}

// TestHistogramBuckets checks that bucket indexes are monotonic, in range,
// and that every bucket's value maps back to it.
func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<histMaxBits; us = us*9/8 + 1 {
		i := histIndex(us)
		if i < prev || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d after %d (buckets %d)", us, i, prev, histBuckets)
		}
		prev = i
		if v := histValue(i); math.Abs(v-float64(us)) > float64(us)/histSub+1 {
			t.Fatalf("bucket %d of %d µs has value %v", i, us, v)
		}
	}
	if got := histIndex(1<<histMaxBits - 1); got != histBuckets-1 {
		t.Errorf("last bucket = %d, want %d", got, histBuckets-1)
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b Histogram
	for _, d := range series(50, time.Millisecond) {
		a.Add(d)
		b.Add(d + 50*time.Millisecond)
	}
	a.Merge(&b)
	if a.Count() != 100 {
		t.Fatalf("Count = %d, want 100", a.Count())
	}
	if got := a.Quantile(0.5); got < 49*time.Millisecond || got > 51*time.Millisecond {
		t.Errorf("median = %v, want ~50ms", got)
	}
}

func TestQuantileSamples(t *testing.T) {
	s := []time.Duration{5, 1, 4, 2, 3}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 3}, {0.95, 5}, {0.2, 1}, {1, 5}} {
		if got := quantile(s, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile of nothing = %v", got)
	}
}

func TestSeqTracker(t *testing.T) {
	tests := []struct {
		name     string
		seqs     []uint16
		received uint64
		lost     uint64
		dups     uint64
	}{
		{"in order", []uint16{10, 11, 12, 13}, 4, 0, 0},
		{"gap", []uint16{10, 11, 14, 15}, 4, 2, 0},
		{"reordered", []uint16{10, 12, 11, 13}, 4, 0, 0},
		{"duplicate", []uint16{10, 11, 11, 12}, 3, 0, 1},
		{"wrap", []uint16{65534, 65535, 0, 1}, 4, 0, 0},
		{"wrap with loss", []uint16{65534, 1, 2}, 3, 2, 0},
		{"late wrap reorder", []uint16{65535, 1, 0}, 3, 0, 0},
		{"older than first ignored", []uint16{100, 101, 99}, 2, 0, 0},
		{"late packet far back", []uint16{0, 20000, 40000, 10000}, 4, 39997, 0},
		{"empty", nil, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seqTracker
			for _, q := range tt.seqs {
				s.add(q)
			}
			if s.received != tt.received || s.lost() != tt.lost || s.dups != tt.dups {
				t.Errorf("received %d lost %d dups %d, want %d %d %d", s.received, s.lost(), s.dups, tt.received, tt.lost, tt.dups)
			}
		})
	}
}

// TestSeqTrackerLongRun sends several wraps' worth of packets with every
// tenth one lost and one duplicate per wrap: the bitmap must be recycled
// correctly across wraps.
func TestSeqTrackerLongRun(t *testing.T) {
	var s seqTracker
	var sent, lost, dups uint64
	seq := uint16(60000)
	for i := range 300000 {
		seq++
		sent++
		if i%10 == 5 {
			lost++
			continue
		}
		s.add(seq)
		if i%65536 == 7 {
			s.add(seq)
			dups++
		}
	}
	if s.expected() != sent || s.lost() != lost || s.dups != dups || s.received != sent-lost {
		t.Errorf("expected %d lost %d dups %d received %d; want %d %d %d %d",
			s.expected(), s.lost(), s.dups, s.received, sent, lost, dups, sent-lost)
	}
}

func BenchmarkReceivePath(b *testing.B) {
	var s seqTracker
	var h Histogram
	var times SendTimes
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		seq := uint16(i)
		times.Store(seq, int64(i))
		if s.add(seq) {
			h.Add(time.Duration(int64(i) - times.Load(seq) + 1000))
		}
	}
}
