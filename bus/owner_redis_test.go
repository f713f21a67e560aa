package bus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
)

// seqLog records the seqs a handler saw, per bus.
type seqLog struct {
	mu   sync.Mutex
	seqs []uint64
}

func (l *seqLog) Handle(_ context.Context, m *bus.Message) error {
	l.mu.Lock()
	l.seqs = append(l.seqs, m.Position.Seq)
	l.mu.Unlock()
	return nil
}

func (l *seqLog) get() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs)
}

// lossLog records loss reports.
type lossLog struct {
	mu     sync.Mutex
	losses []*replay.LossError
}

func (l *lossLog) add(e *replay.LossError) {
	l.mu.Lock()
	l.losses = append(l.losses, e)
	l.mu.Unlock()
}
func (l *lossLog) get() []*replay.LossError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.losses)
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestRedisDurableConsumerSavesItsStartBeforeReadyForEveryStartKind(t *testing.T) {
	// Each start kind: 5 events exist, the consumer starts and stops at
	// once (before handling anything, so before any checkpoint of a handled
	// event), 10 are published while it is away, and the restarted consumer
	// gets exactly what its first start promised.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	for _, tc := range []struct {
		name  string
		start func() replay.Start
		want  []uint64
	}{
		{"new", bus.NewOnly, seqRange(6, 15)},
		{"beginning", bus.Beginning, seqRange(1, 15)},
		{"since", func() replay.Start { return bus.Since(time.Now()) }, seqRange(6, 15)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "start." + tc.name
			for i := range 5 {
				if _, err := pub.Publish(ctx, Tick{N: i}, bus.ToTopic(topic)); err != nil {
					t.Fatal(err)
				}
			}
			consumer := "owner-" + tc.name
			first, _ := bus.New(tr, fast, bus.WithConsumer(consumer))
			never := bus.HandlerFunc(func(context.Context, *bus.Message) error { select {} })
			if tc.name == "beginning" {
				never = bus.HandlerFunc(func(context.Context, *bus.Message) error { return fmt.Errorf("not now") })
			}
			first.Handle(topic, never, bus.StartAt(tc.start()))
			stop := startStoppable(t, first)
			if n, _ := rdb.HExists(ctx, "durabus:consumer:"+consumer, topic).Result(); !n {
				t.Fatalf("Ready before the start position of %s was saved", consumer)
			}
			stop()

			for i := range 10 {
				pub.Publish(ctx, Tick{N: 5 + i}, bus.ToTopic(topic))
			}
			var got seqLog
			again, _ := bus.New(tr, fast, bus.WithConsumer(consumer))
			again.Handle(topic, &got, bus.StartAt(tc.start()))
			start(t, again)
			waitFor(t, "the events promised", func() bool { return len(got.get()) >= len(tc.want) })
			if s := got.get(); !slices.Equal(s, tc.want) {
				t.Errorf("restarted consumer handled seqs %v, want %v", s, tc.want)
			}
		})
	}
}

func TestRedisSecondProcessWithOneDurableNameWaitsAsAStandby(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	pub, _ := bus.New(redisTransport(t, rdb))
	lease := bus.WithFollowerOptions(replay.WithLease(time.Second))
	newOwner := func(h bus.Handler) *bus.Bus {
		b, _ := bus.New(redisTransport(t, rdb), fast, lease, bus.WithConsumer("billing"))
		b.Handle("jobs", h, bus.StartAt(bus.Beginning()))
		return b
	}
	var first, second seqLog
	stopOwner := startStoppable(t, newOwner(&first))
	standby := newOwner(&second)
	done2 := make(chan error, 1)
	go func() { done2 <- standby.Run(ctx) }()
	t.Cleanup(func() { standby.Close(); <-done2 })

	for i := range 100 {
		pub.Publish(ctx, Tick{N: i}, bus.ToTopic("jobs"))
	}
	waitFor(t, "the owner to handle 100", func() bool { return len(first.get()) == 100 })
	if n := len(second.get()); n != 0 {
		t.Fatalf("the standby handled %d events while the owner held the consumer", n)
	}
	stopOwner() // releases the lease: the standby takes over at once
	for i := range 100 {
		pub.Publish(ctx, Tick{N: 100 + i}, bus.ToTopic("jobs"))
	}
	waitFor(t, "the standby to take over", func() bool { return len(second.get()) == 100 })
	all := append(first.get(), second.get()...)
	if !slices.Equal(all, seqRange(1, 200)) {
		t.Errorf("handled %v, want seqs 1..200 once each, in order", all)
	}
}

