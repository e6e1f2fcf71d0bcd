package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/internal/consultest"
)

func validConfig() Config {
	return Config{
		NodeID:       "node-a",
		ConsulAddr:   "127.0.0.1:8500",
		AdvertiseURL: "http://127.0.0.1:8080",
		Secret:       strings.Repeat("s", MinSecretLen),
	}
}

func TestConfigValidate(t *testing.T) {
	testCA := consultest.NewCA(t, "test CA")
	testCert, testKey := testCA.Issue(t, "node")
	_, otherKey := testCA.Issue(t, "other")
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // "" = valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "node id with dots", mutate: func(c *Config) { c.NodeID = "node.example-1" }},
		{name: "https advertise with slash", mutate: func(c *Config) { c.AdvertiseURL = "https://a.example:8443/" }},
		{name: "empty node id", mutate: func(c *Config) { c.NodeID = "" }, wantErr: "node id"},
		{name: "node id with slash", mutate: func(c *Config) { c.NodeID = "a/b" }, wantErr: "node id"},
		{name: "node id too long", mutate: func(c *Config) { c.NodeID = strings.Repeat("a", 64) }, wantErr: "node id"},
		{name: "no consul", mutate: func(c *Config) { c.ConsulAddr = "" }, wantErr: "consul address"},
		{name: "relative advertise", mutate: func(c *Config) { c.AdvertiseURL = "127.0.0.1:8080" }, wantErr: "advertise url"},
		{name: "advertise with path", mutate: func(c *Config) { c.AdvertiseURL = "http://h:1/x" }, wantErr: "advertise url"},
		{name: "ftp advertise", mutate: func(c *Config) { c.AdvertiseURL = "ftp://h:1" }, wantErr: "advertise url"},
		{name: "short secret", mutate: func(c *Config) { c.Secret = "short" }, wantErr: "secret"},
		{name: "ttl too short", mutate: func(c *Config) { c.SessionTTL = time.Second }, wantErr: "session ttl"},
		{name: "ttl too long", mutate: func(c *Config) { c.SessionTTL = 48 * time.Hour }, wantErr: "session ttl"},
		{name: "watch wait too short", mutate: func(c *Config) { c.WatchWait = time.Millisecond }, wantErr: "watch wait"},
		{name: "negative timeout", mutate: func(c *Config) { c.ConsulTimeout = -1 }, wantErr: "consul timeout"},
		{name: "negative backoff", mutate: func(c *Config) { c.MaxBackoff = -1 }, wantErr: "max backoff"},
		{name: "https consul", mutate: func(c *Config) { c.ConsulAddr = "https://127.0.0.1:8501" }},
		{name: "token", mutate: func(c *Config) { c.ConsulToken = "6b1f39a4-3c1e-4f7e-9a55-0d2f0c1b7e21" }},
		{name: "https with CA", mutate: func(c *Config) {
			c.ConsulAddr = "https://127.0.0.1:8501"
			c.ConsulTLS.CA = testCA.CertPEM
		}},
		{name: "https with client certificate", mutate: func(c *Config) {
			c.ConsulAddr = "https://127.0.0.1:8501"
			c.ConsulTLS = ConsulTLS{CA: testCA.CertPEM, Cert: testCert, Key: testKey}
		}},
		{name: "token with newline", mutate: func(c *Config) { c.ConsulToken = "abc\n" }, wantErr: "consul token"},
		{name: "token with space", mutate: func(c *Config) { c.ConsulToken = "a b" }, wantErr: "consul token"},
		{name: "unknown consul scheme", mutate: func(c *Config) { c.ConsulAddr = "unix:///tmp/consul.sock" }, wantErr: "http:// or https://"},
		{name: "CA with plain http", mutate: func(c *Config) { c.ConsulTLS.CA = testCA.CertPEM }, wantErr: "needs an https:// consul address"},
		{name: "CA not PEM", mutate: func(c *Config) {
			c.ConsulAddr = "https://127.0.0.1:8501"
			c.ConsulTLS.CA = []byte("garbage")
		}, wantErr: "no PEM certificate"},
		{name: "cert without key", mutate: func(c *Config) {
			c.ConsulAddr = "https://127.0.0.1:8501"
			c.ConsulTLS.Cert = testCert
		}, wantErr: "given together"},
		{name: "key of another certificate", mutate: func(c *Config) {
			c.ConsulAddr = "https://127.0.0.1:8501"
			c.ConsulTLS = ConsulTLS{Cert: testCert, Key: otherKey}
		}, wantErr: "consul client certificate and key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			c.SetDefaults()
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigSetDefaults(t *testing.T) {
	c := validConfig()
	c.SetDefaults()
	if c.SessionTTL != DefaultSessionTTL || c.WatchWait != DefaultWatchWait ||
		c.ConsulTimeout != DefaultConsulTimeout || c.MaxBackoff != DefaultMaxBackoff || c.Logger == nil {
		t.Fatalf("SetDefaults left %+v", c)
	}
	c = validConfig()
	c.SessionTTL = 20 * time.Second
	c.SetDefaults()
	if c.SessionTTL != 20*time.Second {
		t.Fatalf("SetDefaults overwrote SessionTTL: %v", c.SessionTTL)
	}
}
