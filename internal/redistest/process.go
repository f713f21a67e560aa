package redistest

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// signalTimeout bounds how long Pause and Resume wait for the kernel to
// report the new process state.
const signalTimeout = 10 * time.Second

// Pause sends SIGSTOP to the redis-server process, like a host that freezes
// (a VM pause, a long GC of a co-located process, swap): connections stay
// open, nothing is answered, and clients see timeouts. On Linux it returns
// once /proc reports the process stopped. Stop, Kill, Restart and the cleanup
// work on a paused server. It fails the test if the server is not running.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signalState(t, syscall.SIGSTOP, true)
}

// Resume sends SIGCONT to a server stopped by [Server.Pause] and, on Linux,
// returns once /proc reports it running again. Resuming a running server does
// nothing.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signalState(t, syscall.SIGCONT, false)
}

// Paused reports whether the process is stopped by a signal: on Linux as
// /proc/PID/stat reports it (so a SIGSTOP sent by someone else counts too),
// elsewhere whether Pause was called without a Resume since.
func (s *Server) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return false
	}
	if st, ok := procState(s.proc.os.Pid); ok {
		return st == 'T'
	}
	return s.paused
}

func (s *Server) signalState(t testing.TB, sig syscall.Signal, stopped bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil || p.exited() {
		t.Fatalf("redistest: %v %s: server is not running", sig, s.Addr())
	}
	if err := p.os.Signal(sig); err != nil {
		t.Fatalf("redistest: %v pid %d (%s): %v", sig, p.os.Pid, s.Addr(), err)
	}
	s.paused = stopped
	deadline := time.Now().Add(signalTimeout)
	for {
		st, ok := procState(p.os.Pid)
		if !ok || (st == 'T') == stopped {
			return
		}
		if p.exited() {
			t.Fatalf("redistest: pid %d (%s) exited after %v: %v", p.os.Pid, s.Addr(), sig, p.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: pid %d (%s) still in state %c %v after %v", p.os.Pid, s.Addr(), st, sig, signalTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// procState returns the state letter of /proc/PID/stat ('R', 'S', 'T' for
// stopped by a signal, 'Z' ...), and false where there is no /proc.
func procState(pid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, so take the
	// last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	return b[i+2], true
}
