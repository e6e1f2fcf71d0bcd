package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRegistryToken: every request carries the configured token, and only
// it: the Consul client's fallback to $CONSUL_HTTP_TOKEN never applies.
func TestRegistryToken(t *testing.T) {
	t.Setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
	tests := []struct {
		name, token string
	}{
		{"no token", ""},
		{"token", "6b1f39a4-3c1e-4f7e-9a55-0d2f0c1b7e21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(chan []string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case seen <- r.Header.Values(consulTokenHeader):
				default:
				}
				w.Header().Set("X-Consul-Index", "1")
				_, _ = w.Write([]byte("[]"))
			}))
			defer srv.Close()
			cfg := validConfig()
			cfg.ConsulAddr = strings.TrimPrefix(srv.URL, "http://")
			cfg.ConsulToken = tt.token
			cfg.SetDefaults()
			reg, err := newRegistry(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.close()
			if _, _, err := reg.list(context.Background(), kvRoot); err != nil {
				t.Fatalf("list: %v", err)
			}
			got := <-seen
			if (tt.token == "" && len(got) != 0) || (tt.token != "" && (len(got) != 1 || got[0] != tt.token)) {
				t.Errorf("token headers = %q, want %q", got, tt.token)
			}
		})
	}
}
