package redistest

import (
	"bufio"
	"bytes"
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
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redisproc"
)

const (
	// readyTimeout bounds how long Start and Restart wait for PING to answer.
	readyTimeout = 10 * time.Second
	// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
	stopGrace = 10 * time.Second
	// startAttempts is how often Start picks a new port when another process
	// took the chosen one first.
	startAttempts = 5
)

// errAddrInUse reports that redis-server exited because its port was taken.
var errAddrInUse = errors.New("redistest: port already in use")

// Option configures a server started by [Start].
type Option func(*config)

type config struct {
	aof      bool
	password string
	acl      []string
	args     []string
	cluster  bool

	nodeTimeout time.Duration // cluster-node-timeout with cluster
	fsync       string        // appendfsync with aof: "always" when empty
	replicaOf   string        // "127.0.0.1:PORT" to replicate at start, or ""
	sentinel    *sentinelConf // non-nil: run as redis-server --sentinel
}

// clone returns a copy of c that shares no slices with it.
func (c config) clone() config {
	c.acl = append([]string(nil), c.acl...)
	c.args = append([]string(nil), c.args...)
	if c.sentinel != nil {
		sc := *c.sentinel
		c.sentinel = &sc
	}
	return c
}

// WithAOF turns on the append-only file with appendfsync always, so every
// acknowledged write survives [Server.Kill] and [Server.Restart]. Default: off
// (and RDB snapshots are always off), so a restarted server is empty.
func WithAOF() Option { return func(c *config) { c.aof = true } }

// WithPassword sets requirepass, the password of the default user.
// [Server.Client] and the readiness check use it. Default: no password.
func WithPassword(pw string) Option { return func(c *config) { c.password = pw } }

// WithACL adds ACL rules, one user per line in aclfile syntax, for example
// "user app on >secret ~durabus:* &durabus:* +@all". The leading "user" may
// be left out. The rules are written to redis.conf, so they survive Restart.
func WithACL(lines ...string) Option {
	return func(c *config) { c.acl = append(c.acl, lines...) }
}

// WithArgs appends raw redis-server command-line arguments, for example
// "--maxmemory", "10mb". They override redis.conf. Do not change port, bind or
// dir with them.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// withCluster sets cluster-enabled yes with the given cluster-node-timeout;
// used by StartCluster.
func withCluster(nodeTimeout time.Duration) Option {
	return func(c *config) {
		c.cluster = true
		c.nodeTimeout = nodeTimeout
	}
}

// Server is a private redis-server child process owned by one test. Its
// methods are safe for concurrent use.
type Server struct {
	cfg  config
	bin  string
	dir  string
	port int // fixed once Start returns; Restart reuses it

	mu     sync.Mutex
	proc   *process // current or most recent process; nil before the first launch
	paused bool     // sent SIGSTOP by Pause and not yet SIGCONT; guarded by mu

	owner testing.TB // the test that started the server; owns its helpers

	linkMu sync.Mutex // guards link
	link   *replLink  // proxy between this replica and its master; see PauseReplication
}

// process is one run of redis-server.
type process struct {
	os   *os.Process
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // exit status; valid after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts a private redis-server on a free 127.0.0.1 port in a
// t.TempDir(), waits until it answers PING (at most 10 s), and stops it in
// t.Cleanup, also when the test fails or a later step panics. It fails the
// test if redis-server is not on PATH or does not come up; the failure message
// includes the tail of the server log.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH: install it with `sudo apt-get install -y redis-server` (or run `make test`, which does)")
	}
	s := &Server{bin: bin, dir: t.TempDir(), owner: t}
	for _, o := range opts {
		o(&s.cfg)
	}
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGTERM); err != nil {
			t.Errorf("redistest: cleanup: %v", err)
		}
	})
	for attempt := 1; ; attempt++ {
		s.port, err = freePort(s.cfg.cluster)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.writeConfig(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		err = s.launchAndWait()
		if err == nil {
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			t.Fatalf("redistest: start redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
		}
	}
}

// Addr returns the server's address, "127.0.0.1:PORT". It does not change
// across Restart.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's TCP port. It does not change across Restart.
func (s *Server) Port() int { return s.port }

// Dir returns the server's working directory, which holds redis.conf,
// redis.log and the AOF. It is removed after the test.
func (s *Server) Dir() string { return s.dir }

// Password returns the default user's password set by [WithPassword], or "".
func (s *Server) Password() string { return s.cfg.password }

// PID returns the process id of the current, or the most recent, redis-server
// process. It changes on Restart.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.os.Pid
}

