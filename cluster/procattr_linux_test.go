//go:build linux

package cluster

import (
	"os"
	"syscall"
)

// freezeProcess stops p (SIGSTOP): its sockets stay open but nothing
// answers, like a hung or partitioned host.
func freezeProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// thawProcess resumes a frozen p (SIGCONT).
func thawProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
