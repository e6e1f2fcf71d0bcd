package web

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Admission control of the signaling WebSocket.
//
// Every signaling connection holds a slot from before the upgrade until its
// session ends: at most Config.MaxConns in all and Config.MaxConnsPerIP per
// client address (the TCP peer's address: behind a reverse proxy, the
// proxy's). A request over a cap is refused before the upgrade (503 for
// the node-wide cap, 429 for the per-address one) with a plain-text body
// saying which, and the refusals are logged at most once per
// admissionLogInterval with their count. A connection that has not joined
// within Config.JoinTimeout is closed with 1008 "join timeout", so idle
// sockets cannot hold the slots for long.

// admissionLogInterval is the least time between two log lines about
// refused connections.
const admissionLogInterval = 10 * time.Second

// reasonJoinTimeout is the close reason of a connection that did not join
// within Config.JoinTimeout.
const reasonJoinTimeout = "join timeout"

// Bodies of the refusals (plain text).
const (
	refuseNodeBusy = "too many connections to this node; try again later"
	refuseIPBusy   = "too many connections from your address; close some tabs or try again later"
)

// admission counts open signaling connections. Safe for concurrent use.
type admission struct {
	maxConns, maxPerIP int
	log                *slog.Logger
	logLimit           *rate.Limiter // refusal log lines

	mu      sync.Mutex // guards the fields below
	total   int
	perIP   map[netip.Addr]int
	refused int // refusals since the last log line
	stats   AdmissionStats
}

// AdmissionStats counts what the admission control of the signaling
// WebSocket did since the server started (Server.AdmissionStats).
type AdmissionStats struct {
	// Open is the number of signaling connections holding a slot now.
	Open int
	// RefusedNode counts requests refused because the node-wide cap
	// (Config.MaxConns) was reached (503).
	RefusedNode uint64
	// RefusedAddr counts requests refused because their client address
	// held Config.MaxConnsPerIP connections (429).
	RefusedAddr uint64
	// JoinTimeouts counts connections closed because they did not join
	// within Config.JoinTimeout.
	JoinTimeouts uint64
}

func newAdmission(cfg *Config) *admission {
	return &admission{
		maxConns: cfg.MaxConns,
		maxPerIP: cfg.MaxConnsPerIP,
		log:      cfg.Logger,
		logLimit: rate.NewLimiter(rate.Every(admissionLogInterval), 1),
		perIP:    map[netip.Addr]int{},
	}
}

// clientAddr is the address a connection is counted under: the TCP peer
// of r (RemoteAddr), mapped IPv4 addresses unmapped, IPv6 addresses
// reduced to their /64 (one subscriber's network: a host picks any
// address in it). ok is false when RemoteAddr does not parse (never with
// net/http's server).
func clientAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a, true
}

// admit takes a slot for a connection from addr. On success release must
// be called exactly once when the connection ends; otherwise status and
// body are the refusal to send.
func (a *admission) admit(addr netip.Addr) (release func(), status int, body string) {
	a.mu.Lock()
	switch {
	case a.total >= a.maxConns:
		status, body = http.StatusServiceUnavailable, refuseNodeBusy
		a.stats.RefusedNode++
	case a.perIP[addr] >= a.maxPerIP:
		status, body = http.StatusTooManyRequests, refuseIPBusy
		a.stats.RefusedAddr++
	default:
		a.total++
		a.perIP[addr]++
		a.mu.Unlock()
		var once sync.Once
		return func() { once.Do(func() { a.release(addr) }) }, 0, ""
	}
	a.refused++
	refused, total, fromAddr := a.refused, a.total, a.perIP[addr]
	logNow := a.logLimit.Allow()
	if logNow {
		a.refused = 0
	}
	a.mu.Unlock()
	if logNow {
		a.log.Warn("signaling: connections refused (admission caps)", "refused", refused,
			"last_addr", addr.String(), "last_status", status, "open", total, "open_from_addr", fromAddr,
			"max_conns", a.maxConns, "max_conns_per_ip", a.maxPerIP)
	}
	return nil, status, body
}

func (a *admission) release(addr netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if n := a.perIP[addr] - 1; n > 0 {
		a.perIP[addr] = n
	} else {
		delete(a.perIP, addr)
	}
}

// open returns the number of admitted connections (tests).
func (a *admission) open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// joinTimedOut counts a connection closed for not joining in time.
func (a *admission) joinTimedOut() {
	a.mu.Lock()
	a.stats.JoinTimeouts++
	a.mu.Unlock()
}

// snapshot returns the counters and the open connections.
func (a *admission) snapshot() AdmissionStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stats
	st.Open = a.total
	return st
}

// AdmissionStats returns what the admission control of the signaling
// WebSocket did so far (exported as metrics by app; docs/metrics.md).
func (s *Server) AdmissionStats() AdmissionStats { return s.admission.snapshot() }

// joined reports whether the session's "joined" was queued.
func (s *session) joined() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live
}

// admit takes an admission slot for the signaling request of c, or writes
// the refusal (503 or 429, plain text, Retry-After) and returns false.
func (s *Server) admit(c echo.Context) (release func(), ok bool) {
	addr, ok := clientAddr(c.Request())
	if !ok {
		_ = c.String(http.StatusBadRequest, "bad client address")
		return nil, false
	}
	release, status, body := s.admission.admit(addr)
	if release == nil {
		c.Response().Header().Set("Retry-After", "10")
		_ = c.String(status, body)
		return nil, false
	}
	return release, true
}

// startJoinDeadline closes s with 1008 "join timeout" unless it has
// joined within d. The returned stop cancels the deadline and waits for a
// check already under way (no goroutine exists until the timer fires).
func (s *session) startJoinDeadline(d time.Duration) (stop func()) {
	done := make(chan struct{})
	stopTimer := s.srv.cfg.joinTimer(d, func() {
		defer close(done)
		if !s.joined() && !s.isClosing() {
			s.logger().Debug("signaling: no join in time, closing", "join_timeout", d)
			s.srv.admission.joinTimedOut()
			s.requestClose(websocket.StatusPolicyViolation, reasonJoinTimeout, false)
		}
	})
	return func() {
		if !stopTimer() {
			<-done
		}
	}
}
