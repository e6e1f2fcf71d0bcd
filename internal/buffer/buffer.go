// Package buffer holds a bytes.Buffer that tests and tools share between
// goroutines: a logger or a child process writes into it while the test
// reads it.
package buffer

import (
	"bytes"
	"sync"
)

// Sync is a bytes.Buffer safe for concurrent writes and reads. The zero
// value is an empty buffer ready to use.
type Sync struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer; it implements io.Writer.
func (s *Sync) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns a copy of what was written so far.
func (s *Sync) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
