//go:build !linux

package consultest

import (
	"os"
	"os/exec"
)

// tieToTest does nothing here: the test's cleanup kills the agent.
func tieToTest(*exec.Cmd) {}

// killProcess kills p.
func killProcess(p *os.Process) error { return p.Kill() }
