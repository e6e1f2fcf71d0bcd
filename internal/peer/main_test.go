package peer

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (peer
// connections, track readers, writers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
