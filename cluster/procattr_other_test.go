//go:build !linux

package cluster

import (
	"errors"
	"os"
	"os/exec"
)

// tieToTest is a no-op outside Linux (no Pdeathsig): a killed test run may
// leave its Consul agents behind there.
func tieToTest(*exec.Cmd) {}

// killProcess kills p.
func killProcess(p *os.Process) error { return p.Kill() }

// errNoSignals: stopping and resuming processes needs Linux signals here.
var errNoSignals = errors.New("freezing a process is only implemented on linux")

func freezeProcess(*os.Process) error { return errNoSignals }

func thawProcess(*os.Process) error { return errNoSignals }
