//go:build linux

package redistest

import "syscall"

// sysProcAttr makes the kernel SIGKILL the redis-server when the thread that
// started it exits. The starting goroutine keeps its OS thread locked until the
// child exits (see Server.launch), so in practice that is when the test binary
// exits.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
