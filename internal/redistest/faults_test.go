package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
)

// waitFor polls cond every 20 ms until it returns nil, and fails the test
// with its last error after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMissingRedisServerFailsWithInstallHint(t *testing.T) {
	// Not parallel: it empties PATH for the whole process while it runs.
	t.Setenv("PATH", t.TempDir())
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		redistest.Start(ft, redistest.WithAOFEverySec())
	}()
	<-done
	if !strings.Contains(ft.msg, "redis-server not found") || !strings.Contains(ft.msg, "apt-get install -y redis-server") {
		t.Fatalf("Fatal message does not say how to install redis-server:\n%s", ft.msg)
	}
}

func TestPauseFreezesAndResumeRestores(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{
		Addr:        srv.Addr(),
		ReadTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Pause(t)
	if !srv.Paused() || !srv.Running() {
		t.Fatalf("after Pause: Paused() = %v, Running() = %v; want true, true", srv.Paused(), srv.Running())
	}
	var nerr net.Error
	if err := rdb.Ping(ctx).Err(); !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("PING to a paused server: err = %v, want a read timeout", err)
	}
	srv.Resume(t)
	if srv.Paused() {
		t.Fatal("Paused() = true after Resume")
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	// A paused server stops on SIGTERM (Stop fails the test if it needs
	// SIGKILL), and restarts.
	srv.Pause(t)
	pid := srv.PID()
	srv.Stop(t)
	assertGone(t, pid)
	if srv.Paused() || srv.Running() {
		t.Fatalf("after Stop: Paused() = %v, Running() = %v", srv.Paused(), srv.Running())
	}
}

// TestPauseStoppedServerFails checks that Pause of a server that is not
// running fails the test instead of signalling a stale pid.
func TestPauseStoppedServerFails(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop(t)
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Pause(ft)
	}()
	<-done
	if !strings.Contains(ft.msg, "not running") {
		t.Fatalf("Pause of a stopped server: Fatal message %q, want \"not running\"", ft.msg)
	}
}

func TestReplicaLagsWhilePausedAndCatchesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	master := redistest.Start(t, redistest.WithPassword("pw"))
	replica := redistest.StartReplica(t, master)
	t.Logf("master and replica in sync %v after start", time.Since(start))
	if got := replica.Role(t); got != "slave" {
		t.Fatalf("replica role %q", got)
	}
	if got := master.Role(t); got != "master" {
		t.Fatalf("master role %q", got)
	}
	m, r := master.Client(t), replica.Client(t)
	for round := range 2 { // the second round reuses the link proxy
		before, lagged := fmt.Sprintf("durabus:before%d", round), fmt.Sprintf("durabus:lagged%d", round)
		if err := m.Set(ctx, before, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		replica.PauseReplication(t)
		if got, err := r.Get(ctx, before).Result(); err != nil || got != "v" {
			t.Fatalf("round %d: replica GET %s = %q, %v; writes before PauseReplication must be there", round, before, got, err)
		}
		if err := m.Set(ctx, lagged, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		// The replica does not acknowledge the write, although its link
		// stays up.
		if n, err := m.Wait(ctx, 1, 300*time.Millisecond).Result(); err != nil || n != 0 {
			t.Fatalf("round %d: WAIT 1 = %d, %v; want 0 replicas to acknowledge", round, n, err)
		}
		if n, err := r.Exists(ctx, lagged).Result(); err != nil || n != 0 {
			t.Fatalf("round %d: replica has %s (EXISTS = %d, %v) while paused", round, lagged, n, err)
		}
		ri, err := r.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(ri, "master_link_status:up") {
			t.Fatalf("round %d: paused replica's link is not up: %v\n%s", round, err, ri)
		}
		replica.ResumeReplication(t)
		replica.WaitInSync(t)
		if got, err := r.Get(ctx, lagged).Result(); err != nil || got != "v" {
			t.Fatalf("round %d: after resume, replica GET %s = %q, %v", round, lagged, got, err)
		}
	}
}

func TestSentinelFailsOverToLaggingReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	master := redistest.Start(t, redistest.WithPassword("pw"))
	replica := redistest.StartReplica(t, master)
	start := time.Now()
	g := redistest.StartSentinels(t, master, 1)
	t.Logf("1 sentinel ready in %v", time.Since(start))
	if got := g.MasterAddr(t); got != master.Addr() {
		t.Fatalf("sentinel names master %s, want %s", got, master.Addr())
	}
	fc := g.FailoverClient(t)
	if err := fc.Set(ctx, "durabus:before", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the FailoverClient: %v", err)
	}
	replica.PauseReplication(t)
	// Acknowledged by the master, never seen by the replica.
	if err := fc.Set(ctx, "durabus:lost", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := replica.Client(t).Exists(ctx, "durabus:lost").Result(); err != nil || n != 0 {
		t.Fatalf("lagging replica has durabus:lost (EXISTS = %d, %v)", n, err)
	}
	killed := time.Now()
	master.Kill(t)
	got := g.WaitFailover(t, master.Addr())
	t.Logf("failover %v after kill -9 of the master", time.Since(killed))
	if got != replica.Addr() {
		t.Fatalf("new master %s, want the replica %s", got, replica.Addr())
	}
	if role := replica.Role(t); role != "master" {
		t.Fatalf("promoted replica has role %q", role)
	}
	waitFor(t, 30*time.Second, "SET through the FailoverClient after failover", func() error {
		return fc.Set(ctx, "durabus:after", "v", 0).Err()
	})
	t.Logf("FailoverClient writes %v after kill -9", time.Since(killed))
	if v, err := replica.Client(t).Get(ctx, "durabus:after").Result(); err != nil || v != "v" {
		t.Fatalf("new master GET durabus:after = %q, %v: the FailoverClient wrote elsewhere", v, err)
	}
	if v, err := fc.Get(ctx, "durabus:before").Result(); err != nil || v != "v" {
		t.Fatalf("GET durabus:before = %q, %v; want v", v, err)
	}
	if n, err := fc.Exists(ctx, "durabus:lost").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS durabus:lost = %d, %v; the failover to the lagging replica should have lost it", n, err)
	}
	replica.ResumeReplication(t) // promoted: nothing to check
}

