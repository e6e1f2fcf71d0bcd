// Package relay is confab's embedded TURN server (RFC 8656, pion/turn): it
// lets browsers on networks that block UDP, or even TCP to the media port,
// reach the node's media socket through a relayed address. It listens on
// UDP and TCP at one port, optionally on TLS, and accepts only short-lived
// per-participant credentials derived from a secret (the TURN REST API
// scheme, see Credential). Relayed packets may only go to the node's own
// media addresses (Config.Peers): the server is no open relay. See
// docs/security.md, Reach.
package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/turn/v5"
)

// Server is a running TURN server. Create it with New, stop it with Close.
// Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	limit *limiter
	turn  *turn.Server
	udp   net.PacketConn
	tcp   net.Listener
	tls   net.Listener // nil without TLS
	// peers is Config.Peers as a set, and peerIPs their addresses.
	peers   map[netip.AddrPort]bool
	peerIPs map[netip.Addr]bool

	mu     sync.Mutex
	closed bool
}

// New validates cfg (after applying defaults to a copy), opens the
// listeners and starts serving. The caller must call Close.
func New(cfg Config) (*Server, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "relay"),
		limit:   &limiter{},
		peers:   make(map[netip.AddrPort]bool, len(cfg.Peers)),
		peerIPs: make(map[netip.Addr]bool, len(cfg.Peers)),
	}
	for _, p := range cfg.Peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		s.peers[p] = true
		s.peerIPs[p.Addr()] = true
	}
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	gen := &relayGenerator{ip: net.ParseIP(cfg.ListenIP), relayIP: net.ParseIP(cfg.RelayIP), srv: s}
	listeners := []turn.ListenerConfig{{Listener: s.tcp, RelayAddressGenerator: gen, PermissionHandler: s.permit}}
	if s.tls != nil {
		listeners = append(listeners, turn.ListenerConfig{Listener: s.tls, RelayAddressGenerator: gen, PermissionHandler: s.permit})
	}
	ts, err := turn.NewServer(turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   s.authenticate,
		LoggerFactory: pionLoggerFactory{log: s.log, limit: s.limit},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: s.udp, RelayAddressGenerator: gen, PermissionHandler: s.permit,
		}},
		ListenerConfigs: listeners,
	})
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("relay: start TURN server: %w", err)
	}
	s.turn = ts
	s.log.Info("relay started", "udp", s.udp.LocalAddr().String(), "tcp", s.tcp.Addr().String(),
		"tls", s.TLSAddr(), "relay_ip", cfg.RelayIP, "peers", len(s.peers))
	return s, nil
}

// listen opens the UDP socket, the TCP listener at its port number and the
// TLS listener.
func (s *Server) listen() error {
	ip := net.ParseIP(s.cfg.ListenIP)
	network := "4"
	if ip.To4() == nil {
		network = "6"
	}
	udp, err := net.ListenUDP("udp"+network, &net.UDPAddr{IP: ip, Port: s.cfg.Port})
	if err != nil {
		return fmt.Errorf("relay: listen udp: %w", err)
	}
	s.udp = udp
	port := udp.LocalAddr().(*net.UDPAddr).Port
	tcp, err := net.ListenTCP("tcp"+network, &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return fmt.Errorf("relay: listen tcp: %w", err)
	}
	s.tcp = tcp
	if len(s.cfg.TLSCertificates) > 0 {
		ln, err := net.ListenTCP("tcp"+network, &net.TCPAddr{IP: ip, Port: s.cfg.TLSPort})
		if err != nil {
			return fmt.Errorf("relay: listen tls: %w", err)
		}
		s.tls = tls.NewListener(ln, &tls.Config{Certificates: s.cfg.TLSCertificates, MinVersion: tls.VersionTLS12})
	}
	return nil
}

func (s *Server) closeListeners() {
	if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.tls != nil {
		_ = s.tls.Close()
	}
}

// Close stops the TURN server: its listeners, allocations and goroutines
// (pion/turn's Server.Close waits for them). Idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.turn.Close()
	s.log.Info("relay closed")
	if err != nil {
		return fmt.Errorf("relay: close: %w", err)
	}
	return nil
}

