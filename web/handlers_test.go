package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
)

func TestLobby(t *testing.T) {
	env := newEnv(t, envOptions{})
	tests := []struct {
		name         string
		path         string
		wantStatus   int
		wantLocation string
		wantBody     []string
	}{
		{name: "form", path: "/", wantStatus: http.StatusOK,
			wantBody: []string{`data-testid="lobby-form"`, `name="room"`, `name="name"`, `/static/css/app.css`}},
		{name: "submit redirects to room", path: "/?room=team-1&name=Alice+B", wantStatus: http.StatusSeeOther,
			wantLocation: "/rooms/team-1?name=Alice+B"},
		{name: "submit without name", path: "/?room=team_1&name=", wantStatus: http.StatusSeeOther,
			wantLocation: "/rooms/team_1"},
		{name: "submit bad room", path: "/?room=no+spaces&name=Al", wantStatus: http.StatusBadRequest,
			wantBody: []string{`data-testid="form-error"`, "invalid room name: 1-64 letters, digits, - or _"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := env.get(tt.path, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body:\n%s", status, tt.wantStatus, body)
			}
			if got := hdr.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location = %q, want %q", got, tt.wantLocation)
			}
			for _, want := range tt.wantBody {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q", want)
				}
			}
		})
	}
}

func TestRoomPage(t *testing.T) {
	env := newEnv(t, envOptions{cfg: Config{NodeID: "node-a"}})
	tests := []struct {
		name    string
		path    string
		want    []string
		notWant []string
	}{
		{
			name: "joins with name",
			path: "/rooms/standup?name=Alice",
			want: []string{
				`data-room="standup"`, `data-node-id="node-a"`, `data-name="Alice"`,
				`data-testid="local-video"`, `data-testid="connection-state"`, `>connecting<`,
				`data-testid="node-id"`, `>node-a<`, `data-testid="leave"`,
				`src="/static/js/room.js"`, `type="module"`,
			},
			notWant: []string{`data-testid="name-prompt"`},
		},
		{
			name:    "prompts without name",
			path:    "/rooms/standup",
			want:    []string{`data-testid="name-prompt"`, `action="/rooms/standup"`, `name="name"`, `>node-a<`},
			notWant: []string{`room.js`, `data-testid="local-video"`},
		},
		{
			name:    "prompts with invalid name",
			path:    "/rooms/standup?name=%01bad",
			want:    []string{`data-testid="name-prompt"`, `data-testid="form-error"`, "control characters"},
			notWant: []string{`room.js`},
		},
		{
			name: "name is trimmed and escaped",
			path: "/rooms/standup?name=+%3Cb%3EBob%3C%2Fb%3E+",
			want: []string{`data-name="&lt;b&gt;Bob&lt;/b&gt;"`},
			notWant: []string{
				"<b>Bob</b>",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := env.get(tt.path, nil)
			if status != http.StatusOK {
				t.Fatalf("status = %d, want 200; body:\n%s", status, body)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type = %q", ct)
			}
			if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body unexpectedly has %q", w)
				}
			}
		})
	}
}

