//go:build linux

package redisproc

import "syscall"

// ParentDeathAttr makes the kernel SIGKILL a child (redis-server) when the
// thread that started it exits. The starting goroutine must keep its OS
// thread locked until the child exits, so that in practice this happens when
// the parent process dies, even by SIGKILL.
func ParentDeathAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
