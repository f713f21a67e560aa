package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

type Tick struct {
	N int `json:"n"`
}

func (Tick) EventType() string { return "tick" }

func redisTransport(t testing.TB, rdb redis.UniversalClient, opts ...redistransport.Option) *redistransport.Transport {
	t.Helper()
	tr, err := redistransport.New(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// countingHandler records, per topic, which seqs reached the handler and
// flags duplicates and disorder.
type countingHandler struct {
	t    testing.TB
	mu   sync.Mutex
	last map[string]uint64
	n    map[string]int
}

func newCounting(t testing.TB) *countingHandler {
	return &countingHandler{t: t, last: map[string]uint64{}, n: map[string]int{}}
}

func (c *countingHandler) Handle(_ context.Context, m *bus.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if want := c.last[m.Topic] + 1; m.Position.Seq != want {
		c.t.Errorf("topic %s: got seq %d, want %d (duplicate or out of order)", m.Topic, m.Position.Seq, want)
	}
	c.last[m.Topic] = m.Position.Seq
	c.n[m.Topic]++
	return nil
}

func (c *countingHandler) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[topic]
}

// logCounter counts log records whose message contains a substring.
type logCounter struct {
	slog.Handler
	sub string
	n   *atomic.Int64
}

func (l logCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.sub) {
		l.n.Add(1)
	}
	return nil
}
func (l logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l logCounter) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logCounter) WithGroup(string) slog.Handler            { return l }

