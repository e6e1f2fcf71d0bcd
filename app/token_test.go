package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confab/confab/web/access"
)

// writeKeys writes an API keys file with the given content and returns
// its path.
func writeKeys(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	keyOne = "key-one-secret-0123456789abcdef0123456789"
	keyTwo = "key-two-secret-0123456789abcdef0123456789"
)

// TestTokenCommand: `confab token` prints a token that the keys verify,
// with the asked claims, on its last line; mistakes give exit status 2
// and one line.
func TestTokenCommand(t *testing.T) {
	one := writeKeys(t, "k1 "+keyOne+"\n")
	two := writeKeys(t, "k1 "+keyOne+"\nk2 "+keyTwo+"\n")
	now := time.Now()
	tests := []struct {
		name   string
		args   []string
		status int
		errOut string
		check  func(t *testing.T, c access.Claims, lines []string)
	}{
		{
			name: "the issue's example", status: 0,
			args: []string{"--api-keys-file", two, "--key-id", "k2", "--room", "R", "--identity", "alice", "--name", "Alice", "--grant", "publish,subscribe", "--ttl", "1h"},
			check: func(t *testing.T, c access.Claims, _ []string) {
				if c.Room != "R" || c.Identity() != "alice" || c.Name != "Alice" || !c.Grants.Publish || !c.Grants.Subscribe || c.Grants.Chat || c.Grants.Admin {
					t.Errorf("claims = %+v", c)
				}
				if d := c.ExpiresAt.Sub(now); d < 59*time.Minute || d > 61*time.Minute {
					t.Errorf("expires in %v, want 1h", d)
				}
			},
		},
		{
			name: "the only key, default grants, a link", status: 0,
			args: []string{"--api-keys-file", one, "--room", "standup", "--identity", "bob", "--url", "http://localhost:8080/"},
			check: func(t *testing.T, c access.Claims, lines []string) {
				if !c.Grants.Publish || !c.Grants.Subscribe || !c.Grants.Chat || c.Grants.Hidden {
					t.Errorf("grants = %+v, want publish, subscribe, chat", c.Grants)
				}
				if len(lines) != 3 || !strings.HasPrefix(lines[1], "http://localhost:8080/rooms/standup?token=") {
					t.Errorf("output lines = %q, want a link before the token", lines)
				}
			},
		},
		{name: "two keys, none chosen", args: []string{"--api-keys-file", two, "--room", "R", "--identity", "a"}, status: 2, errOut: "choose one with --key-id"},
		{name: "unknown key", args: []string{"--api-keys-file", two, "--key-id", "k9", "--room", "R", "--identity", "a"}, status: 2, errOut: "unknown key id"},
		{name: "no room", args: []string{"--api-keys-file", one, "--identity", "a"}, status: 2, errOut: "--room is required"},
		{name: "no identity", args: []string{"--api-keys-file", one, "--room", "R"}, status: 2, errOut: "--identity is required"},
		{name: "no keys file", args: []string{"--room", "R", "--identity", "a"}, status: 2, errOut: "--api-keys-file is required"},
		{name: "missing keys file", args: []string{"--api-keys-file", one + ".nope", "--room", "R", "--identity", "a"}, status: 2, errOut: "no such file"},
		{name: "bad grant", args: []string{"--api-keys-file", one, "--room", "R", "--identity", "a", "--grant", "publish,root"}, status: 2, errOut: `unknown grant "root"`},
		{name: "bad ttl", args: []string{"--api-keys-file", one, "--room", "R", "--identity", "a", "--ttl", "-1h"}, status: 2, errOut: "--ttl must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			status := TokenCommand(tt.args, &out, &errOut, now)
			if status != tt.status {
				t.Fatalf("status = %d, want %d; stderr %q", status, tt.status, errOut.String())
			}
			if tt.status != 0 {
				if !strings.Contains(errOut.String(), tt.errOut) || strings.Count(strings.TrimSpace(errOut.String()), "\n") > 0 {
					t.Errorf("stderr = %q, want one line with %q", errOut.String(), tt.errOut)
				}
				return
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			keys, err := LoadAPIKeys(tt.args[1])
			if err != nil {
				t.Fatal(err)
			}
			room := ""
			for i, a := range tt.args {
				if a == "--room" {
					room = tt.args[i+1]
				}
			}
			c, err := access.Verify(keys, lines[len(lines)-1], room, now)
			if err != nil {
				t.Fatalf("the last line is no valid token: %v\n%s", err, out.String())
			}
			tt.check(t, c, lines)
		})
	}
}

// TestRunTokenAuth: a node started with --auth token refuses the room page
// and the cluster API without a token and serves them with one made by
// `confab token`.
func TestRunTokenAuth(t *testing.T) {
	keys := writeKeys(t, "k1 "+keyOne+"\n")
	cfg := DefaultConfig()
	cfg.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg.UDPIP = "127.0.0.1"
	cfg.UDPPort = 0
	cfg.NodeID = "token-node"
	cfg.LogLevel = "warn"
	cfg.Auth = AuthToken
	cfg.APIKeysFile = keys
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	base := "http://" + cfg.HTTPAddr
	client := &http.Client{Timeout: 5 * time.Second}
	waitHealthy(t, client, base+"/healthz", done)

	mint := func(args ...string) string {
		var out, errOut bytes.Buffer
		if TokenCommand(append([]string{"--api-keys-file", keys}, args...), &out, &errOut, time.Now()) != 0 {
			t.Fatalf("confab token: %s", errOut.String())
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return lines[len(lines)-1]
	}
	user := mint("--room", "standup", "--identity", "alice", "--name", "Alice")
	admin := mint("--room", "*", "--identity", "ops", "--grant", "admin")
	tests := []struct {
		path, bearer string
		status       int
		body         string
	}{
		{"/rooms/standup", "", http.StatusUnauthorized, "needs an access token"},
		{"/rooms/standup?token=" + user, "", http.StatusOK, `data-name="Alice"`},
		{"/rooms/other?token=" + user, "", http.StatusForbidden, "another room"},
		{"/api/cluster", "", http.StatusUnauthorized, ""},
		{"/api/cluster", user, http.StatusForbidden, ""}, // a room token is not for every room
		{"/api/cluster", admin, http.StatusOK, "token-node"},
		{"/healthz", "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodGet, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+tt.bearer)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.status || !strings.Contains(string(body), tt.body) {
			t.Errorf("GET %s (bearer %v) = %d, want %d with %q", tt.path, tt.bearer != "", res.StatusCode, tt.status, tt.body)
		}
		if tt.path == "/api/cluster" && res.StatusCode != http.StatusOK && strings.Contains(string(body), "standup") {
			t.Errorf("a refused /api/cluster names a room: %s", body)
		}
	}
	client.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
