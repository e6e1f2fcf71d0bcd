//go:build !linux

package cluster

import (
	"errors"
	"os"
)

// errNoSignals: stopping and resuming processes needs Linux signals here.
var errNoSignals = errors.New("freezing a process is only implemented on linux")

func freezeProcess(*os.Process) error { return errNoSignals }

func thawProcess(*os.Process) error { return errNoSignals }
