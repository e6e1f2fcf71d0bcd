package load

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/confab/confab/tools/host"
)

// Bounds of the run's bookkeeping.
const (
	// idleSample is how long the idle check samples /proc/stat.
	idleSample = time.Second
	// closeTimeout bounds closing every client at the end of a run.
	closeTimeout = 30 * time.Second
	// closeWorkers is how many clients are closed in parallel.
	closeWorkers = 16
	// maxReportErrors bounds the distinct errors a report lists.
	maxReportErrors = 20
	// mediaPoll is how often the run checks whether media arrived.
	mediaPoll = 50 * time.Millisecond
)

// Run executes the scenario of cfg and returns its report. It validates cfg,
// loads the clip, finds the node processes (for CPU and RSS), checks that
// the machine is idle, pins CPUs, runs the scenario, and closes every client
// (leave, peer connections closed, goroutines waited) before returning, also
// on errors and when ctx is cancelled (Ctrl-C) or cfg.Timeout passes. The
// report is returned even with an error, filled as far as the run got
// (nil only when cfg or the clip are invalid).
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Room == "" {
		cfg.Room = randomRoom()
	}
	media, err := LoadMedia(cfg.Clip)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	r := &runner{cfg: cfg, media: media, log: log, rep: newReport(cfg, media)}
	err = r.run(ctx)
	switch {
	case err == nil || ctx.Err() == nil:
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("load: run exceeded --timeout %v: %w", cfg.Timeout, err)
	case errors.Is(err, context.Canceled):
		err = fmt.Errorf("load: run interrupted: %w", err)
	}
	if err != nil {
		r.addError(err.Error())
	}
	return r.rep, err
}

func newReport(cfg Config, m *Media) *Report {
	p := Params{
		URL:       cfg.URL,
		URLB:      cfg.URLB,
		URLPeers:  cfg.URLPeers,
		Room:      cfg.Room,
		Clip:      cfg.Clip,
		ClipKbps:  m.Bitrate() / 1000,
		DurationS: cfg.Duration.Seconds(),
		WarmupS:   cfg.Warmup.Seconds(),
		JoinRate:  cfg.JoinRate,
	}
	switch cfg.Scenario {
	case ScenarioMeeting:
		p.Participants = cfg.Participants
	case ScenarioChurn:
		p.Subscribers = cfg.Subscribers
		p.ChurnRate, p.ChurnLifetimeS = cfg.ChurnRate, cfg.ChurnLifetime.Seconds()
	default:
		p.Subscribers = cfg.Subscribers
	}
	return &Report{Scenario: cfg.Scenario, Params: p, Idle: IdleCheck{Max: cfg.IdleMax}, Errors: []string{}}
}

// randomRoom returns a fresh room name.
func randomRoom() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := []byte("load-")
	for range 8 {
		b = append(b, letters[rand.IntN(len(letters))])
	}
	return string(b)
}

// runner is the state of one Run.
type runner struct {
	cfg   Config
	media *Media
	log   *slog.Logger
	env   *Env
	rep   *Report

	servers []*server

	mu       sync.Mutex // guards the report's error list
	errIndex map[string]bool
}

// server is one measured node.
type server struct {
	name, url string
	pid       int
	err       error // why it is not measured
	cpuStart  time.Duration
	cpuEnd    time.Duration
	rssBefore int64
	rssJoined int64
	rssEnd    int64
	// metricsURL is the node's /metrics ("": not scraped); metStart and
	// metEnd are its scrapes at both ends of the window, metErr why they
	// failed.
	metricsURL       string
	metStart, metEnd *scrapeResult
	metErr           error
}

// addError records a problem in the report (distinct messages, capped).
func (r *runner) addError(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.ErrorCount++
	if r.errIndex == nil {
		r.errIndex = make(map[string]bool)
	}
	if r.errIndex[msg] || len(r.rep.Errors) >= maxReportErrors {
		return
	}
	r.errIndex[msg] = true
	r.rep.Errors = append(r.rep.Errors, msg)
}

func (r *runner) run(ctx context.Context) error {
	r.findServers()
	if err := r.checkIdle(ctx); err != nil {
		return err
	}
	r.pin()
	env, err := NewEnv(r.loopbackOnly(), r.log)
	if err != nil {
		return err
	}
	r.env = env
	for _, s := range r.servers {
		s.rssBefore = s.rss()
	}
	switch r.cfg.Scenario {
	case ScenarioFanout:
		return r.fanout(ctx)
	case ScenarioMeeting:
		return r.meeting(ctx)
	case ScenarioCrossNode:
		return r.crossNode(ctx)
	case ScenarioChurn:
		return r.churn(ctx)
	case ScenarioBroadcast:
		return r.broadcast(ctx)
	}
	return fmt.Errorf("load: unknown scenario %q", r.cfg.Scenario)
}