func TestRoomNames(t *testing.T) {
	env := newEnv(t, envOptions{})
	long := strings.Repeat("a", 64)
	tests := []struct {
		room string // already URL-escaped
		want int
	}{
		{"a", http.StatusOK},
		{"Team_Meeting-42", http.StatusOK},
		{"", http.StatusBadRequest},
		{long, http.StatusOK},
		{long + "a", http.StatusBadRequest},
		{"with%20space", http.StatusBadRequest},
		{"dot.name", http.StatusBadRequest},
		{"caf%C3%A9", http.StatusBadRequest},
		{"semi%3Bcolon", http.StatusBadRequest},
		{"slash%2Fencoded", http.StatusBadRequest},
		{"%3Cscript%3E", http.StatusBadRequest},
		{"tab%09", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.room, func(t *testing.T) {
			status, _, body := env.get("/rooms/"+tt.room+"?name=Al", nil)
			if status != tt.want {
				t.Fatalf("GET /rooms/%s = %d, want %d", tt.room, status, tt.want)
			}
			if tt.want == http.StatusBadRequest {
				if !strings.Contains(body, "invalid room name: 1-64 letters, digits, - or _") {
					t.Errorf("400 page lacks the explanation:\n%s", body)
				}
				wsStatus, _, _ := env.get("/rooms/"+tt.room+"/ws", nil)
				if wsStatus != http.StatusBadRequest {
					t.Errorf("GET /rooms/%s/ws = %d, want 400", tt.room, wsStatus)
				}
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	env := newEnv(t, envOptions{})
	status, _, body := env.get("/healthz", nil)
	if status != http.StatusOK || body != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", status, body)
	}
}

func TestReadyz(t *testing.T) {
	engine := newEngine(t, nil)
	tests := []struct {
		name       string
		ready      func() error
		drain      bool
		wantStatus int
		wantBody   string
	}{
		{name: "no readiness func", ready: nil, wantStatus: http.StatusOK, wantBody: `{"status":"ready"}`},
		{name: "ready", ready: func() error { return nil }, wantStatus: http.StatusOK, wantBody: `{"status":"ready"}`},
		{name: "degraded", ready: func() error { return errors.New("consul unreachable") },
			wantStatus: http.StatusOK, wantBody: `{"status":"degraded","reason":"consul unreachable"}`},
		{name: "draining", ready: func() error { return nil }, drain: true,
			wantStatus: http.StatusServiceUnavailable, wantBody: `{"status":"draining"}`},
		{name: "draining while degraded", ready: func() error { return errors.New("consul unreachable") }, drain: true,
			wantStatus: http.StatusServiceUnavailable, wantBody: `{"status":"draining"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, envOptions{deps: Deps{Engine: engine, Ready: tt.ready}})
			if tt.drain {
				env.srv.Drain("test")
			}
			status, hdr, body := env.get("/readyz", nil)
			if status != tt.wantStatus || strings.TrimSpace(body) != tt.wantBody {
				t.Fatalf("GET /readyz = %d %s, want %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
		})
	}
}

func TestReadyzAfterClose(t *testing.T) {
	env := newEnv(t, envOptions{})
	if err := env.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	status, _, body := env.get("/readyz", nil)
	if status != http.StatusServiceUnavailable || strings.TrimSpace(body) != `{"status":"shutting-down"}` {
		t.Errorf("GET /readyz after Close = %d %s, want 503 shutting-down", status, body)
	}
	if _, resp, err := env.dial("room", nil); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: err=%v resp=%v, want 503", err, resp)
	}
	// Drain after Close is a no-op.
	env.srv.Drain("late")
	if status, _, _ := env.get("/readyz", nil); status != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz after Close and Drain = %d, want 503", status)
	}
}

func TestAPICluster(t *testing.T) {
	engine := newEngine(t, nil)
	t.Run("ok", func(t *testing.T) {
		var gotCtx bool
		env := newEnv(t, envOptions{deps: Deps{Engine: engine, Status: func(ctx context.Context) (any, error) {
			gotCtx = ctx != nil
			return map[string]any{"mode": "single-node", "nodes": []map[string]any{{"id": "n1", "rooms": 2}}}, nil
		}}})
		status, hdr, body := env.get("/api/cluster", nil)
		if status != http.StatusOK {
			t.Fatalf("status = %d; body %s", status, body)
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q", ct)
		}
		var doc struct {
			Mode  string `json:"mode"`
			Nodes []struct {
				ID    string `json:"id"`
				Rooms int    `json:"rooms"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if doc.Mode != "single-node" || len(doc.Nodes) != 1 || doc.Nodes[0].ID != "n1" || doc.Nodes[0].Rooms != 2 {
			t.Errorf("doc = %+v", doc)
		}
		if !gotCtx {
			t.Error("Status called without a context")
		}
	})
	t.Run("status error", func(t *testing.T) {
		env := newEnv(t, envOptions{deps: Deps{Engine: engine, Status: func(context.Context) (any, error) {
			return nil, errors.New("boom")
		}}})
		status, _, body := env.get("/api/cluster", nil)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "boom") {
			t.Fatalf("GET /api/cluster = %d %s, want 503 with the error", status, body)
		}
	})
}

func TestStatic(t *testing.T) {
	env := newEnv(t, envOptions{})
	tests := []struct {
		path       string
		wantStatus int
		wantType   string
		wantBody   string
	}{
		{"/static/js/room.js", http.StatusOK, "text/javascript", "window.confab"},
		{"/static/js/signaling.js", http.StatusOK, "text/javascript", "export class Signaling"},
		{"/static/js/peers.js", http.StatusOK, "text/javascript", "subscriber-answer"},
		{"/static/js/ui.js", http.StatusOK, "text/javascript", "remote-tile"},
		{"/static/js/media.js", http.StatusOK, "text/javascript", "getUserMedia"},
		{"/static/css/app.css", http.StatusOK, "text/css", ".tile"},
		{"/static/js/missing.js", http.StatusNotFound, "", ""},
		{"/static/embed.go", http.StatusNotFound, "", ""},
		{"/static/../web/server.go", http.StatusNotFound, "", ""},
		{"/static/js/", http.StatusNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, hdr, body := env.get(tt.path, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", status, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want %s", ct, tt.wantType)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			if cc := hdr.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control = %q, want no-cache", cc)
			}
			etag := hdr.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			status, _, _ = env.get(tt.path, http.Header{"If-None-Match": {etag}})
			if status != http.StatusNotModified {
				t.Errorf("revalidation with ETag = %d, want 304", status)
			}
		})
	}
}

