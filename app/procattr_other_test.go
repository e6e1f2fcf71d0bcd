//go:build !linux

package app

import (
	"os"
	"os/exec"
)

// tieToTest is a no-op outside Linux (no Pdeathsig).
func tieToTest(*exec.Cmd) {}

// killProcess kills p.
func killProcess(p *os.Process) error { return p.Kill() }
