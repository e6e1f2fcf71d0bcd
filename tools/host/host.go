// Package host reads what the load generator needs to know about the machine
// and the processes it measures, from Linux's /proc and /sys: the CPU time
// and resident memory of a process, which process listens on a TCP port, how
// busy the CPUs are, and it pins processes to CPUs.
package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is the unit of the CPU times in /proc (USER_HZ, sysconf(_SC_CLK_TCK)),
// 100 Hz on every Linux architecture Go supports.
const clockTick = time.Second / 100

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// SelfCPU returns this process's user+system CPU time from getrusage, with
// microsecond resolution (CPU's /proc figures move in 10 ms ticks).
func SelfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("host: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// CPU returns the process's total user+system CPU time (utime+stime from
// /proc/<pid>/stat, converted with the clock tick rate, 100 Hz on Linux). It
// counts every thread of the process, not its children.
func CPU(pid int) (time.Duration, error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid), "stat")
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("host: cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may contain spaces
	// and parentheses; the fields after the last ')' start with the state
	// (field 3), so utime (field 14) and stime (field 15) are at 11 and 12.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("host: cpu of pid %d: %s: no command name", pid, path)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("host: cpu of pid %d: %s: %d fields after the command name, want at least 13", pid, path, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("host: cpu of pid %d: %s: %w", pid, path, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}

// RSS returns the resident set size in bytes (VmRSS of /proc/<pid>/status).
func RSS(pid int) (int64, error) {
	path := filepath.Join(procRoot, strconv.Itoa(pid), "status")
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("host: rss of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(raw)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("host: rss of pid %d: %s: malformed line %q", pid, path, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("host: rss of pid %d: %s: %w", pid, path, err)
		}
		return kb * 1024, nil
	}
	// Kernel threads and zombies have no VmRSS line.
	return 0, fmt.Errorf("host: rss of pid %d: %s has no VmRSS (kernel thread or zombie?)", pid, path)
}

// PIDByPort finds the pid of the process listening on TCP port (scan
// /proc/net/tcp and tcp6 for a LISTEN socket on that port, then /proc/*/fd for
// socket:[inode]). Processes whose descriptors cannot be read (other users'
// without privileges) are skipped. It fails when no process or more than one
// process holds such a socket.
func PIDByPort(port int) (int, error) {
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("host: pid by port: port %d out of range", port)
	}
	inodes := map[string]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		if err := listenInodes(filepath.Join(procRoot, "net", name), port, inodes); err != nil {
			return 0, fmt.Errorf("host: pid by port %d: %w", port, err)
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("host: pid by port %d: no TCP socket listens on it", port)
	}
	pids, err := socketOwners(inodes)
	if err != nil {
		return 0, fmt.Errorf("host: pid by port %d: %w", port, err)
	}
	switch len(pids) {
	case 0:
		return 0, fmt.Errorf("host: pid by port %d: a socket listens on it but its process is not visible (another user's? run as that user or root)", port)
	case 1:
		return pids[0], nil
	default:
		return 0, fmt.Errorf("host: pid by port %d: several processes hold the listening socket: %v", port, pids)
	}
}

// tcpListen is the st value of a LISTEN socket in /proc/net/tcp.
const tcpListen = "0A"

// listenInodes adds to inodes the inode numbers of the LISTEN sockets on port
// in the /proc/net/tcp-format file at path. A missing file (no IPv6) is not
// an error.
func listenInodes(path string, port int, inodes map[string]bool) error {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	first := true
	for line := range strings.Lines(string(raw)) {
		if first { // column titles
			first = false
			continue
		}
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok || f[3] != tcpListen {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return fmt.Errorf("%s: local address %q: %w", path, f[1], err)
		}
		if int(p) == port && f[9] != "0" {
			inodes[f[9]] = true
		}
	}
	return nil
}

// socketOwners returns, in ascending order, the pids of the processes that
// have a file descriptor on one of the socket inodes.
func socketOwners(inodes map[string]bool) ([]int, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		fdDir := filepath.Join(procRoot, e.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // exited, or not ours to look at
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil {
				continue
			}
			inode, ok := strings.CutPrefix(link, "socket:[")
			if ok && inodes[strings.TrimSuffix(inode, "]")] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids, nil
}

// Busy samples /proc/stat over d and returns the fraction of all CPUs that
// was busy (0..1), and the busiest single CPU's fraction. Busy time is every
// state but idle and iowait. It returns early with ctx's error when ctx ends.
func Busy(ctx context.Context, d time.Duration) (total, maxCPU float64, err error) {
	if d <= 0 {
		return 0, 0, fmt.Errorf("host: busy: sampling duration %v must be positive", d)
	}
	before, err := readStat()
	if err != nil {
		return 0, 0, fmt.Errorf("host: busy: %w", err)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("host: busy: %w", ctx.Err())
	case <-t.C:
	}
	after, err := readStat()
	if err != nil {
		return 0, 0, fmt.Errorf("host: busy: %w", err)
	}
	total = after["cpu"].busySince(before["cpu"])
	for name, a := range after {
		if name == "cpu" {
			continue
		}
		if b, ok := before[name]; ok {
			maxCPU = max(maxCPU, a.busySince(b))
		}
	}
	// The kernel keeps the all-CPU line and the per-CPU lines in separate
	// tick counters, so over a short window the average can come out a tick
	// above the busiest CPU; the busiest CPU is at least the average.
	maxCPU = max(maxCPU, total)
	return total, maxCPU, nil
}

// cpuTimes are the cumulative busy and total times of a CPU line of
// /proc/stat, in clock ticks.
type cpuTimes struct{ busy, total uint64 }

// busySince returns the busy fraction between an earlier sample b and c, or
// 0 when no time passed.
func (c cpuTimes) busySince(b cpuTimes) float64 {
	if c.total <= b.total {
		return 0
	}
	busy := float64(c.busy-b.busy) / float64(c.total-b.total)
	return min(max(busy, 0), 1)
}

// readStat returns the times of the "cpu" (all CPUs) and "cpuN" lines of
// /proc/stat, by name.
func readStat() (map[string]cpuTimes, error) {
	path := filepath.Join(procRoot, "stat")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	times := map[string]cpuTimes{}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "cpu") {
			continue
		}
		// cpuN user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already counted in user and nice.
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("%s: malformed line %q", path, strings.TrimSpace(line))
		}
		var ct cpuTimes
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, f[0], err)
			}
			ct.total += v
			if i != 3 && i != 4 { // idle, iowait
				ct.busy += v
			}
		}
		times[f[0]] = ct
	}
	if _, ok := times["cpu"]; !ok {
		return nil, fmt.Errorf("%s: no cpu line", path)
	}
	return times, nil
}

// NumCPU returns the number of online CPUs (/sys/devices/system/cpu/online),
// or runtime.NumCPU when that file cannot be read. Unlike runtime.NumCPU it
// does not depend on the affinity of the calling process.
func NumCPU() int {
	raw, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n, err := countCPUList(strings.TrimSpace(string(raw)))
	if err != nil || n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,5,7-8".
func countCPUList(list string) (int, error) {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("cpu list %q: %w", list, err)
			}
		}
		if b < a {
			return 0, fmt.Errorf("cpu list %q: range %s is reversed", list, part)
		}
		n += b - a + 1
	}
	return n, nil
}
