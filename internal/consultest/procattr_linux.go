//go:build linux

package consultest

import (
	"os"
	"os/exec"
	"syscall"
)

// TieToTest makes cmd's process die with the test binary (SIGKILL from the
// kernel when it dies for any reason) and puts it in its own process group,
// so that no agent or child process outlives a killed test run. Pdeathsig
// fires when the OS thread that started the child exits; the Go runtime
// only ends threads of goroutines that exit while locked with
// runtime.LockOSThread, which tests must not do around Start.
func TieToTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Kill kills p's process group (see TieToTest) with SIGKILL, as kill -9
// would.
func Kill(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}
