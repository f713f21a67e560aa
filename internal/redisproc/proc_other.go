//go:build !linux

package redisproc

import "syscall"

// ParentDeathAttr returns nil: outside Linux there is no parent-death
// signal, so only an explicit stop ends the child.
func ParentDeathAttr() *syscall.SysProcAttr { return nil }
