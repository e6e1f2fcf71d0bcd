//go:build linux

package cluster

import (
	"os"
	"os/exec"
	"syscall"
)

// tieToTest makes cmd's process die with the test process: the kernel sends
// it SIGKILL when the test binary dies for any reason (a panic, a timeout,
// kill -9 of `go test`), so no Consul agent or child node outlives a killed
// run. It also gets its own process group, so a terminal's Ctrl-C reaches
// it only through the test binary's death, and killProcess can kill the
// whole group.
//
// Pdeathsig fires when the OS thread that started the child exits. The Go
// runtime only ends threads of goroutines that exit while locked with
// runtime.LockOSThread, which the tests never do.
func tieToTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcess kills p's process group (see tieToTest) with SIGKILL, as
// kill -9 would.
func killProcess(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}

// freezeProcess stops p (SIGSTOP): its sockets stay open but nothing
// answers, like a hung or partitioned host.
func freezeProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// thawProcess resumes a frozen p (SIGCONT).
func thawProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
