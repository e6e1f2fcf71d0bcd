package cluster

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/time/rate"
)

// Log rate of node records ignored for an invalid URL: a burst, then one
// every ten seconds (a bad record is re-read on every directory change).
const (
	badURLLogRate  = rate.Limit(0.1)
	badURLLogBurst = 5
)

// CheckNodeURL reports why raw may not be used as a node's base URL, or
// nil. Such a URL is dialled for control requests and handed to browsers
// for failover, so it must be an absolute http or https URL with a host,
// without user info, query or fragment, and with no path beyond "/". When
// allow is not empty, the host must also be an IP literal inside one of
// its prefixes: host names are refused rather than resolved, because a
// name resolved now could resolve elsewhere when it is dialled (DNS
// rebinding), and resolving here would block the directory on DNS.
func CheckNodeURL(raw string, allow []netip.Prefix) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadNodeURL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: scheme must be http or https", ErrBadNodeURL)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%w: no host", ErrBadNodeURL)
	case u.User != nil:
		return fmt.Errorf("%w: user info is not allowed", ErrBadNodeURL)
	case u.RawQuery != "" || u.ForceQuery:
		return fmt.Errorf("%w: a query is not allowed", ErrBadNodeURL)
	case u.Fragment != "" || u.RawFragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%w: a fragment is not allowed", ErrBadNodeURL)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("%w: a path is not allowed", ErrBadNodeURL)
	}
	if len(allow) == 0 {
		return nil
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return fmt.Errorf("%w: host %q is not an IP address (required with a CIDR allowlist)", ErrBadNodeURL, u.Hostname())
	}
	ip = ip.Unmap()
	for _, p := range allow {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is outside the allowed networks", ErrBadNodeURL, ip)
}

// checkRecordURL is CheckNodeURL with the node's allowlist, logging (rate
// limited) the records it refuses.
func (n *Node) checkRecordURL(id, raw string) bool {
	err := CheckNodeURL(raw, n.cfg.AllowedCIDRs)
	if err == nil {
		return true
	}
	if n.badURLLog.Allow() {
		n.log.Warn("ignoring node record with an unusable URL", "peer", id, "url", raw, "err", err)
	}
	return false
}
