package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/durabus/durabus/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, redistest.LeakOptions()...)
}

// assertGone fails unless no process with pid exists any more.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("pid %d is not a process id", pid)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d still exists after stop (kill -0: %v)", pid, err)
	}
}

func TestStartAnswersAndStopLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var pid int
	t.Run("server", func(t *testing.T) {
		srv := redistest.Start(t)
		pid = srv.PID()
		if !strings.HasPrefix(srv.Addr(), "127.0.0.1:") || srv.Port() == 6379 {
			t.Fatalf("Addr() = %q, want a private loopback port", srv.Addr())
		}
		rdb := srv.Client(t)
		if err := rdb.Set(ctx, "durabus:k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := rdb.Get(ctx, "durabus:k").Result(); err != nil || got != "v" {
			t.Fatalf("GET = %q, %v; want v", got, err)
		}
		if _, err := os.Stat(srv.Dir() + "/redis.log"); err != nil {
			t.Errorf("no log in Dir(): %v", err)
		}
	})
	// The subtest's cleanup has run: the server must be gone.
	assertGone(t, pid)
}

func TestStopAndKillEndTheProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(*redistest.Server, testing.TB)
	}{
		{"Stop", (*redistest.Server).Stop},
		{"Kill", (*redistest.Server).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			pid := srv.PID()
			tc.stop(srv, t)
			assertGone(t, pid)
			if srv.Running() {
				t.Error("Running() = true after stop")
			}
			tc.stop(srv, t) // a second stop does nothing
		})
	}
}

func TestPasswordRequiredForCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithPassword("s3cret"))
	if srv.Password() != "s3cret" {
		t.Fatalf("Password() = %q", srv.Password())
	}
	anon := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer anon.Close()
	if err := anon.Set(ctx, "durabus:k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("unauthenticated SET: err = %v, want NOAUTH", err)
	}
	if err := srv.Client(t).Set(ctx, "durabus:k", "v", 0).Err(); err != nil {
		t.Fatalf("authenticated SET: %v", err)
	}
}

func TestACLUserLimitedToDurabusKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithACL("user app on >apppw ~durabus:* &durabus:* +@all"))
	app := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "app", Password: "apppw"})
	defer app.Close()
	if err := app.Set(ctx, "durabus:x", "1", 0).Err(); err != nil {
		t.Fatalf("SET durabus:x as app: %v", err)
	}
	if err := app.Set(ctx, "other:x", "1", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("SET other:x as app: err = %v, want NOPERM", err)
	}
}

func TestAOFDataSurvivesKillAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithAOF(), redistest.WithPassword("pw"))
	rdb := srv.Client(t)
	for i := range 100 {
		if err := rdb.RPush(ctx, "durabus:list", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	port, oldPID := srv.Port(), srv.PID()
	srv.Kill(t)
	assertGone(t, oldPID)
	srv.Restart(t)
	if srv.Port() != port || srv.PID() == oldPID {
		t.Fatalf("after Restart: port %d (was %d), pid %d (was %d)", srv.Port(), port, srv.PID(), oldPID)
	}
	// The old client reconnects to the same address.
	if n, err := rdb.LLen(ctx, "durabus:list").Result(); err != nil || n != 100 {
		t.Fatalf("after SIGKILL and restart: LLEN = %d, %v; want 100", n, err)
	}
	srv.Restart(t) // restarting a running server stops it first
	if n, err := rdb.LLen(ctx, "durabus:list").Result(); err != nil || n != 100 {
		t.Fatalf("after second restart: LLEN = %d, %v; want 100", n, err)
	}
}

func TestWithArgsReachTheServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "10mb"))
	got, err := srv.Client(t).ConfigGet(ctx, "maxmemory").Result()
	if err != nil || got["maxmemory"] != "10485760" {
		t.Fatalf("CONFIG GET maxmemory = %v, %v; want 10485760", got, err)
	}
}

func TestBadConfigFailsWithLogTail(t *testing.T) {
	t.Parallel()
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.Start(ft, redistest.WithArgs("--no-such-directive", "1"))
	}()
	<-done
	if !strings.Contains(ft.msg, "no-such-directive") {
		t.Fatalf("Fatal message does not show the log tail:\n%s", ft.msg)
	}
}

// fatalRecorder records the Fatal message instead of failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestClusterServesKeysInAllSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	if len(c.Addrs()) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("Addrs() = %v, want 3 nodes", c.Addrs())
	}
	cc := c.Client(t)
	const n = 100 // spread over many slots, so every master gets some
	for i := range n {
		if err := cc.Set(ctx, fmt.Sprintf("durabus:%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET durabus:%d: %v", i, err)
		}
	}
	for i := range n {
		if got, err := cc.Get(ctx, fmt.Sprintf("durabus:%d", i)).Int(); err != nil || got != i {
			t.Fatalf("GET durabus:%d = %d, %v", i, got, err)
		}
	}
	for _, node := range c.Nodes() {
		size, err := node.Client(t).DBSize(ctx).Result()
		if err != nil || size == 0 {
			t.Errorf("node %s holds %d keys (%v); want some", node.Addr(), size, err)
		}
	}
}

// proxied returns a client that reaches srv through a new proxy, with short
// timeouts and no retries so faults show up as errors at once.
func proxied(t *testing.T) (*redistest.Proxy, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	px := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr:          px.Addr(),
		DialTimeout:   time.Second,
		ReadTimeout:   200 * time.Millisecond,
		WriteTimeout:  200 * time.Millisecond,
		MaxRetries:    -1,
		DialerRetries: 1,
	})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}
	return px, rdb
}

func TestProxyBlackholeTimesOutAndHealRestores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	px, rdb := proxied(t)
	px.Blackhole(t)
	err := rdb.Ping(ctx).Err()
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("PING through a black hole: err = %v, want a read timeout", err)
	}
	px.Heal(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Heal: %v", err)
	}
}

func TestProxyResetPeerFailsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	px, rdb := proxied(t)
	px.ResetPeer(t)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING on a reset connection succeeded")
	}
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING on a new connection after ResetPeer succeeded")
	}
	px.Heal(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Heal: %v", err)
	}
}

func TestProxyLatencyAndBandwidthLetTrafficThrough(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	px, rdb := proxied(t)
	px.Latency(t, 50*time.Millisecond, 0)
	px.Latency(t, 80*time.Millisecond, 10*time.Millisecond) // replaces the first
	start := time.Now()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with latency: %v", err)
	}
	if took := time.Since(start); took < 70*time.Millisecond {
		t.Errorf("PING with 80±10ms latency took %v", took)
	}
	px.Heal(t)
	px.Bandwidth(t, 1000)
	if err := rdb.Set(ctx, "durabus:big", strings.Repeat("x", 10_000), 0).Err(); err != nil {
		t.Fatalf("SET with bandwidth limit: %v", err)
	}
}

func TestProxyDisableRefusesAndEnableAccepts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	px, rdb := proxied(t)
	px.Disable(t)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through a disabled proxy succeeded")
	}
	if c, err := net.Dial("tcp", px.Addr()); err == nil {
		c.Close()
		t.Fatal("disabled proxy accepted a connection")
	}
	px.Enable(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Enable: %v", err)
	}
}
