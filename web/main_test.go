package web

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind
// (sessions, engine, pion clients, HTTP connections).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