// findServers resolves the pids of the nodes to measure.
func (r *runner) findServers() {
	r.servers = []*server{r.server("A", r.cfg.URL, r.cfg.ServerPID)}
	if r.cfg.Scenario == ScenarioCrossNode {
		r.servers = append(r.servers, r.server("B", r.cfg.URLB, r.cfg.ServerPIDB))
	}
	for i, u := range r.cfg.URLPeers {
		pid := 0
		if i < len(r.cfg.ServerPIDPeers) {
			pid = r.cfg.ServerPIDPeers[i]
		}
		r.servers = append(r.servers, r.server(nodeName(i+1), u, pid))
	}
	for i, u := range r.cfg.MetricsURLs {
		if i < len(r.servers) {
			r.servers[i].metricsURL = u
		}
	}
}

// nodeName names the i-th node of a run: A, B, C, ...
func nodeName(i int) string {
	return string(rune('A' + i))
}

func (r *runner) server(name, rawURL string, pid int) *server {
	s := &server{name: name, url: rawURL, pid: pid}
	switch {
	case pid < 0:
		s.err = errors.New("disabled (negative --server-pid)")
	case pid == 0:
		port, err := urlPort(rawURL)
		if err == nil {
			s.pid, err = host.PIDByPort(port)
		}
		if err != nil {
			s.err = fmt.Errorf("no local process found for %s: %w", rawURL, err)
			r.log.Warn("node CPU and memory not measured", "node", name, "err", s.err)
		}
	}
	return s
}

// urlPort returns the TCP port of a node URL.
func urlPort(raw string) (int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return 0, err
	}
	if p := u.Port(); p != "" {
		return strconv.Atoi(p)
	}
	if u.Scheme == "https" {
		return 443, nil
	}
	return 80, nil
}

// loopbackOnly reports whether every node URL names a loopback host.
func (r *runner) loopbackOnly() bool {
	for _, raw := range append([]string{r.cfg.URL, r.cfg.URLB}, r.cfg.URLPeers...) {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return false
		}
		h := u.Hostname()
		if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return false
		}
	}
	return true
}

// checkIdle fails when the machine is busier than cfg.IdleMax.
func (r *runner) checkIdle(ctx context.Context) error {
	if r.cfg.IdleMax <= 0 {
		return nil
	}
	total, maxCPU, err := host.Busy(ctx, idleSample)
	if err != nil {
		return fmt.Errorf("load: idle check: %w", err)
	}
	r.rep.Idle = IdleCheck{Checked: true, Max: r.cfg.IdleMax, Total: total, MaxCPU: maxCPU}
	if total > r.cfg.IdleMax {
		return fmt.Errorf("load: the machine is busy before the start: %.0f%% of all CPUs over %v (limit --idle-max %.2f); stop other work or pass --idle-max 0",
			100*total, idleSample, r.cfg.IdleMax)
	}
	return nil
}

