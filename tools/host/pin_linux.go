//go:build linux

package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// pinRounds bounds how often Pin re-reads the thread list to catch threads
// created while it was pinning.
const pinRounds = 10

// Pin sets the CPU affinity of every thread of pid (all /proc/<pid>/task/*) to
// cpus (golang.org/x/sys/unix SchedSetaffinity). Pin(os.Getpid(), ...) pins
// the caller, and threads created later inherit it. Threads that exit while
// Pin runs are ignored.
func Pin(pid int, cpus []int) error {
	if len(cpus) == 0 {
		return fmt.Errorf("host: pin pid %d: no CPUs given", pid)
	}
	var set unix.CPUSet
	set.Zero()
	for _, c := range cpus {
		if c >= 0 {
			set.Set(c) // ignores numbers the set cannot hold
		}
		if c < 0 || !set.IsSet(c) {
			return fmt.Errorf("host: pin pid %d: CPU %d out of range", pid, c)
		}
	}
	taskDir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	done := map[int]bool{}
	for range pinRounds {
		tids, err := os.ReadDir(taskDir)
		if err != nil {
			return fmt.Errorf("host: pin pid %d: %w", pid, err)
		}
		pinned := 0
		for _, e := range tids {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			err = unix.SchedSetaffinity(tid, &set)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread exited
			}
			if err != nil {
				return fmt.Errorf("host: pin pid %d: thread %d to CPUs %v: %w", pid, tid, cpus, err)
			}
			done[tid] = true
			pinned++
		}
		if pinned == 0 { // no new threads appeared: all are pinned
			return nil
		}
	}
	return fmt.Errorf("host: pin pid %d: threads keep appearing after %d rounds", pid, pinRounds)
}
