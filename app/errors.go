package app

import (
	"errors"
	"fmt"

	"github.com/confab/confab/sfu"
)

// Reasons used in flag validation errors. They are wrapped by flagError, so
// callers can match them with errors.Is.
var (
	errPortRange = errors.New("must be a port number between 0 and 65535")
	errHostPort  = errors.New("must be host:port with a numeric port")
	errNotIP     = errors.New("must be an IP address")
	errLogLevel  = errors.New("must be one of debug, info, warn, error")
	errNodeID    = errors.New("must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")
	errPositive  = errors.New("must be a positive integer")
	// errNonNegative: a count where 0 means unlimited.
	errNonNegative = errors.New("must be a non-negative integer (0 = unlimited)")
	errOnOff       = errors.New("must be on or off")
	errOrigin      = errors.New("must be a non-empty host without spaces")
	errURL         = errors.New("must be an absolute http:// or https:// URL")
	errDuration    = errors.New("must be a positive duration such as 30s or 2m")
	errAuth        = errors.New("must be open or token")
	// errFanoutWorkers: --fanout-workers out of range.
	errFanoutWorkers = fmt.Errorf("must be between 1 and %d", sfu.MaxFanoutWorkers)

	// Consul token and TLS flags (consul.go).
	errConsulScheme = errors.New("must be host:port, http://host:port or https://host:port")
	errNeedsConsul  = errors.New("is only used with --consul")
	errNeedsHTTPS   = errors.New("needs an https:// --consul address")
	errTwoTokens    = errors.New("both give a Consul token: set only one")
	errEmptyFile    = errors.New("the file is empty")
	errToken        = errors.New("the token must be printable ASCII without spaces")
	errCertKeyPair  = errors.New("flags --consul-cert-file and --consul-key-file must be given together")
	errCIDR         = errors.New("must be a network in CIDR notation, e.g. 10.0.0.0/8 or fd00::/8")
	errSecretTwice  = errors.New("the cluster secret is also set in $CONFAB_CLUSTER_SECRET; set only one")
	errSecretEmpty  = errors.New("the secret file is empty")
	errLoopback     = errors.New("must be a loopback address (127.0.0.1, [::1] or localhost): profiles and the process's memory are not for the network")
)

// flagError is the one-line error for a bad flag value, e.g.
// `invalid value "abc" for flag --udp-port: must be a port number ...`.
func flagError(name, value string, reason error) error {
	return fmt.Errorf("invalid value %q for flag --%s: %w", value, name, reason)
}