// Running reports whether the redis-server process is alive, also while
// [Server.Pause] has stopped it.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Client returns a new go-redis client for the default user (with the
// password, if any), with go-redis defaults otherwise. The client is closed in
// t.Cleanup; it keeps pointing at the same address across Restart.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.cfg.password})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop sends SIGTERM and waits for the process to exit; after 10 s it sends
// SIGKILL. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("redistest: stop %s: %v", s.Addr(), err)
	}
}

// Kill sends SIGKILL and waits for the process to exit, like a crash: nothing
// is flushed beyond what appendfsync already wrote. Killing a stopped server
// does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGKILL); err != nil {
		t.Fatalf("redistest: kill %s: %v", s.Addr(), err)
	}
}

// Restart starts the server again with the same port, dir and config, and
// waits until it answers PING (so AOF loading is done). A running server is
// stopped first. If the port is briefly busy it retries for up to 10 s.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("redistest: restart %s: %v", s.Addr(), err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.launchAndWait()
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: restart redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop signals the process with sig and waits for it to exit, escalating to
// SIGKILL after stopGrace.
func (s *Server) stop(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil || p.exited() {
		return nil
	}
	// Signal fails only if the process is already gone, which done reports.
	_ = p.os.Signal(sig)
	if sig != syscall.SIGKILL {
		// A process stopped by Pause acts on SIGTERM only once it runs again.
		_ = p.os.Signal(syscall.SIGCONT)
	}
	s.paused = false
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.os.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("pid %d ignored %v for %v and was killed", p.os.Pid, sig, stopGrace)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.os.Pid)
	}
}

// launchAndWait starts a process and waits until it answers. On failure the
// process is not left running.
func (s *Server) launchAndWait() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return errors.New("redistest: already running")
	}
	p, err := s.launch()
	if err != nil {
		return err
	}
	s.proc = p
	s.paused = false
	err = s.waitReady(p)
	if err != nil && !p.exited() {
		_ = p.os.Kill()
		<-p.done
	}
	return err
}

// launch starts redis-server. The goroutine that starts it keeps its OS thread
// locked until the child exits, because Pdeathsig fires when the parent
// thread, not the parent process, exits.
func (s *Server) launch() (*process, error) {
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out, err := os.OpenFile(s.outPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			started <- err
			return
		}
		defer out.Close()
		args := append([]string{s.confPath()}, s.cfg.args...)
		if s.cfg.sentinel != nil {
			args = append(args, "--sentinel")
		}
		cmd := exec.Command(s.bin, args...)
		cmd.Dir = s.dir
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = redisproc.ParentDeathAttr()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.os = cmd.Process
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("redistest: exec %s: %w", s.bin, err)
	}
	return p, nil
}

