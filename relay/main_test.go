package relay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: Close
// must stop everything the server started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
