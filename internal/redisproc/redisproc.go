// Package redisproc starts a private redis-server for examples and the CLI:
// on a free 127.0.0.1 port, in a temporary directory, without persistence,
// and stops it again. Tests use internal/redistest instead, which ties the
// server to a testing.TB.
package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is returned by Start when redis-server is not on PATH.
var ErrNotFound = errors.New("redisproc: redis-server not found on PATH (install it, e.g. `sudo apt-get install -y redis-server`, or pass a Redis URL)")

// readyTimeout bounds how long Start waits for the server to answer PING.
const readyTimeout = 10 * time.Second

// Server is a running redis-server child process. Stop it with Stop; its
// methods are safe for concurrent use.
type Server struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}

	once    sync.Once
	stopErr error
}

// Start starts redis-server from PATH on a free loopback port in a new
// temporary directory, with persistence off, and waits (at most 10 s, or
// until ctx ends) until it answers PING. The caller must call Stop.
func Start(ctx context.Context) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNotFound
	}
	var lastErr error
	for range 5 {
		s, err := start(ctx, bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "durabus-redis-")
	if err != nil {
		return nil, fmt.Errorf("redisproc: %w", err)
	}
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--logfile", logPath)
	cmd.Dir = dir
	cmd.SysProcAttr = ParentDeathAttr()
	s := &Server{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal is tied to this thread: keep it until
		// the server exits, so a killed parent takes the server with it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redisproc: exec %s: %w", bin, err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		if ping(s.addr) == nil {
			return s, nil
		}
		select {
		case <-s.done:
			logText, _ := os.ReadFile(logPath)
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redisproc: redis-server exited before it answered: %s", lastLines(string(logText), 5))
		case <-ctx.Done():
			_ = s.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("redisproc: redis-server on %s did not answer PING within %v", s.addr, readyTimeout)
		}
	}
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// URL returns "redis://127.0.0.1:PORT", for redis.ParseURL.
func (s *Server) URL() string { return "redis://" + s.addr }

// Stop terminates the server (SIGKILL after 5 s), waits for it to exit and
// removes its directory. Calling it again returns the first result.
func (s *Server) Stop() error {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		s.stopErr = os.RemoveAll(s.dir)
	})
	return s.stopErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redisproc: no free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING on a new connection and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