func TestRedisRolledBackHeadDeliversWhatTheBacklogHoldsAtReusedSeqs(t *testing.T) {
	// The minimal case: 10 published and handled; the last 5 are
	// lost; seqs 6 and 7 are written again without a live frame.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	var losses lossLog
	var got seqLog
	sub, _ := bus.New(tr, fast, bus.WithOnLoss(losses.add))
	sub.Handle("tick", &got)
	start(t, sub)
	for i := range 10 {
		pub.Publish(ctx, Tick{N: i})
	}
	waitFor(t, "10", func() bool { return len(got.get()) == 10 })
	env := loseLast(t, rdb, "tick", 5, 5)[0].Values["e"]
	rdb.XAdd(ctx, redisXAdd{"durabus:{tick}:log", 6, env}.args())
	rdb.XAdd(ctx, redisXAdd{"durabus:{tick}:log", 7, env}.args())
	rdb.HSet(ctx, "durabus:{tick}:meta", "seq", 7)
	waitFor(t, "the events at the reused seqs", func() bool { return len(got.get()) == 12 })
	if s := got.get(); !slices.Equal(s[10:], []uint64{6, 7}) {
		t.Errorf("after the rollback handled %v, want [6 7]", s[10:])
	}
	ls := losses.get()
	if len(ls) != 1 || ls[0].Reason != replay.RolledBack || ls[0].From != 6 || ls[0].To != 10 {
		t.Errorf("losses = %v, want one RolledBack 6..10 (the events gone from Redis)", ls)
	}
}

func TestRedisEpochChurnNeverHandsAnEntryTwice(t *testing.T) {
	// The meta hash is lost and remade again and again (eviction does
	// this): the log goes on, so nothing is lost and nothing repeats.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	var losses lossLog
	var got seqLog
	sub, _ := bus.New(tr, fast, bus.WithOnLoss(losses.add))
	sub.Handle("tick", &got)
	start(t, sub)
	n := 0
	for round := range 20 {
		for range 5 {
			pub.Publish(ctx, Tick{N: n})
			n++
		}
		rdb.Del(ctx, "durabus:{tick}:meta")
		if round%2 == 0 {
			pub.Publish(ctx, Tick{N: n})
			n++
			rdb.Del(ctx, "durabus:{tick}:meta")
		}
	}
	pub.Publish(ctx, Tick{N: n})
	n++
	waitFor(t, "every event", func() bool { return len(got.get()) >= n })
	if s := got.get(); !slices.Equal(s, seqRange(1, uint64(n))) {
		t.Errorf("handled %d events %v, want seqs 1..%d once each", len(s), s, n)
	}
	if ls := losses.get(); len(ls) != 0 {
		t.Errorf("losses = %v, want none", ls)
	}
}

// stoppedAtFive runs the durable consumer name on "tick" from the
// beginning, publishes 5 events, waits until it handled them and stops
// it. It returns the publisher, and run, which makes the consumer again.
func stoppedAtFive(t *testing.T, rdb redis.UniversalClient, name string) (pub *bus.Bus, run func(bus.Handler, *lossLog) *bus.Bus) {
	t.Helper()
	pub, _ = bus.New(redisTransport(t, rdb))
	run = func(h bus.Handler, losses *lossLog) *bus.Bus {
		b, _ := bus.New(redisTransport(t, rdb), fast, bus.WithConsumer(name), bus.WithOnLoss(losses.add))
		b.Handle("tick", h, bus.StartAt(bus.Beginning()))
		return b
	}
	var first seqLog
	var l1 lossLog
	stop := startStoppable(t, run(&first, &l1))
	for i := range 5 {
		pub.Publish(context.Background(), Tick{N: i})
	}
	waitFor(t, "5", func() bool { return len(first.get()) == 5 })
	stop()
	return pub, run
}

