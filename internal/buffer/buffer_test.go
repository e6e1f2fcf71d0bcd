package buffer

import (
	"strings"
	"sync"
	"testing"
)

// TestSyncConcurrent writes from several goroutines while reading: every
// write is kept whole (run with -race).
func TestSyncConcurrent(t *testing.T) {
	var s Sync
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := s.Write([]byte("ab\n")); err != nil {
					t.Error(err)
					return
				}
				_ = s.String()
			}
		}()
	}
	wg.Wait()
	got := s.String()
	if n := strings.Count(got, "ab\n"); n != 400 || len(got) != 1200 {
		t.Fatalf("got %d whole writes in %d bytes, want 400 in 1200", n, len(got))
	}
}