func TestThreeSentinelsFailOverFromPausedMaster(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	start := time.Now()
	g := redistest.StartSentinels(t, master, 3)
	t.Logf("3 sentinels ready in %v", time.Since(start))
	if len(g.Addrs()) != 3 || len(g.Nodes()) != 3 || g.MasterName() != redistest.SentinelMasterName {
		t.Fatalf("Addrs() = %v, MasterName() = %q", g.Addrs(), g.MasterName())
	}
	paused := time.Now()
	master.Pause(t)
	if got := g.WaitFailover(t, master.Addr()); got != replica.Addr() {
		t.Fatalf("new master %s, want the replica %s", got, replica.Addr())
	}
	t.Logf("failover %v after SIGSTOP of the master", time.Since(paused))
	master.Resume(t) // comes back as a stale master until Sentinel demotes it
}

func TestFillMemoryReachesMaxmemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	srv.SetMaxMemory(t, 4<<20, "noeviction")
	if n := srv.FillMemory(t, "durabus:fill:"); n == 0 {
		t.Fatal("FillMemory wrote nothing under a 4 MiB limit")
	}
	if err := rdb.Set(ctx, "durabus:k", strings.Repeat("x", 1024), 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET at maxmemory with noeviction: err = %v, want OOM", err)
	}
	srv.SetMaxMemory(t, 4<<20, "allkeys-lru")
	if got, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result(); err != nil || got["maxmemory-policy"] != "allkeys-lru" {
		t.Fatalf("CONFIG GET maxmemory-policy = %v, %v", got, err)
	}
	if err := rdb.Set(ctx, "durabus:k", "v", 0).Err(); err != nil {
		t.Fatalf("SET at maxmemory with allkeys-lru: %v", err)
	}
	srv.FillMemory(t, "durabus:fill2:")
	stats, err := rdb.Info(ctx, "stats").Result()
	if err != nil || strings.Contains(stats, "evicted_keys:0\r") {
		t.Fatalf("no evictions after FillMemory with allkeys-lru: %v\n%s", err, stats)
	}
}

func TestCrashToMarkLosesWritesAfterTheMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithAOFEverySec(), redistest.WithPassword("pw"))
	rdb := srv.Client(t)
	if got, err := rdb.ConfigGet(ctx, "appendfsync").Result(); err != nil || got["appendfsync"] != "everysec" {
		t.Fatalf("CONFIG GET appendfsync = %v, %v; want everysec", got, err)
	}
	const n = 200
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("durabus:before:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	mark := srv.MarkAOF(t)
	if !strings.HasSuffix(mark.File, ".incr.aof") || mark.Size == 0 {
		t.Fatalf("MarkAOF = %+v, want a non-empty appendonlydir/*.incr.aof", mark)
	}
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("durabus:after:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	pid := srv.PID()
	start := time.Now()
	cut := srv.CrashToMark(t, mark)
	t.Logf("crash, cut of %d bytes and restart took %v", cut, time.Since(start))
	assertGone(t, pid)
	if cut == 0 {
		t.Fatal("CrashToMark cut nothing, but writes followed the mark")
	}
	// The old client reconnects to the restarted server.
	for i := range n {
		if got, err := rdb.Get(ctx, fmt.Sprintf("durabus:before:%d", i)).Int(); err != nil || got != i {
			t.Fatalf("durabus:before:%d = %d, %v after the crash; writes before the mark must survive", i, got, err)
		}
	}
	if size, err := rdb.DBSize(ctx).Result(); err != nil || size != n {
		t.Fatalf("DBSIZE = %d, %v after the crash; want %d (none of the writes after the mark)", size, err, n)
	}
}

func TestSnapshotRestartLosesLaterWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	if err := rdb.Set(ctx, "durabus:saved", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Snapshot(t)
	if err := rdb.Set(ctx, "durabus:unsaved", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	srv.Restart(t)
	if got, err := rdb.Get(ctx, "durabus:saved").Result(); err != nil || got != "v" {
		t.Fatalf("GET durabus:saved = %q, %v after restart; want the snapshot's value", got, err)
	}
	if n, err := rdb.Exists(ctx, "durabus:unsaved").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS durabus:unsaved = %d, %v after restart; want 0", n, err)
	}
}