func TestRedisNewLogThatGoesOnAtTheCursorsSeqIsReported(t *testing.T) {
	// A durable consumer stops at seq 5. The log and its meta hash are
	// evicted; a new log is made (a new epoch, seqs from 1) and loses its
	// first five entries, so it starts at the seq after the cursor, with
	// later stream ids: by seqs alone it looks like the cursor's log going
	// on. Its lineage record says the cursor's epoch never wrote to it.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	pub, run := stoppedAtFive(t, rdb, "lineage")
	rdb.Del(ctx, "durabus:{tick}:log", "durabus:{tick}:meta")
	for i := range 10 {
		if _, err := pub.Publish(ctx, Tick{N: 5 + i}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := rdb.XRangeN(ctx, "durabus:{tick}:log", "-", "+", 5).Result()
	if err != nil || len(old) != 5 {
		t.Fatalf("XRANGE: %v %v", old, err)
	}
	for _, e := range old {
		rdb.XDel(ctx, "durabus:{tick}:log", e.ID)
	}
	var second seqLog
	var l2 lossLog
	start(t, run(&second, &l2))
	waitFor(t, "the new log's events", func() bool { return len(second.get()) == 5 })
	waitFor(t, "the report", func() bool { return len(l2.get()) > 0 })
	if ls := l2.get(); ls[0].Reason != replay.EpochChanged || ls[0].From != 6 || ls[0].To != 0 {
		t.Errorf("losses = %v, want first EpochChanged from 6 (the rest of the old log, and the new log's first entries)", ls)
	}
}

func TestRedisVanishedLogIsReportedWithoutWaitingForTheNextEvent(t *testing.T) {
	// A durable consumer stops at seq 5; 6..10 are published; the log is
	// evicted, its meta hash stays; nothing is published after. The
	// consumer, back, reports 6..10 at once: the topic's next event,
	// which would reveal the gap, may never come.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	pub, run := stoppedAtFive(t, rdb, "vanished")
	for i := range 5 {
		pub.Publish(ctx, Tick{N: 5 + i})
	}
	rdb.Del(ctx, "durabus:{tick}:log")
	var second seqLog
	var l2 lossLog
	start(t, run(&second, &l2))
	waitFor(t, "the report", func() bool { return len(l2.get()) > 0 })
	if ls := l2.get(); len(ls) != 1 || ls[0].Reason != replay.Trimmed || ls[0].From != 6 || ls[0].To != 10 {
		t.Errorf("losses = %v, want one Trimmed 6..10", ls)
	}
	pub.Publish(ctx, Tick{N: 10})
	waitFor(t, "the next event", func() bool { return len(second.get()) == 1 })
	if s := second.get(); s[0] != 11 {
		t.Errorf("handled %v, want [11]", s)
	}
	if ls := l2.get(); len(ls) != 1 {
		t.Errorf("losses = %v after the next event, want the one report only", ls)
	}
}

func TestRedisVanishedCheckpointIsReported(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	run := func(h bus.Handler, losses *lossLog) *bus.Bus {
		b, _ := bus.New(tr, fast, bus.WithConsumer("audit"), bus.WithOnLoss(losses.add))
		b.Handle("ledger", h, bus.StartAt(bus.NewOnly()))
		return b
	}
	var got1 seqLog
	var l1 lossLog
	stop1 := startStoppable(t, run(&got1, &l1))
	for i := range 10 {
		pub.Publish(ctx, Tick{N: i}, bus.ToTopic("ledger"))
	}
	waitFor(t, "10", func() bool { return len(got1.get()) == 10 })
	stop1()
	rdb.Del(ctx, "durabus:consumer:audit") // evicted
	var got2 seqLog
	var l2 lossLog
	b2 := run(&got2, &l2)
	start(t, b2)
	waitFor(t, "the report", func() bool { return len(l2.get()) == 1 })
	if l := l2.get()[0]; l.Reason != replay.CheckpointLost || l.Topic != "ledger" {
		t.Errorf("loss = %v, want CheckpointLost on ledger", l)
	}
	waitFor(t, "the backlog again from its oldest event", func() bool { return len(got2.get()) == 10 })
}

// redisXAdd is a log entry written by hand, as a rolled-back Redis would
// hold it.
type redisXAdd struct {
	key string
	seq uint64
	env any
}

func (x redisXAdd) args() *redis.XAddArgs {
	return &redis.XAddArgs{Stream: x.key, Values: []any{"seq", x.seq, "e", x.env}}
}

func TestRedisDurableBusWithSeveralTopicsSharesOneLease(t *testing.T) {
	// Each topic subscription of a bus is a follower of its own under the
	// bus's consumer name: they share the bus's lease instead of waiting
	// for each other.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	var got [3]seqLog
	b, _ := bus.New(tr, fast, bus.WithConsumer("multi"))
	topics := []string{"multi.a", "multi.b", "multi.c"}
	for i, topic := range topics {
		b.Handle(topic, &got[i])
	}
	start(t, b)
	for i := range 30 {
		pub.Publish(ctx, Tick{N: i}, bus.ToTopic(topics[i%3]))
	}
	for i := range got {
		waitFor(t, topics[i], func() bool { return len(got[i].get()) == 10 })
	}
	// Another process with the name stays out.
	other, _ := bus.New(tr, fast, bus.WithConsumer("multi"))
	var stray seqLog
	other.Handle("multi.a", &stray)
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	for i := range 30 {
		pub.Publish(ctx, Tick{N: i}, bus.ToTopic(topics[i%3]))
	}
	for i := range got {
		waitFor(t, topics[i]+" again", func() bool { return len(got[i].get()) == 20 })
	}
	other.Close()
	<-done
	if n := len(stray.get()); n != 0 {
		t.Errorf("a second bus with the consumer's name handled %d events while the first held it", n)
	}
}

func TestRedisRollbackReachesAConsumerThatWasAway(t *testing.T) {
	// A durable consumer is stopped at seq 15; 16..20 are acknowledged; Redis
	// loses them (rolled back); the consumer comes back and catches up with
	// what Redis kept before the publisher writes again. Only the
	// publisher knows of 16..20: its marker reaches the live consumer.
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := redisTransport(t, rdb)
	ctx := context.Background()
	pub, _ := bus.New(tr)
	run := func(h bus.Handler, losses *lossLog) *bus.Bus {
		b, _ := bus.New(redisTransport(t, rdb), fast, bus.WithConsumer("away"), bus.WithOnLoss(losses.add))
		b.Handle("tick", h, bus.StartAt(bus.Beginning()))
		return b
	}
	var first seqLog
	var l1 lossLog
	stop1 := startStoppable(t, run(&first, &l1))
	for i := range 15 {
		pub.Publish(ctx, Tick{N: i})
	}
	waitFor(t, "15", func() bool { return len(first.get()) == 15 })
	stop1()
	for i := range 5 {
		pub.Publish(ctx, Tick{N: 15 + i})
	}
	loseLast(t, rdb, "tick", 5, 15)

	var second seqLog
	var l2 lossLog
	b2 := run(&second, &l2)
	start(t, b2)
	for i := range 3 {
		pub.Publish(ctx, Tick{N: 100 + i}) // seqs 16, 17, 18 again
	}
	waitFor(t, "the new events and the report", func() bool { return len(second.get()) == 3 && len(l2.get()) == 1 })
	if s := second.get(); !slices.Equal(s, []uint64{16, 17, 18}) {
		t.Errorf("handled %v, want the new 16 17 18", s)
	}
	if l := l2.get()[0]; l.Reason != replay.RolledBack || l.From != 16 || l.To != 20 {
		t.Errorf("loss = %v, want RolledBack 16..20 (the publisher's acknowledgements)", l)
	}
}