// UDPAddr is the address of the UDP listener.
func (s *Server) UDPAddr() net.Addr { return s.udp.LocalAddr() }

// TCPAddr is the address of the TCP listener.
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// TLSAddr is the address of the TLS listener, "" without TLS.
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Addr().String()
}

// TTL is how long a credential is valid (Config.TTL).
func (s *Server) TTL() time.Duration { return s.cfg.TTL }

// Credential issues the credential of participantID, valid for Config.TTL
// from now.
func (s *Server) Credential(participantID string, now time.Time) Credential {
	return NewCredential(s.cfg.Secret, participantID, now.Add(s.cfg.TTL))
}

// URLs are the TURN URLs browsers use ("iceServers" urls): UDP, TCP and,
// with TLS, turns: over TCP, all on Config.Host.
func (s *Server) URLs() []string {
	port := strconv.Itoa(s.udp.LocalAddr().(*net.UDPAddr).Port)
	host := net.JoinHostPort(s.cfg.Host, port)
	urls := []string{"turn:" + host + "?transport=udp", "turn:" + host + "?transport=tcp"}
	if s.tls != nil {
		_, tlsPort, _ := net.SplitHostPort(s.tls.Addr().String())
		urls = append(urls, "turns:"+net.JoinHostPort(s.cfg.Host, tlsPort)+"?transport=tcp")
	}
	return urls
}

// authenticate is the TURN server's auth handler: the username must be an
// unexpired "<expiry>:<participant id>"; the key returned is derived from
// the HMAC of the username, so a request passes pion's MESSAGE-INTEGRITY
// check only if it was signed with the password issued for exactly that
// username.
func (s *Server) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	id, err := checkUsername(ra.Username, time.Now())
	if err != nil {
		s.limit.warn(s.log, "relay: credential refused", "err", err, "from", ra.SrcAddr)
		return "", nil, false
	}
	return id, authKey(s.cfg.Secret, ra.Username, ra.Realm), true
}

// permit is the TURN permission handler (CreatePermission, ChannelBind):
// only this node's media IPs.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok && s.peerIPs[ip.Unmap()] {
		return true
	}
	s.limit.warn(s.log, "relay: permission refused", "err", errPeerDenied, "peer", peer, "client", client)
	return false
}

// allowed reports whether a relayed datagram may be sent to addr (one of
// Config.Peers, port included).
func (s *Server) allowed(addr net.Addr) bool {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return false
	}
	ap := ua.AddrPort()
	return s.peers[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
}

// relayGenerator allocates relayed UDP sockets on Config.ListenIP,
// announced at Config.RelayIP, that send only to Config.Peers. TCP
// allocations (RFC 6062) are refused: browsers relay UDP only.
type relayGenerator struct {
	ip, relayIP net.IP
	srv         *Server
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error { return nil }

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGenerator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	network := conf.Network
	if network != "udp4" && network != "udp6" {
		network = "udp4"
	}
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: g.ip})
	if err != nil {
		return nil, nil, err
	}
	addr := &net.UDPAddr{IP: g.relayIP, Port: conn.LocalAddr().(*net.UDPAddr).Port}
	return &peerConn{UDPConn: conn, srv: g.srv}, addr, nil
}

// AllocateListener implements turn.RelayAddressGenerator (refused).
func (g *relayGenerator) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocateConn implements turn.RelayAddressGenerator (refused).
func (g *relayGenerator) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// peerConn is a relayed socket that drops datagrams to anything but
// Config.Peers (the permission handler checks only the IP; this checks the
// port too, so other services on the node's IPs are out of reach).
type peerConn struct {
	*net.UDPConn
	srv *Server
}

// WriteTo implements net.PacketConn.
func (c *peerConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.srv.allowed(addr) {
		c.srv.limit.warn(c.srv.log, "relay: datagram to a forbidden peer dropped", "err", errPeerDenied, "peer", addr)
		return len(p), nil
	}
	return c.UDPConn.WriteTo(p, addr)
}
