//go:build !linux

package consultest

import (
	"os"
	"os/exec"
)

// TieToTest does nothing here: the test's cleanup kills the agent.
func TieToTest(*exec.Cmd) {}

// Kill kills p.
func Kill(p *os.Process) error { return p.Kill() }
