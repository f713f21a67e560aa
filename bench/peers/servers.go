package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bench/benchkit"
)

// server is a private child process on a loopback port.
type server struct {
	name string
	addr string
	cmd  *exec.Cmd
	dir  string
}

func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	running.Lock()
	delete(running.servers, s)
	running.Unlock()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	_ = os.RemoveAll(s.dir)
}

// running is every server started and not yet stopped, for stopAll.
var running = struct {
	sync.Mutex
	servers map[*server]bool
}{servers: map[*server]bool{}}

func (s *server) register() {
	running.Lock()
	running.servers[s] = true
	running.Unlock()
}

// stopAll stops every server still running (on SIGINT or SIGTERM: the
// deferred stops of a run do not run when the process is interrupted).
func stopAll() {
	running.Lock()
	all := make([]*server, 0, len(running.servers))
	for s := range running.servers {
		all = append(all, s)
	}
	running.Unlock()
	for _, s := range all {
		s.stop()
	}
}

// stopOnSignal stops every server on SIGINT or SIGTERM, then exits.
func stopOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-ch
		fmt.Fprintf(os.Stderr, "bench: %v: stopping the servers\n", sig)
		stopAll()
		os.Exit(1)
	}()
}

// logTail returns the last n lines of the server's redis.log (redis-server
// started by startRedisWith writes its warnings there), for error messages.
func (s *server) logTail(n int) string {
	data, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after %v", addr, d)
}

// startRedis starts redis-server with persistence off.
func startRedis(bin string) (*server, error) { return startRedisWith(bin, 0) }

// startRedisWith starts redis-server with persistence off, on a port at
// most maxPort when that is not 0 (a cluster node needs port+10000 free for
// its bus: see startCluster), followed by extra arguments.
func startRedisWith(bin string, maxPort int, extra ...string) (*server, error) {
	port := 0
	for try := 0; port == 0; try++ {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if maxPort == 0 || p <= maxPort && portFree(p+10000) {
			port = p
		} else if try == 200 {
			return nil, fmt.Errorf("no free loopback port ≤ %d with port+10000 free after %d tries", maxPort, try)
		}
	}
	dir, err := os.MkdirTemp("", "durabus-bench-redis-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
		"--loglevel", "warning", "--logfile", "redis.log", "--maxmemory-policy", "noeviction"}, extra...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{name: "redis", addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	s.register()
	if err := waitPort(s.addr, 10*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// portFree reports whether a loopback port can be bound now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// startNATS starts nats-server with JetStream (file storage, defaults).
func startNATS(bin string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "durabus-bench-nats-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &server{name: "nats", addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, dir: dir}
	s.register()
	if err := waitPort(s.addr, 10*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func version(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// redisCPU returns Redis's used_cpu_user + used_cpu_sys, in seconds (0
// when INFO fails).
func redisCPU(ctx context.Context, rdb *redis.Client) float64 {
	cpu, _ := benchkit.RedisCPU(ctx, rdb)
	return cpu
}

// machine describes where the run happened.
func machine() (cpus int, model string) {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "processor") {
			cpus++
		}
		if model == "" && strings.HasPrefix(line, "model name") {
			_, m, _ := strings.Cut(line, ":")
			model = strings.TrimSpace(m)
		}
	}
	return cpus, model
}

// loadAverage returns the 1, 5 and 15 minute load averages of
// /proc/loadavg ("unknown" without it): how busy the machine was.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if err != nil || len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// redisCommandStats returns INFO commandstats: calls and usec by command
// ("evalsha", "xrange", …).
func redisCommandStats(ctx context.Context, rdb *redis.Client) map[string][2]float64 {
	out := map[string][2]float64{}
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var v [2]float64
		for _, f := range strings.Split(rest, ",") {
			k, x, _ := strings.Cut(f, "=")
			switch k {
			case "calls":
				v[0], _ = strconv.ParseFloat(x, 64)
			case "usec":
				v[1], _ = strconv.ParseFloat(x, 64)
			}
		}
		out[name] = v
	}
	return out
}
