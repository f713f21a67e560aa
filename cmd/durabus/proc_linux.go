package main

import "syscall"

// sysProcAttr makes the kernel kill the private redis-server when the demo
// dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
