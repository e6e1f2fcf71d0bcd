package peer

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestWriteEvery: the loop writes until stop closes, ignores ordinary
// write errors and ends on a closed connection.
func TestWriteEvery(t *testing.T) {
	tests := []struct {
		name  string
		err   func(n int) error // the error of the nth write
		stop  bool              // close stop after 3 writes
		wantN int
	}{
		{"stopped", func(int) error { return nil }, true, 3},
		{"ordinary errors are ignored", func(int) error { return errors.New("not negotiated") }, true, 3},
		{"closed connection ends it", func(n int) error {
			if n == 2 {
				return fmt.Errorf("write: %w", net.ErrClosed)
			}
			return nil
		}, false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stop := make(chan struct{})
			n := 0
			done := make(chan struct{})
			go func() {
				defer close(done)
				WriteEvery(stop, time.Millisecond, func() error {
					n++
					if tt.stop && n == 3 {
						close(stop)
					}
					return tt.err(n)
				})
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("WriteEvery did not return")
			}
			if n != tt.wantN {
				t.Fatalf("%d writes, want %d", n, tt.wantN)
			}
		})
	}
}
