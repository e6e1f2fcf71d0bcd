//go:build !linux

package host

import (
	"errors"
	"fmt"
)

// Pin needs Linux (sched_setaffinity on every thread): elsewhere it fails.
func Pin(pid int, cpus []int) error {
	return fmt.Errorf("host: pin pid %d to CPUs %v: %w", pid, cpus, errors.ErrUnsupported)
}