func TestRedisNothingLostAcrossConnectionKillsAndABlackhole(t *testing.T) {
	// 3 topics × 5 000 events published at a steady rate while the
	// subscriber's Pub/Sub connection is killed 10 times and blackholed once.
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	pubRdb := srv.Client(t)
	subRdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { subRdb.Close() })

	pub, _ := bus.New(redisTransport(t, pubRdb))
	var reconnectLogs atomic.Int64
	logger := slog.New(logCounter{sub: "re-established", n: &reconnectLogs})
	sub, _ := bus.New(redisTransport(t, subRdb, redistransport.WithProbe(200*time.Millisecond, 200*time.Millisecond)),
		bus.WithLogger(logger),
		bus.WithFollowerOptions(replay.WithHeadCheck(200*time.Millisecond), replay.WithBackoff(10*time.Millisecond, 200*time.Millisecond, 2)))
	h := newCounting(t)
	topics := []string{"chaos.a", "chaos.b", "chaos.c"}
	for _, topic := range topics {
		if _, err := sub.Handle(topic, h); err != nil {
			t.Fatal(err)
		}
	}
	start(t, sub)

	const perTopic = 5000
	ctx := context.Background()
	done := make(chan struct{})
	go func() { // the fault schedule
		defer close(done)
		for i := range 11 {
			time.Sleep(350 * time.Millisecond)
			if i == 5 {
				proxy.Blackhole(t)
				time.Sleep(time.Second)
				proxy.Heal(t)
				continue
			}
			if err := pubRdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
				t.Errorf("CLIENT KILL: %v", err)
			}
		}
	}()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < perTopic; i += 2 {
		<-tick.C
		for _, topic := range topics {
			for range 2 {
				if _, err := pub.Publish(ctx, Tick{N: i}, bus.ToTopic(topic)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	<-done
	for _, topic := range topics {
		waitFor(t, "all of "+topic, func() bool { return h.count(topic) >= perTopic })
	}
	time.Sleep(100 * time.Millisecond)
	var delivered uint64
	var stats replay.Stats
	for _, s := range sub.Status() {
		delivered += s.Stats.Delivered
		stats.Reconnects += s.Stats.Reconnects
		stats.Replayed += s.Stats.Replayed
		stats.Duplicates += s.Stats.Duplicates
		stats.LossReports += s.Stats.LossReports
	}
	t.Logf("published %d, delivered %d, replayed %d, duplicates dropped %d, reconnects %d, reconnect log lines %d",
		perTopic*len(topics), delivered, stats.Replayed, stats.Duplicates, stats.Reconnects, reconnectLogs.Load())
	if delivered != perTopic*uint64(len(topics)) {
		t.Errorf("delivered %d, want %d", delivered, perTopic*len(topics))
	}
	if stats.LossReports != 0 {
		t.Errorf("%d loss reports, want 0", stats.LossReports)
	}
	// A kill that lands while a subscription is still re-dialling after
	// the previous fault costs no reconnect of its own: on a loaded machine
	// fewer than 11 are seen, so only "at least one each" is asserted.
	if stats.Reconnects < uint64(len(topics)) {
		t.Errorf("%d reconnects seen by %d subscriptions, want at least one each", stats.Reconnects, len(topics))
	}
	if reconnectLogs.Load() != int64(stats.Reconnects) {
		t.Errorf("%d reconnect log lines for %d reconnects", reconnectLogs.Load(), stats.Reconnects)
	}
}

func TestRedisSinceReplaysExactlyTheEventsFromATime(t *testing.T) {
	srv := redistest.Start(t)
	tr := redisTransport(t, srv.Client(t))
	pub, _ := bus.New(tr)
	ctx := context.Background()
	var times []time.Time
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		e := Tick{N: i}
		if _, err := pub.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Read back the publish times from the envelopes.
	b, _ := bus.New(tr)
	for m, err := range b.Events(ctx, "tick", bus.StartAt(bus.Beginning())) {
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, m.Time)
		if len(times) == int(mustHead(t, tr, "tick").Seq) {
			break
		}
	}
	mid := times[len(times)/2]
	for _, cut := range []time.Time{mid, mid.Add(-time.Nanosecond), mid.Add(time.Nanosecond), mid.Truncate(time.Millisecond)} {
		want := 0
		for _, tm := range times {
			if !tm.Before(cut) {
				want++
			}
		}
		got := 0
		for m, err := range b.Events(ctx, "tick", bus.StartAt(bus.Since(cut))) {
			if err != nil {
				t.Fatal(err)
			}
			if m.Time.Before(cut) {
				t.Fatalf("since %v: got an event of %v", cut, m.Time)
			}
			got++
			if m.Position.Seq == uint64(len(times)) {
				break
			}
		}
		if got != want {
			t.Errorf("since %v: got %d events, want %d (of %d over 3 s)", cut, got, want, len(times))
		}
	}
}

// loseLast deletes the last n entries of topic's log and sets its meta seq
// to seq: what a Redis that lost acknowledged writes holds (a crash with
// appendfsync everysec, a failover to a lagging replica). It returns the
// deleted entries, newest first.
func loseLast(t testing.TB, rdb *redis.Client, topic string, n int64, seq uint64) []redis.XMessage {
	t.Helper()
	ctx := context.Background()
	log := "durabus:{" + topic + "}:log"
	entries, err := rdb.XRevRangeN(ctx, log, "+", "-", n).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		rdb.XDel(ctx, log, e.ID)
	}
	rdb.HSet(ctx, "durabus:{"+topic+"}:meta", "seq", seq)
	return entries
}

func mustHead(t testing.TB, tr transport.Transport, topic string) transport.Position {
	t.Helper()
	p, err := tr.Head(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRedisTrimmedBacklogReportsTheExactLoss(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb, redistransport.WithMaxLen(100))
	ctx := context.Background()
	pub, _ := bus.New(tr)
	publishN := func(n int) {
		for i := range n {
			if _, err := pub.Publish(ctx, Tick{N: i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var losses []*replay.LossError
	var mu sync.Mutex
	h := newCounting(t)
	consume := func(until uint64) {
		b, _ := bus.New(tr, bus.WithConsumer("trim"), bus.WithOnLoss(func(e *replay.LossError) { mu.Lock(); losses = append(losses, e); mu.Unlock() }), fast)
		b.Handle("tick", h, bus.StartAt(bus.Beginning()))
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		waitFor(t, "consumer", func() bool { st := b.Status()[0].Stats; return len(st.Topics) == 1 && st.Topics[0].Cursor.Seq == until })
		b.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	publishN(10)
	consume(10)
	publishN(500) // while the subscriber is away
	oldest, err := rdb.XRangeN(ctx, "durabus:{tick}:log", "-", "+", 1).Result()
	if err != nil || len(oldest) != 1 {
		t.Fatal(oldest, err)
	}
	first, _ := strconv.ParseUint(oldest[0].Values["seq"].(string), 10, 64)
	h.last["tick"] = first - 1 // the handler expects the oldest held event next
	consume(510)
	if len(losses) != 1 || losses[0].From != 11 || losses[0].To != first-1 || losses[0].Reason != replay.Trimmed {
		t.Fatalf("losses %v, want one trimmed loss of seq 11..%d (the backlog kept %d..510)", losses, first-1, first)
	}
	t.Logf("reported: %v", losses[0])
}

func TestRedisPatternCoversTopicsCreatedBeforeAndAfter(t *testing.T) {
	srv := redistest.Start(t)
	tr := redisTransport(t, srv.Client(t))
	ctx := context.Background()
	pub, _ := bus.New(tr)
	pub.Publish(ctx, Tick{N: 1}, bus.ToTopic("user.1.notifications"))
	sub, _ := bus.New(tr, fast)
	h := newCounting(t)
	sub.Handle("user.*.notifications", h, bus.StartAt(bus.Beginning()))
	start(t, sub)
	pub.Publish(ctx, Tick{N: 2}, bus.ToTopic("user.2.notifications"))
	pub.Publish(ctx, Tick{N: 3}, bus.ToTopic("user.1.notifications"))
	pub.Publish(ctx, Tick{N: 4}, bus.ToTopic("user.1.settings"))
	waitFor(t, "both users", func() bool { return h.count("user.1.notifications") == 2 && h.count("user.2.notifications") == 1 })
	if h.count("user.1.settings") != 0 {
		t.Error("a topic outside the pattern was delivered")
	}
}

// The durable worker test runs the test binary again as a worker process:
// it appends every handled seq to a file, and is killed with SIGKILL.
const workerEnv = "DURABUS_TEST_WORKER"

func init() {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(runWorker(spec))
	}
}

func runWorker(spec string) int {
	addr, out, _ := strings.Cut(spec, " ")
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	tr, _ := redistransport.New(rdb)
	b, _ := bus.New(tr, bus.WithConsumer("worker"), bus.WithFollowerOptions(replay.WithCheckpointEvery(50, 50*time.Millisecond)))
	b.Handle("jobs", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		_, err := fmt.Fprintln(f, m.Position.Seq)
		return err
	}), bus.StartAt(bus.Beginning()))
	if err := b.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestRedisDurableWorkerKilledWithSIGKILLResumesFromItsCheckpoint(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	pub, _ := bus.New(tr)
	out := t.TempDir() + "/handled"
	startWorker := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), workerEnv+"="+srv.Addr()+" "+out)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	handled := func() []uint64 {
		f, err := os.Open(out)
		if err != nil {
			return nil
		}
		defer f.Close()
		var seqs []uint64
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			n, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err == nil {
				seqs = append(seqs, n)
			}
		}
		return seqs
	}
	ctx := context.Background()
	const total = 3000
	worker := startWorker()
	published := 0
	publish := func(n int) {
		for range n {
			if _, err := pub.Publish(ctx, Tick{N: published}, bus.ToTopic("jobs")); err != nil {
				t.Fatal(err)
			}
			published++
			if published%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	publish(1500)
	waitFor(t, "the worker to handle some", func() bool { return len(handled()) > 700 })
	if err := worker.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	worker.Wait()
	beforeKill := handled()
	cp, _ := rdb.HGet(ctx, "durabus:consumer:worker", "jobs").Result()
	publish(total - 1500) // while it is down
	worker = startWorker()
	t.Cleanup(func() { worker.Process.Kill(); worker.Wait() })
	waitFor(t, "every job", func() bool { s := handled(); return len(s) > 0 && s[len(s)-1] == total })

	seen := make(map[uint64]int)
	for _, s := range handled() {
		seen[s]++
	}
	dups := 0
	for seq := uint64(1); seq <= total; seq++ {
		switch n := seen[seq]; {
		case n == 0:
			t.Errorf("seq %d never handled", seq)
		case n > 1:
			dups += n - 1
		}
	}
	cpPos, _ := transport.ParsePosition(cp)
	wantDups := int(beforeKill[len(beforeKill)-1] - cpPos.Seq)
	t.Logf("published %d; killed after %d handled (checkpoint at seq %d); handled %d in all: %d lost, %d duplicates (the unflushed tail)",
		total, len(beforeKill), cpPos.Seq, len(handled()), 0, dups)
	if dups != wantDups {
		t.Errorf("%d duplicates, want exactly the %d events after the checkpoint", dups, wantDups)
	}
}

func TestRedisRolledBackWritesAreReportedAndReusedSeqsDelivered(t *testing.T) {
	// Simulate what a crash with appendfsync everysec does: the last 5
	// entries and their seqs vanish, and new events get those seqs again.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	var mu sync.Mutex
	var losses []*replay.LossError
	sub, _ := bus.New(tr, fast, bus.WithOnLoss(func(e *replay.LossError) { mu.Lock(); losses = append(losses, e); mu.Unlock() }))
	var got []int
	bus.Subscribe(sub, func(_ context.Context, e *Tick) error { mu.Lock(); got = append(got, e.N); mu.Unlock(); return nil })
	start(t, sub)
	for i := 1; i <= 10; i++ {
		pub.Publish(ctx, Tick{N: i})
	}
	waitFor(t, "10 ticks", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 10 })
	loseLast(t, rdb, "tick", 5, 5)
	for i := 11; i <= 13; i++ { // get seqs 6, 7, 8 again
		pub.Publish(ctx, Tick{N: i})
	}
	waitFor(t, "the new ticks", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 13 })
	mu.Lock()
	if len(losses) != 1 || losses[0].Reason != replay.RolledBack || losses[0].From != 6 || losses[0].To != 10 {
		t.Errorf("losses = %v, want one rollback of seq 6..10", losses)
	}
	if fmt.Sprint(got[10:]) != "[11 12 13]" {
		t.Errorf("after the rollback got %v, want [11 12 13]", got[10:])
	}
	mu.Unlock()

	// Rolled back with nothing published since: the head check sees it.
	loseLast(t, rdb, "tick", 2, 6)
	waitFor(t, "the head check's report", func() bool { mu.Lock(); defer mu.Unlock(); return len(losses) == 2 })
	mu.Lock()
	if l := losses[1]; l.Reason != replay.RolledBack || l.From != 7 || l.To != 8 {
		t.Errorf("second loss = %v, want rollback of 7..8", l)
	}
	mu.Unlock()
	pub.Publish(ctx, Tick{N: 14}) // seq 7 again
	waitFor(t, "tick 14", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 14 && got[13] == 14 })
}

func TestRedisLostMetaHashIsNotALoss(t *testing.T) {
	// The meta hash is evicted while the log survives: the next publish
	// starts a new epoch that continues the seqs. Subscribers go on without
	// a loss report and without re-reading the backlog.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	var losses atomic.Int64
	sub, _ := bus.New(tr, fast, bus.WithOnLoss(func(*replay.LossError) { losses.Add(1) }))
	h := newCounting(t)
	sub.Handle("tick", h)
	start(t, sub)
	for i := range 50 {
		pub.Publish(ctx, Tick{N: i})
	}
	waitFor(t, "50", func() bool { return h.count("tick") == 50 })
	rdb.Del(ctx, "durabus:{tick}:meta")
	pos, err := pub.Publish(ctx, Tick{N: 50})
	if err != nil || pos.Seq != 51 {
		t.Fatalf("publish after the meta hash was lost: %v, %v; want seq 51", pos, err)
	}
	waitFor(t, "51", func() bool { return h.count("tick") == 51 })
	time.Sleep(100 * time.Millisecond) // room for wrong re-deliveries
	if h.count("tick") != 51 || losses.Load() != 0 {
		t.Errorf("handled %d with %d loss reports, want 51 and none", h.count("tick"), losses.Load())
	}
}