// pin pins the nodes and this process to their CPU lists when possible.
// Failures are reported, not fatal.
func (r *runner) pin() {
	if len(r.cfg.PinServer) == 0 && len(r.cfg.PinLoad) == 0 {
		r.rep.PinNote = "no CPU lists given"
		return
	}
	if n := host.NumCPU(); n < 2 {
		r.rep.PinNote = fmt.Sprintf("only %d CPU", n)
		return
	}
	var errs []error
	if len(r.cfg.PinServer) > 0 {
		for _, s := range r.servers {
			if s.err != nil {
				errs = append(errs, fmt.Errorf("node %s: pid unknown", s.name))
				continue
			}
			if err := host.Pin(s.pid, r.cfg.PinServer); err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", s.name, err))
			}
		}
	}
	if len(r.cfg.PinLoad) > 0 {
		if err := host.Pin(os.Getpid(), r.cfg.PinLoad); err != nil {
			errs = append(errs, fmt.Errorf("load generator: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.rep.PinNote = "failed: " + err.Error()
		r.addError("pinning: " + err.Error())
		return
	}
	r.rep.Pinned = true
	r.rep.PinServerCPUs = r.cfg.PinServer
	r.rep.PinNote = fmt.Sprintf("nodes on CPUs %v, generator on %v", r.cfg.PinServer, r.cfg.PinLoad)
}

// rss reads the node's RSS (0 when not measured or on error).
func (s *server) rss() int64 {
	if s.err != nil {
		return 0
	}
	v, err := host.RSS(s.pid)
	if err != nil {
		s.err = fmt.Errorf("read RSS of pid %d: %w", s.pid, err)
		return 0
	}
	return v
}

// cpu reads the node's CPU time (0 when not measured or on error).
func (s *server) cpu() time.Duration {
	if s.err != nil {
		return 0
	}
	v, err := host.CPU(s.pid)
	if err != nil {
		s.err = fmt.Errorf("read CPU of pid %d: %w", s.pid, err)
		return 0
	}
	return v
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pacer spaces joins at cfg.JoinRate: wait returns when the i-th join may
// start (counted from the pacer's creation).
type pacer struct {
	start time.Time
	every time.Duration
}

func newPacer(rate float64) pacer {
	return pacer{start: time.Now(), every: time.Duration(float64(time.Second) / rate)}
}

func (p pacer) wait(ctx context.Context, i int) error {
	return sleep(ctx, time.Until(p.start.Add(time.Duration(i)*p.every)))
}

// join joins one client, recording failures.
func (r *runner) join(ctx context.Context, url, name string) *Client {
	c, err := Join(ctx, r.env, ClientConfig{URL: url, Room: r.cfg.Room, Name: name})
	if err != nil {
		if ctx.Err() == nil {
			r.addError(err.Error())
		}
		return nil
	}
	return c
}

// joinMany joins n clients named prefix-0001... on url at the join rate.
// With publish each one publishes right after joining. It stops early when
// ctx ends; failed joins are recorded and skipped.
func (r *runner) joinMany(ctx context.Context, url, prefix string, n int, publish bool) []*Client {
	p := newPacer(r.cfg.JoinRate)
	clients := make([]*Client, 0, n)
	for i := range n {
		if p.wait(ctx, i) != nil {
			break
		}
		c := r.join(ctx, url, fmt.Sprintf("%s-%04d", prefix, i+1))
		if c == nil {
			continue
		}
		clients = append(clients, c)
		if publish {
			if err := c.Publish(ctx, r.media); err != nil && ctx.Err() == nil {
				r.addError(err.Error())
			}
		}
	}
	return clients
}

// waitMedia waits until every client received media, cfg.MediaTimeout
// passes or ctx ends; clients still without media are reported.
func (r *runner) waitMedia(ctx context.Context, clients []*Client) error {
	deadline := time.Now().Add(r.cfg.MediaTimeout)
	tick := time.NewTicker(mediaPoll)
	defer tick.Stop()
	for {
		missing := 0
		for _, c := range clients {
			if c.Received() == 0 {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			r.addError(fmt.Sprintf("%d of %d receivers got no media within %v", missing, len(clients), r.cfg.MediaTimeout))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// measure runs the warm-up and the window: RSS after the joins, CPU (of the
// nodes and of this process) at both ends of the window, RSS at its end.
func (r *runner) measure(ctx context.Context) error {
	if err := sleep(ctx, r.cfg.Warmup); err != nil {
		return err
	}
	// /metrics is scraped outside the CPU readings, so that serving it is
	// not counted in the window.
	for _, s := range r.servers {
		s.rssJoined = s.rss()
		s.metStart = r.scrape(ctx, s)
		s.cpuStart = s.cpu()
	}
	self, selfErr := host.CPU(os.Getpid())
	r.env.Window.Start(r.env.Clock.Now())
	prof := r.startProfile(ctx)
	err := sleep(ctx, r.cfg.Duration)
	r.env.Window.Stop(r.env.Clock.Now())
	for _, s := range r.servers {
		s.cpuEnd = s.cpu()
	}
	for _, s := range r.servers {
		s.metEnd = r.scrape(ctx, s)
		s.rssEnd = s.rss()
	}
	if selfEnd, endErr := host.CPU(os.Getpid()); selfErr == nil && endErr == nil {
		r.rep.LoadCPUSeconds = (selfEnd - self).Seconds()
	}
	// The profile ends with the window (give or take the node's answer).
	switch perr := prof.wait(); {
	case prof == nil:
	case perr == nil:
		r.rep.Profile = r.cfg.ProfileOut
	case ctx.Err() == nil: // else the run's own error says why
		r.addError(perr.Error())
	}
	return err
}

// closeAll closes clients in parallel (closeWorkers at a time), bounded by
// closeTimeout overall: a client whose Close has not returned by then is
// reported (its goroutines are bounded by the leave timeout and pion's
// close, so this only guards the report against a wedged peer connection).
//
// Clients that only receive leave first, publishers after them: a publisher
// leaving makes the node renegotiate every other subscriber PC, which is
// pointless (and logged by the node as failed offers) while those are
// closing too.
func (r *runner) closeAll(clients []*Client) {
	var receivers, publishers []*Client
	for _, c := range clients {
		switch {
		case c == nil:
		case c.publishAt.Load() != 0:
			publishers = append(publishers, c)
		default:
			receivers = append(receivers, c)
		}
	}
	r.closeParallel(receivers)
	r.closeParallel(publishers)
}

// closeParallel closes clients, closeWorkers at a time.
func (r *runner) closeParallel(clients []*Client) {
	if len(clients) == 0 {
		return
	}
	work := make(chan *Client)
	var wg sync.WaitGroup
	for range min(closeWorkers, len(clients)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if err := c.Close(); err != nil {
					r.addError(err.Error())
				}
			}
		}()
	}
	for _, c := range clients {
		work <- c
	}
	close(work)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		r.addError(fmt.Sprintf("closing %d clients took more than %v", len(clients), closeTimeout))
		<-done
	}
}
