package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// scrapeTimeout bounds one /metrics request.
const scrapeTimeout = 5 * time.Second

// maxMetricsBytes bounds a /metrics answer.
const maxMetricsBytes = 8 << 20

// The node metrics (docs/metrics.md) a broadcast reads.
const (
	metricPacketsSent     = "confab_rtp_packets_sent_total"
	metricPacketsReceived = "confab_rtp_packets_received_total"
	metricProducers       = "confab_producers"
	metricLinkPipes       = "confab_link_pipes"
	metricLinkBytesSent   = "confab_link_bytes_sent_total"
	metricLinks           = "confab_links"
)

// sample is one series of a Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricSet is one scrape of a node's /metrics; nil when not scraped.
type metricSet []sample

// sum adds the values of the series of name whose labels include every
// pair of match (nil: all series of name); false when there is none.
func (m metricSet) sum(name string, match map[string]string) (float64, bool) {
	var v float64
	found := false
	for _, s := range m {
		if s.name != name || !labelsMatch(s.labels, match) {
			continue
		}
		v += s.value
		found = true
	}
	return v, found
}

func labelsMatch(labels, match map[string]string) bool {
	for k, want := range match {
		if labels[k] != want {
			return false
		}
	}
	return true
}

// parseMetrics parses the Prometheus text format: comments and blank lines
// are skipped, every other line is `name{k="v",...} value [timestamp]`.
func parseMetrics(r io.Reader) (metricSet, error) {
	var out metricSet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %w", n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// parseSample parses one series line.
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return s, fmt.Errorf("no value in %q", line)
	} else {
		s.name, rest = line[:i], line[i:]
	}
	if strings.HasPrefix(rest, "{") {
		end := strings.LastIndex(rest, "}")
		if end < 0 {
			return s, fmt.Errorf("unterminated labels in %q", line)
		}
		if err := parseLabels(rest[1:end], s.labels); err != nil {
			return s, fmt.Errorf("%w in %q", err, line)
		}
		rest = rest[end+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value in %q", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("bad value in %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// parseLabels parses `k="v",k2="v2"` (values may hold escaped quotes,
// backslashes and newlines) into into.
func parseLabels(text string, into map[string]string) error {
	for text = strings.TrimSpace(text); text != ""; {
		k, rest, ok := strings.Cut(text, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			return fmt.Errorf("bad label %q", text)
		}
		var v strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i >= len(rest) {
			return fmt.Errorf("unterminated label value %q", text)
		}
		into[strings.TrimSpace(k)] = v.String()
		text = strings.TrimPrefix(strings.TrimSpace(rest[i+1:]), ",")
		text = strings.TrimSpace(text)
	}
	return nil
}

// scrapeResult is one scrape of a node's /metrics and when it was taken:
// the middle of the request (the node reads its counters while answering).
type scrapeResult struct {
	at  time.Time
	set metricSet
}

// scrape reads s's /metrics; nil when it has none or on error (the error
// is kept in s.metErr and reported once).
func (r *runner) scrape(ctx context.Context, s *server) *scrapeResult {
	if s.metricsURL == "" || s.metErr != nil {
		return nil
	}
	start := time.Now()
	m, err := fetchMetrics(ctx, s.metricsURL)
	if err != nil {
		s.metErr = err
		r.addError(fmt.Sprintf("node %s: %v", s.name, err))
		return nil
	}
	return &scrapeResult{at: start.Add(time.Since(start) / 2), set: m}
}

// fetchMetrics GETs and parses a /metrics URL.
func fetchMetrics(ctx context.Context, url string) (metricSet, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	m, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return m, nil
}
