package consultest

import (
	"io"
	"net/http"
	"testing"
)

// TestStart: an agent starts, answers with a leader, and is gone after the
// test's cleanup.
func TestStart(t *testing.T) {
	var addr string
	t.Run("agent", func(t *testing.T) {
		a := Start(t, "consultest")
		addr = a.Addr
		res, err := http.Get("http://" + a.Addr + "/v1/status/leader")
		if err != nil {
			t.Fatalf("leader: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || len(b) < 3 {
			t.Fatalf("leader: %d %q", res.StatusCode, b)
		}
	})
	if res, err := http.Get("http://" + addr + "/v1/status/leader"); err == nil {
		res.Body.Close()
		t.Fatalf("the agent on %s still answers after the test", addr)
	}
}
