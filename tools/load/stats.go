package load

import (
	"math/bits"
	"slices"
	"time"
)

// Histogram buckets: values (microseconds) below 64 have one bucket each;
// above, every power of two is split into histSub buckets, so a bucket is at
// most 1/32 (3 %) of its value wide. Values are capped at 2^31 µs (36 min).
const (
	histSubBits = 5
	histSub     = 1 << histSubBits // 32
	histMaxBits = 31
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

// Histogram is a log-linear histogram of durations with microsecond
// resolution and a bounded relative error of about 3 %. The zero value is
// empty and ready to use. Adding a sample does not allocate. Not safe for
// concurrent use: each track reader owns its own, merged after it stopped.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
}

func histIndex(us uint64) int {
	if us >= 1<<histMaxBits {
		us = 1<<histMaxBits - 1
	}
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - (histSubBits + 1)
	return (shift+1)*histSub + int(us>>shift) - histSub
}

// histValue returns the middle of bucket i, in microseconds.
func histValue(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return float64(m<<shift) + float64(uint64(1)<<shift)/2
}

// Add records d (negative durations count as 0).
func (h *Histogram) Add(d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < 0 {
		us = 0
	}
	h.counts[histIndex(uint64(us))]++
	h.n++
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// Quantile returns the q-quantile (0 < q <= 1) of the samples, or 0 when
// there are none: the middle of the bucket holding the ceil(q*n)-th sample.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(histValue(i) * float64(time.Microsecond))
		}
	}
	return time.Duration(histValue(histBuckets-1) * float64(time.Microsecond))
}

// quantile returns the q-quantile of a few exact samples (join and
// propagation times), nearest rank; 0 when empty. s is sorted in place.
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	slices.Sort(s)
	rank := int(q*float64(len(s)) + 0.999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// seqTracker counts loss on one received RTP stream from sequence-number
// gaps. It extends the 16-bit sequence numbers to 64 bits (handling wrap
// and reordering within half the number space), remembers the last 65536
// numbers in a bitmap to count each packet once, and reports
// expected = highest - first + 1 and received = unique packets seen.
// Packets older than the first one counted are ignored. Not safe for
// concurrent use (owned by one track reader); no allocation per packet.
type seqTracker struct {
	started  bool
	first    uint64 // extended sequence number of the first packet
	highest  uint64 // highest extended sequence number seen
	received uint64 // unique packets at or after first
	dups     uint64 // duplicates (e.g. retransmissions of packets that arrived)
	seen     [1 << 16 / 64]uint64
}

// seqBase keeps extended numbers away from 0 so that packets slightly older
// than the first one do not underflow.
const seqBase = 1 << 32

// add records seq and reports whether it was new (not a duplicate, not too
// old).
func (s *seqTracker) add(seq uint16) bool {
	if !s.started {
		s.started = true
		ext := seqBase + uint64(seq)
		s.first, s.highest = ext, ext
		s.mark(ext)
		s.received = 1
		return true
	}
	diff := int64(int16(seq - uint16(s.highest)))
	ext := uint64(int64(s.highest) + diff)
	switch {
	case ext > s.highest:
		// Forget what the bitmap held for the numbers now reused.
		for e, n := s.highest+1, 0; e < ext && n < 1<<16; e, n = e+1, n+1 {
			s.unmark(e)
		}
		s.highest = ext
	case ext < s.first || s.highest-ext >= 1<<15:
		return false // before the window or too old to tell
	case s.isMarked(ext):
		s.dups++
		return false
	}
	s.mark(ext)
	s.received++
	return true
}

func (s *seqTracker) mark(ext uint64)   { s.seen[(ext&0xffff)>>6] |= 1 << (ext & 63) }
func (s *seqTracker) unmark(ext uint64) { s.seen[(ext&0xffff)>>6] &^= 1 << (ext & 63) }
func (s *seqTracker) isMarked(ext uint64) bool {
	return s.seen[(ext&0xffff)>>6]&(1<<(ext&63)) != 0
}

// expected returns how many packets the sender sent between the first and
// the highest one seen.
func (s *seqTracker) expected() uint64 {
	if !s.started {
		return 0
	}
	return s.highest - s.first + 1
}

// lost returns expected - received (never negative).
func (s *seqTracker) lost() uint64 {
	e := s.expected()
	if s.received >= e {
		return 0
	}
	return e - s.received
}
