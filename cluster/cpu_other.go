//go:build !unix

package cluster

import "time"

// processCPU is not available here: the load omits the CPU share and the
// benchmark its cpu-ns/op.
func processCPU() (time.Duration, bool) { return 0, false }
