package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"
)

// Config defaults.
const (
	// DefaultListenIP is the IP the TURN listeners bind to by default.
	DefaultListenIP = "0.0.0.0"
	// DefaultTTL is how long a credential from Server.Credential is valid.
	DefaultTTL = time.Hour
	// DefaultRealm is the TURN realm (part of the long-term credential key).
	DefaultRealm = "confab"
	// MinSecretLen is the shortest accepted Config.Secret.
	MinSecretLen = 16
)

// Config configures a Server. New applies SetDefaults and Validate to its
// own copy.
type Config struct {
	// ListenIP is the IP the UDP, TCP and TLS listeners and the relayed
	// sockets bind to. Default DefaultListenIP.
	ListenIP string
	// Port is the port of the UDP and the TCP listener (the same number);
	// 0 picks an ephemeral UDP port and listens on TCP at its number.
	Port int
	// TLSCertificates enable TURN over TLS ("turns:") on TLSPort (0 =
	// ephemeral). Empty: no TLS listener.
	TLSCertificates []tls.Certificate
	// TLSPort is the port of the TLS listener (used only with
	// TLSCertificates).
	TLSPort int
	// RelayIP is the address of relayed sockets announced to clients (the
	// relay candidates' address). Required.
	RelayIP string
	// Host is the host put into the URLs of ICEServer (what browsers
	// dial). Default RelayIP.
	Host string
	// Secret is the key of the credentials' HMAC (TURN REST API scheme).
	// At least MinSecretLen bytes. Required.
	Secret []byte
	// TTL is how long a credential is valid after it is issued. Default
	// DefaultTTL.
	TTL time.Duration
	// Realm is the TURN realm. Default DefaultRealm.
	Realm string
	// Peers are the only addresses relayed packets may be sent to: this
	// node's media addresses (its ICE UDP socket). Permissions for other
	// IPs are refused, and datagrams to other ports of an allowed IP are
	// dropped, so the server is no open relay. Required.
	Peers []netip.AddrPort
	// Logger is the base logger. Default slog.Default().
	Logger *slog.Logger
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.ListenIP == "" {
		c.ListenIP = DefaultListenIP
	}
	if c.Host == "" {
		c.Host = c.RelayIP
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Realm == "" {
		c.Realm = DefaultRealm
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first invalid field; call SetDefaults first.
func (c *Config) Validate() error {
	if net.ParseIP(c.ListenIP) == nil {
		return fmt.Errorf("%w: ListenIP %q is not an IP address", ErrConfig, c.ListenIP)
	}
	if net.ParseIP(c.RelayIP) == nil {
		return fmt.Errorf("%w: RelayIP %q is not an IP address", ErrConfig, c.RelayIP)
	}
	if c.Port < 0 || c.Port > 65535 || c.TLSPort < 0 || c.TLSPort > 65535 {
		return fmt.Errorf("%w: ports must be 0 to 65535 (Port %d, TLSPort %d)", ErrConfig, c.Port, c.TLSPort)
	}
	if c.Host == "" {
		return fmt.Errorf("%w: Host is empty", ErrConfig)
	}
	if len(c.Secret) < MinSecretLen {
		return fmt.Errorf("%w: Secret must be at least %d bytes", ErrConfig, MinSecretLen)
	}
	if c.TTL <= 0 {
		return fmt.Errorf("%w: TTL %v must be positive", ErrConfig, c.TTL)
	}
	if len(c.Peers) == 0 {
		return fmt.Errorf("%w: Peers is empty (the media addresses relayed packets may reach)", ErrConfig)
	}
	for _, p := range c.Peers {
		if !p.IsValid() || p.Port() == 0 {
			return fmt.Errorf("%w: Peers: %v is not an address with a port", ErrConfig, p)
		}
	}
	if c.Logger == nil {
		return fmt.Errorf("%w: Logger is nil", ErrConfig)
	}
	return nil
}
