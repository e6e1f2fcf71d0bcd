//go:build !unix

package cluster

import "time"

// processCPU is not available here: the benchmark omits cpu-ns/op.
func processCPU() (time.Duration, bool) { return 0, false }
