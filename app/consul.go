package app

import (
	"fmt"
	"os"
	"strings"

	"github.com/confab/confab/cluster"
)

// EnvConsulToken is the environment variable holding the Consul ACL token
// itself. There is no flag for the token: a command-line argument is
// visible to every user of the host in the process list.
const EnvConsulToken = EnvPrefix + "CONSUL_TOKEN"

// consulAddr splits a --consul value into host:port and whether it selects
// TLS: "host:port" and "http://host:port" are plain HTTP,
// "https://host:port" is HTTPS.
func consulAddr(v string) (hostPort string, useTLS bool, err error) {
	hostPort = v
	if scheme, rest, ok := strings.Cut(v, "://"); ok {
		switch scheme {
		case "http":
		case "https":
			useTLS = true
		default:
			return "", false, errConsulScheme
		}
		hostPort = rest
	}
	if _, _, err := splitHostPort(hostPort); err != nil {
		return "", false, err
	}
	return hostPort, useTLS, nil
}

// validateConsul checks --consul and the Consul token and TLS flags,
// reading their files (consulAuth), so that a missing or malformed file is
// reported at start as a one-line error naming its flag.
func (c *Config) validateConsul() error {
	if c.ConsulAddr == "" {
		for _, f := range []struct{ flag, value string }{
			{"consul-token-file", c.ConsulTokenFile},
			{"consul-ca-file", c.ConsulCAFile},
			{"consul-cert-file", c.ConsulCertFile},
			{"consul-key-file", c.ConsulKeyFile},
		} {
			if f.value != "" {
				return fmt.Errorf("flag --%s: %w", f.flag, errNeedsConsul)
			}
		}
		if c.ConsulToken != "" {
			return fmt.Errorf("$%s: %w", EnvConsulToken, errNeedsConsul)
		}
		return nil
	}
	if _, _, err := consulAddr(c.ConsulAddr); err != nil {
		return flagError("consul", c.ConsulAddr, err)
	}
	_, _, err := c.consulAuth()
	return err
}

// consulAuth reads the Consul ACL token (from --consul-token-file or
// $CONFAB_CONSUL_TOKEN) and the TLS files of c. Errors are one line and
// name the flag.
func (c *Config) consulAuth() (token string, material cluster.ConsulTLS, err error) {
	_, useTLS, err := consulAddr(c.ConsulAddr)
	if err != nil {
		return "", material, flagError("consul", c.ConsulAddr, err)
	}
	token = c.ConsulToken
	switch {
	case c.ConsulTokenFile != "" && c.ConsulToken != "":
		return "", material, fmt.Errorf("flag --consul-token-file and $%s: %w", EnvConsulToken, errTwoTokens)
	case c.ConsulTokenFile != "":
		b, err := readFile("consul-token-file", c.ConsulTokenFile)
		if err != nil {
			return "", material, err
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return "", material, flagError("consul-token-file", c.ConsulTokenFile, errEmptyFile)
		}
		if !validToken(token) {
			return "", material, flagError("consul-token-file", c.ConsulTokenFile, errToken)
		}
	case token != "" && !validToken(token):
		return "", material, fmt.Errorf("$%s: %w", EnvConsulToken, errToken)
	}

	files := []struct {
		flag, path string
		dst        *[]byte
	}{
		{"consul-ca-file", c.ConsulCAFile, &material.CA},
		{"consul-cert-file", c.ConsulCertFile, &material.Cert},
		{"consul-key-file", c.ConsulKeyFile, &material.Key},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if !useTLS {
			return "", material, fmt.Errorf("flag --%s: %w, not %q", f.flag, errNeedsHTTPS, c.ConsulAddr)
		}
		if *f.dst, err = readFile(f.flag, f.path); err != nil {
			return "", material, err
		}
		if len(*f.dst) == 0 {
			return "", material, flagError(f.flag, f.path, errEmptyFile)
		}
	}
	if (c.ConsulCertFile == "") != (c.ConsulKeyFile == "") {
		return "", material, errCertKeyPair
	}
	if err := (cluster.ConsulTLS{CA: material.CA}).Validate(); err != nil {
		return "", material, flagError("consul-ca-file", c.ConsulCAFile, err)
	}
	if err := (cluster.ConsulTLS{Cert: material.Cert, Key: material.Key}).Validate(); err != nil {
		return "", material, fmt.Errorf("flags --consul-cert-file %q and --consul-key-file %q: %w", c.ConsulCertFile, c.ConsulKeyFile, err)
	}
	return token, material, nil
}

// readFile reads the file named by flag; the error names both.
func readFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("flag --%s: %w", flag, err)
	}
	return b, nil
}

// validToken reports whether s can be sent as an HTTP header value:
// printable ASCII without spaces (Consul's tokens are UUIDs).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
