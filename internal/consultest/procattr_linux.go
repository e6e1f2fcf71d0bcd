//go:build linux

package consultest

import (
	"os"
	"os/exec"
	"syscall"
)

// tieToTest makes cmd's process die with the test binary (SIGKILL from the
// kernel when it dies for any reason) and puts it in its own process group,
// so that no agent outlives a killed test run.
func tieToTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcess kills p's process group (see tieToTest).
func killProcess(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}
