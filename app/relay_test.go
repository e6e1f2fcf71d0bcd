package app

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestTURNRelayIP: --turn-relay-ip, else the first --public-ip, else a
// specific --udp-ip, else 127.0.0.1.
func TestTURNRelayIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"flag", Config{TURNRelayIP: "192.0.2.7", PublicIPs: []string{"203.0.113.1"}, UDPIP: "10.0.0.1"}, "192.0.2.7"},
		{"public ip", Config{PublicIPs: []string{"203.0.113.1", "203.0.113.2"}, UDPIP: "10.0.0.1"}, "203.0.113.1"},
		{"udp ip", Config{UDPIP: "10.0.0.1"}, "10.0.0.1"},
		{"unspecified udp ip", Config{UDPIP: "0.0.0.0"}, "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := turnRelayIP(tc.cfg); got != tc.want {
				t.Errorf("turnRelayIP = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestMediaAddrs: the TURN server may relay to the media socket's
// addresses only: the specific --udp-ip, or every local address when it is
// unspecified (loopback included), plus the --public-ip addresses.
func TestMediaAddrs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		want     []string // must be present
		wantNot  []string // must be absent
		wantOnly bool     // want is the whole list
	}{
		{"specific", Config{UDPIP: "10.0.0.1", PublicIPs: []string{"203.0.113.1"}},
			[]string{"10.0.0.1:50000", "203.0.113.1:50000"}, nil, true},
		{"unspecified", Config{UDPIP: "0.0.0.0"},
			[]string{"127.0.0.1:50000"}, []string{"0.0.0.0:50000"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mediaAddrs(tc.cfg, 50000)
			for _, w := range tc.want {
				if !slices.Contains(got, netip.MustParseAddrPort(w)) {
					t.Errorf("mediaAddrs = %v, want %s among them", got, w)
				}
			}
			for _, w := range tc.wantNot {
				if slices.Contains(got, netip.MustParseAddrPort(w)) {
					t.Errorf("mediaAddrs = %v, want no %s", got, w)
				}
			}
			if tc.wantOnly && len(got) != len(tc.want) {
				t.Errorf("mediaAddrs = %v, want exactly %v", got, tc.want)
			}
		})
	}
}

// TestTURNSecret: the key comes from $CONFAB_TURN_SECRET or the file
// (trailing newline removed); a short file is refused; none gives nil.
func TestTURNSecret(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(good, []byte("0123456789abcdef-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    string
		wantErr bool
	}{
		{"env", Config{TURNSecret: "0123456789abcdef-env"}, "0123456789abcdef-env", false},
		{"file", Config{TURNSecretFile: good}, "0123456789abcdef-file", false},
		{"short file", Config{TURNSecretFile: short}, "", true},
		{"missing file", Config{TURNSecretFile: filepath.Join(dir, "nope")}, "", true},
		{"none", Config{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := turnSecret(tc.cfg)
			if (err != nil) != tc.wantErr || string(got) != tc.want {
				t.Errorf("turnSecret = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
