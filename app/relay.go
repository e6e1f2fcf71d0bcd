package app

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/confab/confab/relay"
	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

// randomTURNSecretLen is the length of the TURN key picked when none is
// configured.
const randomTURNSecretLen = 32

// startRelay starts the embedded TURN server when cfg.TURNPort is set and
// returns it with the web.Deps.ICEServers function handing its credentials
// to browsers; (nil, nil, nil) when TURN is off.
func startRelay(cfg Config, engine *sfu.Engine, log *slog.Logger) (*relay.Server, func(string) []web.ICEServer, error) {
	if cfg.TURNPort == 0 {
		return nil, nil, nil
	}
	secret, err := turnSecret(cfg)
	if err != nil {
		return nil, nil, err
	}
	if secret == nil {
		secret = make([]byte, randomTURNSecretLen)
		_, _ = rand.Read(secret) // never fails (crypto/rand)
		log.Info("no TURN secret configured: credentials are valid on this node, until it restarts")
	}
	var certs []tls.Certificate
	if cfg.TURNCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TURNCertFile, cfg.TURNKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("app: --turn-cert-file/--turn-key-file: %w", err)
		}
		certs = []tls.Certificate{cert}
	}
	srv, err := relay.New(relay.Config{
		ListenIP:        cfg.UDPIP,
		Port:            cfg.TURNPort,
		TLSCertificates: certs,
		TLSPort:         cfg.TURNTLSPort,
		RelayIP:         turnRelayIP(cfg),
		Secret:          secret,
		TTL:             cfg.TURNTTL,
		Peers:           mediaAddrs(cfg, engine.UDPAddr().(*net.UDPAddr).Port),
		Logger:          log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("app: start TURN server on --turn-port %d: %w", cfg.TURNPort, err)
	}
	servers := func(participantID string) []web.ICEServer {
		c := srv.Credential(participantID, time.Now())
		return []web.ICEServer{{URLs: srv.URLs(), Username: c.Username, Credential: c.Password}}
	}
	return srv, servers, nil
}

// turnSecret reads the TURN key from cfg.TURNSecret ($CONFAB_TURN_SECRET)
// or cfg.TURNSecretFile (trailing white space removed); nil when neither
// is set.
func turnSecret(cfg Config) ([]byte, error) {
	secret := cfg.TURNSecret
	if cfg.TURNSecretFile != "" {
		b, err := os.ReadFile(cfg.TURNSecretFile)
		if err != nil {
			return nil, fmt.Errorf("app: --turn-secret-file: %w", err)
		}
		secret = strings.TrimRight(string(b), " \t\r\n")
		if len(secret) < MinSecretLen {
			return nil, fmt.Errorf("app: --turn-secret-file %s: the secret must be at least %d bytes", cfg.TURNSecretFile, MinSecretLen)
		}
	}
	if secret == "" {
		return nil, nil
	}
	return []byte(secret), nil
}

// turnRelayIP is --turn-relay-ip, else the first --public-ip, else
// --udp-ip when it is a specific address, else 127.0.0.1.
func turnRelayIP(cfg Config) string {
	switch {
	case cfg.TURNRelayIP != "":
		return cfg.TURNRelayIP
	case len(cfg.PublicIPs) > 0:
		return cfg.PublicIPs[0]
	case !net.ParseIP(cfg.UDPIP).IsUnspecified():
		return cfg.UDPIP
	}
	return "127.0.0.1"
}

// mediaAddrs are the addresses of the engine's ICE UDP socket that its
// candidates announce, the only ones the TURN server relays to: --udp-ip
// (every local address, loopback included, when it is unspecified, as at
// the engine's start) and the --public-ip addresses, at port.
func mediaAddrs(cfg Config, port int) []netip.AddrPort {
	var ips []netip.Addr
	udpIP := netip.MustParseAddr(cfg.UDPIP).Unmap()
	if udpIP.IsUnspecified() {
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() == udpIP.Is4() {
					ips = append(ips, ip.Unmap())
				}
			}
		}
	} else {
		ips = append(ips, udpIP)
	}
	for _, s := range cfg.PublicIPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	out := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.AddrPortFrom(ip, uint16(port)))
	}
	return out
}
