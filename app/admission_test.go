package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/confab/confab/sfu"
	"github.com/confab/confab/web"
)

func TestParseBitrate(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"8M", 8_000_000, true},
		{"2500k", 2_500_000, true},
		{"1.5M", 1_500_000, true},
		{"4000000", 4_000_000, true},
		{"off", -1, true},
		{"OFF", -1, true},
		{"100k", 100_000, true},
		{"99k", 0, false},
		{"0", 0, false},
		{"-5M", 0, false},
		{"fast", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBitrate(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseBitrate(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestAdmissionFlags: the admission flags reach Config, bad values are
// refused naming the flag.
func TestAdmissionFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	cfg, err := ParseConfig([]string{"--max-conns", "500", "--max-conns-per-ip", "7", "--join-timeout", "3s",
		"--max-publish-bitrate", "2M", "--fanout-workers", "3", "--fanout-shard-min", "16"}, noEnv)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if cfg.MaxConns != 500 || cfg.MaxConnsPerIP != 7 || cfg.JoinTimeout != 3*time.Second || cfg.MaxPublishBitrate != 2_000_000 ||
		cfg.FanoutWorkers != 3 || cfg.FanoutShardMin != 16 {
		t.Errorf("config = %d %d %v %d %d %d", cfg.MaxConns, cfg.MaxConnsPerIP, cfg.JoinTimeout, cfg.MaxPublishBitrate,
			cfg.FanoutWorkers, cfg.FanoutShardMin)
	}
	env := map[string]string{"CONFAB_MAX_PUBLISH_BITRATE": "off"}
	cfg, err = ParseConfig(nil, func(k string) string { return env[k] })
	if err != nil || cfg.MaxPublishBitrate != -1 {
		t.Errorf("from the environment: %d, %v", cfg.MaxPublishBitrate, err)
	}
	for _, args := range [][]string{
		{"--max-conns", "0"}, {"--max-conns-per-ip", "-1"}, {"--join-timeout", "0s"}, {"--max-publish-bitrate", "10k"},
		{"--fanout-workers", "0"}, {"--fanout-workers", "257"}, {"--fanout-shard-min", "0"},
	} {
		_, err := ParseConfig(args, noEnv)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("ParseConfig(%v) = %v, want an error naming %s", args, err, args[0])
		}
	}
}

// startLimitedServer serves a real web.Server (with a mount at /echo that
// reads the request body) through newHTTPServer with limits.
func startLimitedServer(t *testing.T, limits httpLimits) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	engine, err := sfu.New(sfu.Config{NodeID: "limits", UDPAddr: "127.0.0.1:0", IncludeLoopback: true, Logger: log})
	if err != nil {
		t.Fatalf("sfu.New: %v", err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
			return
		}
		_, _ = w.Write(b)
	})
	srv, err := web.New(web.Config{Logger: log}, web.Deps{
		Engine: engine,
		Status: func(context.Context) (any, error) { return "ok", nil },
		Mounts: map[string]http.Handler{"/echo": echo},
	})
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(srv.Handler(), limits, log)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = shutdownHTTP(hs, srv)
		<-done
	})
	return ln.Addr().String()
}

// TestHTTPServerLimits runs the node's HTTP server with short limits: a
// client trickling its headers is cut, oversized headers and bodies are
// refused, and a signaling WebSocket outlives every timeout.
func TestHTTPServerLimits(t *testing.T) {
	const short = 300 * time.Millisecond
	limits := httpLimits{
		ReadHeaderTimeout: short, ReadTimeout: short, WriteTimeout: short, IdleTimeout: short,
		MaxHeaderBytes: 4 << 10, MaxBody: 1 << 10,
	}
	addr := startLimitedServer(t, limits)

	t.Run("slow headers are cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		// The server gives up on the request: it answers 408 or just
		// closes; either way the connection ends without a 200.
		b, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("connection still open after %v: %v", time.Since(start), err)
		}
		if strings.Contains(string(b), " 200 ") {
			t.Errorf("incomplete request answered: %q", b)
		}
		t.Logf("slow-header connection cut after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("oversized headers", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})

	t.Run("body limit", func(t *testing.T) {
		tests := []struct {
			size int
			want int
		}{{512, http.StatusOK}, {4 << 10, http.StatusRequestEntityTooLarge}}
		for _, tt := range tests {
			resp, err := http.Post("http://"+addr+"/echo", "text/plain", strings.NewReader(strings.Repeat("b", tt.size)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("POST of %d bytes: status %d, want %d", tt.size, resp.StatusCode, tt.want)
			}
		}
	})

	t.Run("websocket outlives the timeouts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/rooms/long/ws", nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.CloseNow()
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"v":1,"type":"join","name":"Long"}`)); err != nil {
			t.Fatal(err)
		}
		msgs := make(chan string, 16)
		go func() {
			defer close(msgs)
			for {
				_, b, err := conn.Read(ctx)
				if err != nil {
					return
				}
				msgs <- string(b)
			}
		}()
		expect := func(typ string) {
			t.Helper()
			for m := range msgs {
				if strings.Contains(m, `"type":"`+typ+`"`) {
					return
				}
			}
			t.Fatalf("connection ended before %q", typ)
		}
		expect("joined")
		time.Sleep(5 * short) // past read, write and idle timeouts, silent
		if err := conn.Write(ctx, websocket.MessageText, []byte(`{"v":1,"type":"ping"}`)); err != nil {
			t.Fatalf("write after %v: %v", 5*short, err)
		}
		expect("pong")
		_ = conn.Close(websocket.StatusNormalClosure, "")
	})
}

// TestDefaultHTTPLimits: the production limits keep their documented
// relations (the write timeout exceeds the slowest control request).
func TestDefaultHTTPLimits(t *testing.T) {
	l := defaultHTTPLimits()
	if l.ReadHeaderTimeout <= 0 || l.ReadTimeout < l.ReadHeaderTimeout || l.WriteTimeout < 45*time.Second ||
		l.IdleTimeout <= 0 || l.MaxHeaderBytes < 8<<10 || l.MaxBody < 1<<20 {
		t.Errorf("limits %+v", l)
	}
}
