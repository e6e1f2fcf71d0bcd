package host

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// burn keeps the calling goroutine busy until the process has used at least
// want more CPU time than before, failing the test after a generous bound.
func burn(t *testing.T, want time.Duration) {
	t.Helper()
	pid := os.Getpid()
	start, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x ^= i * i
		}
		now, err := CPU(pid)
		if err != nil {
			t.Fatal(err)
		}
		if now-start >= want {
			return
		}
	}
	t.Fatalf("CPU time of pid %d did not rise by %v in 30 s of spinning (x=%d)", pid, want, x)
}

func TestCPURisesWhenBurning(t *testing.T) {
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	burn(t, 200*time.Millisecond)
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 200*time.Millisecond {
		t.Fatalf("CPU went from %v to %v, want a rise of at least 200ms", before, after)
	}
}

func TestCPUAgreesWithGetrusage(t *testing.T) {
	burn(t, 100*time.Millisecond)
	pid := os.Getpid()
	lo, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	hi, err := CPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	rusage := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// /proc counts in 10 ms ticks; allow a few of them either way.
	const tol = 50 * time.Millisecond
	if rusage < lo-tol || rusage > hi+tol {
		t.Fatalf("getrusage says %v, /proc says %v..%v", rusage, lo, hi)
	}
}

func TestNoSuchProcess(t *testing.T) {
	for _, pid := range []int{-1, 0, 1 << 30} {
		t.Run(strconv.Itoa(pid), func(t *testing.T) {
			if _, err := CPU(pid); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("CPU(%d) error = %v, want not exist", pid, err)
			}
			if _, err := RSS(pid); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("RSS(%d) error = %v, want not exist", pid, err)
			}
			if err := Pin(pid, []int{0}); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Pin(%d) error = %v, want not exist", pid, err)
			}
		})
	}
}

func TestRSS(t *testing.T) {
	pid := os.Getpid()
	before, err := RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Fatalf("RSS = %d, want > 0", before)
	}
	// Touch 64 MiB: the resident set must grow by most of it.
	const size = 64 << 20
	buf := make([]byte, size)
	for i := 0; i < len(buf); i += os.Getpagesize() {
		buf[i] = 1
	}
	after, err := RSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(buf)
	if after-before < size/2 {
		t.Fatalf("RSS went from %d to %d after touching %d bytes", before, after, size)
	}
}

func TestRSSOfChild(t *testing.T) {
	child := startSleep(t)
	rss, err := RSS(child)
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 {
		t.Fatalf("RSS of sleep = %d, want > 0", rss)
	}
}

func TestPIDByPort(t *testing.T) {
	tests := []struct {
		name, network, addr string
	}{
		{"ipv4 loopback", "tcp4", "127.0.0.1:0"},
		{"ipv4 any", "tcp4", "0.0.0.0:0"},
		{"ipv6 loopback", "tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen(tt.network, tt.addr)
			if err != nil {
				if tt.network == "tcp6" {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatal(err)
			}
			defer ln.Close()
			port := ln.Addr().(*net.TCPAddr).Port
			pid, err := PIDByPort(port)
			if err != nil {
				t.Fatal(err)
			}
			if pid != os.Getpid() {
				t.Fatalf("PIDByPort(%d) = %d, want the test process %d", port, pid, os.Getpid())
			}
		})
	}
}

func TestPIDByPortErrors(t *testing.T) {
	// A port that was free a moment ago (listen, then close).
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// A port with an established connection but no listener on our side:
	// the client end of a connection is not a LISTEN socket.
	srv, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := net.Dial("tcp4", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	clientPort := conn.LocalAddr().(*net.TCPAddr).Port

	tests := []struct {
		name string
		port int
		want string
	}{
		{"zero", 0, "out of range"},
		{"too large", 70000, "out of range"},
		{"nobody listens", closed, "no TCP socket listens"},
		{"client end of a connection", clientPort, "no TCP socket listens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, err := PIDByPort(tt.port)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("PIDByPort(%d) = %d, %v; want an error containing %q", tt.port, pid, err, tt.want)
			}
		})
	}
}

