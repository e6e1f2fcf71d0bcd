package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePprof is a stand-in for a node's net/http/pprof server: it answers
// /debug/pprof/profile with status and body at once, and records the
// seconds asked for.
func fakePprof(t *testing.T, status int, body string) (*httptest.Server, chan string) {
	t.Helper()
	asked := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/profile" {
			http.NotFound(w, r)
			return
		}
		asked <- r.URL.Query().Get("seconds")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, asked
}

func TestFetchProfile(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    string // substring; "" = success
	}{
		{"ok", http.StatusOK, "fake profile bytes", ""},
		{"server error", http.StatusInternalServerError, "profiling failed", "500 Internal Server Error: profiling failed"},
		{"empty", http.StatusOK, "", "empty body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, asked := fakePprof(t, tt.status, tt.body)
			out := filepath.Join(t.TempDir(), "cpu.pprof")
			err := FetchProfile(context.Background(), srv.URL+"/", 3, out)
			if got := <-asked; got != "3" {
				t.Errorf("seconds=%q, want 3", got)
			}
			data, rerr := os.ReadFile(out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "load: pprof: GET ") {
					t.Errorf("err %v, want one containing %q", err, tt.err)
				}
				if rerr == nil {
					t.Errorf("%s written after a failed fetch", out)
				}
				return
			}
			if err != nil || rerr != nil || string(data) != tt.body {
				t.Errorf("err %v; file %q, %v; want %q", err, data, rerr, tt.body)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := FetchProfile(ctx, "http://127.0.0.1:1", 1, filepath.Join(t.TempDir(), "p"))
		if err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Errorf("err %v, want context canceled", err)
		}
	})
}

func TestProfileSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		20 * time.Second:         20,
		12500 * time.Millisecond: 12,
		500 * time.Millisecond:   1,
	} {
		if got := profileSeconds(d); got != want {
			t.Errorf("profileSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

// TestRunProfile runs fanout against a real node with --pprof-url pointing
// at a fake pprof server: the profile is fetched for the window and written,
// and a 500 answer becomes an error of the report, not of the run.
func TestRunProfile(t *testing.T) {
	url := startNode(t)
	tests := []struct {
		name   string
		status int
		err    string // in the report's errors; "" = none
	}{
		{"ok", http.StatusOK, ""},
		{"server error", http.StatusInternalServerError, "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, asked := fakePprof(t, tt.status, "fake profile")
			cfg := testConfig(url, ScenarioFanout)
			cfg.Subscribers = 1
			cfg.ProfileURL = srv.URL
			cfg.ProfileOut = filepath.Join(t.TempDir(), "fanout.pprof")
			rep, err := Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatalf("Run: %v (a failed profile must not fail the run)", err)
			}
			select {
			case got := <-asked:
				if got != "2" {
					t.Errorf("profile of %s s, want the 2 s window", got)
				}
			default:
				t.Fatal("the pprof server was never asked")
			}
			data, rerr := os.ReadFile(cfg.ProfileOut)
			if tt.err == "" {
				if rerr != nil || string(data) != "fake profile" || rep.Profile != cfg.ProfileOut || rep.ErrorCount != 0 {
					t.Errorf("profile %q, %v; report profile %q, errors %v", data, rerr, rep.Profile, rep.Errors)
				}
				return
			}
			if rerr == nil || rep.Profile != "" {
				t.Errorf("profile written (%q) or reported (%q) after a 500", data, rep.Profile)
			}
			if rep.ErrorCount != 1 || !strings.Contains(strings.Join(rep.Errors, "\n"), tt.err) {
				t.Errorf("report errors %v, want one containing %q", rep.Errors, tt.err)
			}
			if rep.Packets == 0 {
				t.Error("the run itself measured nothing")
			}
		})
	}
}
