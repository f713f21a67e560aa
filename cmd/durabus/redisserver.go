package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis is a redis-server child process on a free loopback port in
// a temporary directory, for demo when no --redis is given.
//
// This is a small stand-in for a shared internal helper that did not exist
// yet when the demo was written.
type privateRedis struct {
	cmd     *exec.Cmd
	dir     string
	addr    string
	version string
	exited  chan struct{}
}

// startPrivateRedis starts redis-server from PATH and waits until it
// answers PING.
func startPrivateRedis(ctx context.Context) (*privateRedis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server not found on PATH: install it (sudo apt-get install -y redis-server, or make demo does it) or give --redis URL")
	}
	dir, err := os.MkdirTemp("", "durabus-demo-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		p, err := launchRedis(ctx, bin, dir)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	_ = os.RemoveAll(dir)
	return nil, lastErr
}

func launchRedis(ctx context.Context, bin, dir string) (*privateRedis, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "redis.log")
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--logfile", logPath, "--protected-mode", "yes")
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	p := &privateRedis{cmd: cmd, dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()

	rdb := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-p.exited:
			tail, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("redis-server exited at start: %s", lastLine(string(tail)))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		info, err := rdb.Info(pctx, "server").Result()
		cancel()
		if err == nil {
			for _, l := range strings.Split(info, "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
					p.version = v
				}
			}
			return p, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			p.stopProcess()
			return nil, fmt.Errorf("redis-server on %s did not answer: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and removes its
// directory.
func (p *privateRedis) Stop() {
	p.stopProcess()
	_ = os.RemoveAll(p.dir)
}

func (p *privateRedis) stopProcess() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
