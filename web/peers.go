package web

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// This file holds what the Server knows about the other nodes of the
// cluster (Deps.Peers): the node list sent to clients, and the WebSocket
// Origin check, which must accept pages served by any node because a page
// loaded from node A opens its WebSocket to node B when it fails over.

// peers returns the live nodes (Deps.Peers, bounded by Config.PeersTimeout),
// this node included, never nil. Without Deps.Peers it is this node alone,
// with selfURL as its URL. Entries without an id or URL are dropped, and
// every peer's origin is remembered for checkOrigin.
func (s *Server) peers(ctx context.Context, selfURL string) []Peer {
	if s.deps.Peers == nil {
		return []Peer{{ID: s.nodeID, URL: selfURL}}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PeersTimeout)
	defer cancel()
	list := s.deps.Peers(ctx)
	out := make([]Peer, 0, len(list)+1)
	self := false
	for _, p := range list {
		if p.ID == "" || p.URL == "" {
			continue
		}
		self = self || p.ID == s.nodeID
		out = append(out, p)
	}
	if !self {
		out = append(out, Peer{ID: s.nodeID, URL: selfURL})
	}
	s.remember(out)
	return out
}

// remember records the origin key of every peer URL (bounded by
// maxKnownHosts), so that pages served by a node that has since died can
// still fail over to this one.
func (s *Server) remember(peers []Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range peers {
		if len(s.knownHosts) >= maxKnownHosts {
			return
		}
		if key, ok := originKey(p.URL); ok {
			s.knownHosts[key] = struct{}{}
		}
	}
}

// knownHost reports whether key is the origin key of a peer seen before.
func (s *Server) knownHost(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.knownHosts[key]
	return ok
}

// checkOrigin decides whether a browser page may open the signaling
// WebSocket. Allowed: no Origin header (not a browser), an Origin whose host
// is the request's Host, one matching Config.AllowedOrigins (path.Match,
// case-insensitive; against scheme://host when the pattern has "://", else
// against host[:port]), and the origin of any node of the cluster: live
// (Deps.Peers), known to the cluster though draining or departed
// (Deps.Members), or seen earlier in this process's lifetime. Nodes are
// compared by host and port (default ports filled in from the scheme).
func (s *Server) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: Origin %q is not a URL with a host", errForeignOrigin, truncate(origin, 64))
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, pattern := range s.cfg.AllowedOrigins {
		target := u.Host
		if strings.Contains(pattern, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(target)); ok {
			return nil
		}
	}
	if key, ok := originKey(origin); ok {
		if s.knownHost(key) {
			return nil
		}
		if s.deps.Peers != nil && containsOrigin(s.peers(r.Context(), ""), key) {
			return nil
		}
		if s.deps.Members != nil {
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PeersTimeout)
			members := s.deps.Members(ctx)
			cancel()
			s.remember(members)
			if containsOrigin(members, key) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: Origin %q is not allowed for host %q", errForeignOrigin, truncate(origin, 64), truncate(r.Host, 64))
}

// containsOrigin reports whether one of peers' URLs has the origin key key.
func containsOrigin(peers []Peer, key string) bool {
	for _, p := range peers {
		if k, ok := originKey(p.URL); ok && k == key {
			return true
		}
	}
	return false
}

// originKey normalises a URL (or an Origin) to lower-case host:port, the
// port defaulting from the scheme (80 for http/ws, 443 for https/wss).
func originKey(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", false
	}
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http", "ws":
			port = "80"
		case "https", "wss":
			port = "443"
		default:
			return "", false
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port), true
}

// wsSource returns the WebSocket origin (ws://host or wss://host) of a
// peer's base URL for the page's Content-Security-Policy, or "" when the URL
// is not plain http(s) with a safe host.
func wsSource(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !safeHost(u.Host) {
		return ""
	}
	switch strings.ToLower(u.Scheme) {
	case "http":
		return "ws://" + u.Host
	case "https":
		return "wss://" + u.Host
	}
	return ""
}

// requestURL is the base URL (scheme://host) a browser used to reach this
// node, as seen in r; "" when the Host header is unusable.
func requestURL(scheme, host string) string {
	if !safeHost(host) {
		return ""
	}
	if scheme != "https" {
		scheme = "http"
	}
	return scheme + "://" + host
}