func TestBusy(t *testing.T) {
	total, maxCPU, err := Busy(context.Background(), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if total < 0 || total > 1 || maxCPU < 0 || maxCPU > 1 || total > maxCPU+1e-9 {
		t.Fatalf("Busy = %v, %v; want 0 <= total <= max <= 1", total, maxCPU)
	}
}

func TestBusySeesASpinningThread(t *testing.T) {
	// Spin on one thread pinned to CPU 0: that CPU is fully busy.
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine
		var set unix.CPUSet
		set.Set(0)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		x := 0
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			for i := range 100_000 {
				x ^= i
			}
		}
	}()
	total, maxCPU, err := Busy(context.Background(), 300*time.Millisecond)
	close(stop)
	if spinErr := <-done; spinErr != nil {
		t.Fatal(spinErr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if maxCPU < 0.8 {
		t.Fatalf("Busy = %v, %v while a thread spun on CPU 0; want the busiest CPU >= 0.8", total, maxCPU)
	}
	if want := 0.8 / float64(NumCPU()); total < want {
		t.Fatalf("Busy total = %v while a thread spun on CPU 0; want >= %v", total, want)
	}
}

func TestBusyErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"cancelled", cancelled, time.Minute, context.Canceled},
		{"zero duration", context.Background(), 0, nil},
		{"negative duration", context.Background(), -time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Busy(tt.ctx, tt.d)
			if err == nil {
				t.Fatal("Busy succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Busy error = %v, want %v", err, tt.want)
			}
		})
	}
}

// startSleep starts a `sleep` child process that is killed and reaped when
// the test ends, and returns its pid.
func startSleep(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck // reaped below either way
		cmd.Wait()         //nolint:errcheck // killed on purpose
	})
	return cmd.Process.Pid
}

// allowedList returns the Cpus_allowed_list of every thread of pid.
func allowedList(t *testing.T, pid int) []string {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lists []string
	for _, task := range tasks {
		raw, err := os.ReadFile(filepath.Join(dir, task.Name(), "status"))
		if err != nil {
			continue // the thread exited
		}
		for line := range strings.Lines(string(raw)) {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				lists = append(lists, strings.TrimSpace(v))
			}
		}
	}
	if len(lists) == 0 {
		t.Fatalf("no Cpus_allowed_list for pid %d", pid)
	}
	return lists
}

func TestPinChild(t *testing.T) {
	child := startSleep(t)
	tests := []struct {
		cpus []int
		want string
	}{
		{[]int{0}, "0"},
		{[]int{0, 1}, "0-1"},
		{[]int{1}, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if tt.cpus[len(tt.cpus)-1] >= NumCPU() {
				t.Skipf("needs %d CPUs, have %d", tt.cpus[len(tt.cpus)-1]+1, NumCPU())
			}
			if err := Pin(child, tt.cpus); err != nil {
				t.Fatal(err)
			}
			for _, got := range allowedList(t, child) {
				if got != tt.want {
					t.Fatalf("Cpus_allowed_list = %q after Pin(%v), want %q", got, tt.cpus, tt.want)
				}
			}
		})
	}
}

func TestPinSelfPinsEveryThread(t *testing.T) {
	pid := os.Getpid()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &orig); err != nil {
		t.Fatal(err)
	}
	var restore []int
	for c := range len(orig) * 64 {
		if orig.IsSet(c) {
			restore = append(restore, c)
		}
	}
	t.Cleanup(func() {
		if err := Pin(pid, restore); err != nil {
			t.Errorf("restore affinity: %v", err)
		}
	})
	if err := Pin(pid, []int{0}); err != nil {
		t.Fatal(err)
	}
	lists := allowedList(t, pid)
	for _, got := range lists {
		if got != "0" {
			t.Fatalf("a thread of the test process has Cpus_allowed_list %q after Pin(self, [0]): %v", got, lists)
		}
	}
}

func TestPinErrors(t *testing.T) {
	child := startSleep(t)
	tests := []struct {
		name string
		cpus []int
	}{
		{"no cpus", nil},
		{"negative", []int{-1}},
		{"beyond the set", []int{0, 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Pin(child, tt.cpus); err == nil {
				t.Fatalf("Pin(%v) succeeded, want an error", tt.cpus)
			}
		})
	}
}

func TestNumCPU(t *testing.T) {
	// Every online CPU has a cpuN line in /proc/stat.
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for line := range strings.Lines(string(raw)) {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			want++
		}
	}
	if got := NumCPU(); got != want {
		t.Fatalf("NumCPU() = %d, /proc/stat lists %d CPUs", got, want)
	}
}

func TestCountCPUList(t *testing.T) {
	tests := []struct {
		list    string
		want    int
		wantErr bool
	}{
		{"0", 1, false},
		{"0-1", 2, false},
		{"0-3,5,7-8", 7, false},
		{"", 0, true},
		{"3-1", 0, true},
		{"a-b", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := countCPUList(tt.list)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("countCPUList(%q) = %d, %v; want %d, error %v", tt.list, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