func TestMounts(t *testing.T) {
	engine := newEngine(t, nil)
	env := newEnv(t, envOptions{deps: Deps{Engine: engine, Mounts: map[string]http.Handler{
		"/cluster/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "cluster "+r.Method+" "+r.URL.Path)
		}),
	}}})
	for _, path := range []string{"/cluster/", "/cluster/v1/sync"} {
		status, _, body := env.get(path, nil)
		if status != http.StatusOK || body != "cluster GET "+path {
			t.Errorf("GET %s = %d %q", path, status, body)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{}},
		{name: "origins", cfg: Config{AllowedOrigins: []string{"example.com", "*.example.org", "https://app.example.net"}}},
		{name: "tiny read limit", cfg: Config{MaxMessageBytes: 10}, wantErr: "MaxMessageBytes"},
		{name: "negative outbox", cfg: Config{OutboxSize: -1}, wantErr: "OutboxSize"},
		{name: "negative write timeout", cfg: Config{WriteTimeout: -1}, wantErr: "WriteTimeout"},
		{name: "wildcard origin", cfg: Config{AllowedOrigins: []string{"*"}}, wantErr: "AllowedOrigins"},
		{name: "bad origin pattern", cfg: Config{AllowedOrigins: []string{"[bad"}}, wantErr: "AllowedOrigins"},
		{name: "rate limit disabled", cfg: Config{RateLimit: -1}},
		{name: "rate limit NaN", cfg: Config{RateLimit: math.NaN()}, wantErr: "RateLimit"},
		{name: "rate limit infinite", cfg: Config{RateLimit: math.Inf(1)}, wantErr: "RateLimit"},
		{name: "negative burst", cfg: Config{RateBurst: -5}, wantErr: "RateBurst"},
		{name: "abuse factor below 1", cfg: Config{AbuseFactor: 0.5}, wantErr: "AbuseFactor"},
		{name: "negative peers timeout", cfg: Config{PeersTimeout: -1}, wantErr: "PeersTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.SetDefaults()
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want error about %s", err, tt.wantErr)
			}
		})
	}
	t.Run("defaults applied", func(t *testing.T) {
		var cfg Config
		cfg.SetDefaults()
		if cfg.MaxMessageBytes != 64<<10 || cfg.OutboxSize != 256 || cfg.WriteTimeout <= 0 || cfg.Logger == nil ||
			cfg.RateLimit != 20 || cfg.RateBurst != 50 || cfg.AbuseFactor != 3 || cfg.PeersTimeout <= 0 || cfg.now == nil {
			t.Errorf("defaults = %+v", cfg)
		}
	})
}

func TestNewDeps(t *testing.T) {
	engine := newEngine(t, nil)
	status := func(context.Context) (any, error) { return nil, nil }
	ok := http.NotFoundHandler()
	tests := []struct {
		name string
		deps Deps
	}{
		{"no engine", Deps{Status: status}},
		{"no status", Deps{Engine: engine}},
		{"relative mount", Deps{Engine: engine, Status: status, Mounts: map[string]http.Handler{"cluster/": ok}}},
		{"nil mount handler", Deps{Engine: engine, Status: status, Mounts: map[string]http.Handler{"/cluster/": nil}}},
		{"mount shadows rooms", Deps{Engine: engine, Status: status, Mounts: map[string]http.Handler{"/rooms/": ok}}},
		{"mount with wildcard", Deps{Engine: engine, Status: status, Mounts: map[string]http.Handler{"/x/*": ok}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if srv, err := New(Config{Logger: testLogger()}, tt.deps); err == nil {
				_ = srv.Close()
				t.Fatal("New succeeded, want an error")
			}
		})
	}
	t.Run("node id from engine", func(t *testing.T) {
		srv, err := New(Config{Logger: testLogger()}, Deps{Engine: engine, Status: status})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		if srv.nodeID != engine.NodeID() {
			t.Errorf("nodeID = %q, want the engine's %q", srv.nodeID, engine.NodeID())
		}
	})
}