// waitReady polls PING until the server answers, the process exits, or
// readyTimeout passes. Any reply other than a LOADING error counts as ready
// (for example NOPERM when ACL rules forbid PING to the default user).
//
// It speaks RESP over a plain connection rather than using go-redis, whose
// pool logs failed dials and keeps a redial goroutine for up to a second
// after Close.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		if p.exited() {
			if bytes.Contains(s.readLog(), []byte("Address already in use")) {
				return errAddrInUse
			}
			return fmt.Errorf("redis-server exited before it answered PING: %v", p.err)
		}
		reply, err := ping(s.Addr(), s.cfg.password)
		if err == nil && !strings.HasPrefix(reply, "-LOADING") {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New(reply)
			}
			return fmt.Errorf("no answer to PING after %v, last error: %v", readyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends AUTH (if password is set) and PING on a new connection and
// returns the first line of the PING reply, such as "+PONG" or "-LOADING ...".
func ping(addr, password string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return "", err
	}
	var req bytes.Buffer
	if password != "" {
		fmt.Fprintf(&req, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
	}
	req.WriteString("*1\r\n$4\r\nPING\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	if password != "" {
		// The AUTH reply; a wrong password shows up again as NOAUTH on PING.
		if _, err := r.ReadString('\n'); err != nil {
			return "", err
		}
	}
	line, err := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (s *Server) confPath() string { return filepath.Join(s.dir, "redis.conf") }
func (s *Server) logPath() string  { return filepath.Join(s.dir, "redis.log") }
func (s *Server) outPath() string  { return filepath.Join(s.dir, "stdout.log") }

// writeConfig writes redis.conf for the current port and options.
func (s *Server) writeConfig() error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("port %d", s.port)
	line("bind 127.0.0.1")
	line("protected-mode no")
	line("daemonize no")
	line("dir %s", quote(s.dir))
	line("logfile %s", quote(s.logPath()))
	if s.cfg.sentinel != nil {
		// Sentinel rewrites this file with its state; Restart keeps it.
		s.cfg.sentinel.write(line)
		return os.WriteFile(s.confPath(), []byte(b.String()), 0o600)
	}
	line("save %s", quote(""))
	if s.cfg.aof {
		fsync := s.cfg.fsync
		if fsync == "" {
			fsync = "always"
		}
		line("appendonly yes")
		line("appendfsync %s", fsync)
		if fsync != "always" {
			// CrashToMark needs the incr file MarkAOF named to stay the last one.
			line("auto-aof-rewrite-percentage 0")
			line("aof-load-truncated yes")
		}
	} else {
		line("appendonly no")
	}
	// A replica's full sync starts at once instead of after 5 s (the
	// default waits for more replicas to share one diskless transfer).
	line("repl-diskless-sync-delay 0")
	if s.cfg.replicaOf != "" {
		host, port, _ := net.SplitHostPort(s.cfg.replicaOf)
		line("replicaof %s %s", host, port)
		if s.cfg.password != "" {
			line("masterauth %s", quote(s.cfg.password))
		}
	}
	if s.cfg.password != "" {
		line("requirepass %s", quote(s.cfg.password))
	}
	for _, rule := range s.cfg.acl {
		rule = strings.TrimSpace(rule)
		if !strings.HasPrefix(rule, "user ") {
			rule = "user " + rule
		}
		line("%s", rule)
	}
	if s.cfg.cluster {
		line("cluster-enabled yes")
		line("cluster-config-file nodes.conf")
		line("cluster-node-timeout %d", s.cfg.nodeTimeout.Milliseconds())
		// A replica may be promoted however long its master link was down,
		// so a forced failover never stalls on a replica that lagged.
		line("cluster-replica-validity-factor 0")
		if s.cfg.password != "" && s.cfg.replicaOf == "" {
			// Any node may become a replica (CLUSTER REPLICATE, failover);
			// every node has the same password.
			line("masterauth %s", quote(s.cfg.password))
		}
	}
	return os.WriteFile(s.confPath(), []byte(b.String()), 0o600)
}

// quote quotes a value for redis.conf.
func quote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(v) + `"`
}

// readLog returns the server log and the process's stdout/stderr (where
// config errors go before the log file is open).
func (s *Server) readLog() []byte {
	logData, _ := os.ReadFile(s.logPath())
	out, _ := os.ReadFile(s.outPath())
	return append(logData, out...)
}

// logTail returns the last lines of the server's output, for failure messages.
func (s *Server) logTail() string {
	lines := strings.Split(strings.TrimRight(string(s.readLog()), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "--- tail of " + s.logPath() + " and " + s.outPath() + " ---\n" + strings.Join(lines, "\n")
}
