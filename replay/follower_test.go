package replay_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fast are follower options that keep tests quick.
var fast = []replay.Option{
	replay.WithHeadCheck(20 * time.Millisecond),
	replay.WithBackoff(time.Millisecond, 20*time.Millisecond, 2),
	replay.WithCheckpointEvery(10, 10*time.Millisecond),
}

// recorder is a handler that records what it sees, per topic, and fails
// the test on a duplicate or an event out of order.
type recorder struct {
	t  testing.TB
	mu sync.Mutex
	// seqs per topic, in delivery order
	seqs     map[string][]uint64
	lastPos  map[string]transport.Position
	replayed int
	losses   []*replay.LossError
	errs     []error
}

// newMem returns a memory transport closed after the test's followers
// stopped.
func newMem(t testing.TB, opts ...memtransport.Option) *memtransport.Transport {
	mem, _ := memtransport.New(opts...)
	t.Cleanup(func() { mem.Close() })
	return mem
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, seqs: map[string][]uint64{}, lastPos: map[string]transport.Position{}}
}

func (r *recorder) handle(_ context.Context, d replay.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last := r.lastPos[d.Topic]; last.Epoch == d.Position.Epoch && d.Position.Seq <= last.Seq {
		r.t.Errorf("topic %s: seq %d delivered after seq %d", d.Topic, d.Position.Seq, last.Seq)
	}
	r.lastPos[d.Topic] = d.Position
	r.seqs[d.Topic] = append(r.seqs[d.Topic], d.Position.Seq)
	if d.Replayed {
		r.replayed++
	}
	return nil
}

func (r *recorder) onLoss(e *replay.LossError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.losses = append(r.losses, e)
}

func (r *recorder) onError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs[topic])
}

func (r *recorder) last(topic string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seqs[topic]
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// waitFor polls cond until it holds or 30 s pass (generous: the machine
// may be loaded).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// run starts f (a *replay.Follower or a *replay.Group) and returns a stop
// function that ends it and waits.
func run(t testing.TB, f interface{ Run(context.Context) error }) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publish(t testing.TB, tr transport.Transport, topic string, n int) []transport.Position {
	t.Helper()
	out := make([]transport.Position, n)
	for i := range n {
		now := time.Now().UTC()
		data := fmt.Appendf(nil, `{"specversion":"1.0","id":"%s-%d","source":"test","type":"t","version":1,"time":%q,"data":{"i":%d}}`,
			topic, i, now.Format(time.RFC3339Nano), i)
		pos, err := tr.Publish(context.Background(), transport.Message{Topic: topic, ID: fmt.Sprint(i), Time: now, Data: data})
		if err != nil {
			t.Fatalf("publish %s #%d: %v", topic, i, err)
		}
		out[i] = pos
	}
	return out
}

// subscribed waits until the follower's live subscription is up and every
// topic has resolved its start.
func subscribed(t testing.TB, f *replay.Follower, topics int) {
	t.Helper()
	waitFor(t, "subscription", func() bool {
		s := f.Stats()
		return s.Connected && len(s.Topics) >= topics
	})
	time.Sleep(20 * time.Millisecond) // let workers resolve their start
}

func contiguous(seqs []uint64, from, to uint64) error {
	if uint64(len(seqs)) != to-from+1 {
		return fmt.Errorf("got %d events, want %d (seq %d..%d)", len(seqs), to-from+1, from, to)
	}
	for i, s := range seqs {
		if s != from+uint64(i) {
			return fmt.Errorf("position %d: seq %d, want %d", i, s, from+uint64(i))
		}
	}
	return nil
}

func TestDroppedFramesAreRepairedExactlyOnceInOrder(t *testing.T) {
	// Property: whatever live frames are lost, and whenever the connection
	// drops, every handler sees every event exactly once, in order.
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			var rngMu sync.Mutex
			mem := newMem(t)
			p := 0.05 + rng.Float64()*0.5
			mem.DropFrames(func(string, uint64) bool {
				rngMu.Lock()
				defer rngMu.Unlock()
				return rng.Float64() < p
			})
			topics := []string{"a", "b", "c"}
			rec := newRecorder(t)
			f, err := replay.New(mem, rec.handle, append(fast, replay.WithTopics(topics...), replay.WithOnLoss(rec.onLoss))...)
			if err != nil {
				t.Fatal(err)
			}
			run(t, f)
			subscribed(t, f, len(topics))
			const perTopic = 300
			for i := range perTopic {
				for _, topic := range topics {
					publish(t, mem, topic, 1)
				}
				if i%50 == 25 {
					mem.Disconnect()
					publish(t, mem, "a", 0)
					mem.Reconnect()
				}
			}
			for _, topic := range topics {
				waitFor(t, "all of "+topic, func() bool { return rec.count(topic) >= perTopic })
			}
			time.Sleep(50 * time.Millisecond) // room for a wrong extra delivery
			for _, topic := range topics {
				if err := contiguous(rec.seqs[topic], 1, perTopic); err != nil {
					t.Errorf("topic %s (drop rate %.2f): %v", topic, p, err)
				}
			}
			if len(rec.losses) > 0 {
				t.Errorf("losses reported: %v", rec.losses)
			}
			s := f.Stats()
			t.Logf("drop rate %.2f: delivered %d, replayed %d, duplicates %d, gaps %d, head repairs %d, reconnects %d",
				p, s.Delivered, s.Replayed, s.Duplicates, s.Gaps, s.HeadRepairs, s.Reconnects)
		})
	}
}

func TestLostLastEventIsCaughtByTheHeadCheck(t *testing.T) {
	mem := newMem(t)
	rec := newRecorder(t)
	f, err := replay.New(mem, rec.handle, append(fast, replay.WithTopics("t"))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "t", 3)
	waitFor(t, "3 events", func() bool { return rec.last("t") == 3 })
	mem.DropFrames(func(string, uint64) bool { return true })
	publish(t, mem, "t", 1) // seq 4 never arrives live, and nothing follows it
	waitFor(t, "seq 4 through the head check", func() bool { return rec.last("t") == 4 })
	if s := f.Stats(); s.HeadRepairs == 0 {
		t.Errorf("head repairs = 0, want > 0")
	}
}

func TestSlowHandlerOverflowIsRepairedFromTheBacklog(t *testing.T) {
	mem := newMem(t, memtransport.WithBuffer(8))
	rec := newRecorder(t)
	slow := func(ctx context.Context, d replay.Delivery) error {
		time.Sleep(50 * time.Microsecond)
		return rec.handle(ctx, d)
	}
	f, err := replay.New(mem, slow, append(fast, replay.WithTopics("t"), replay.WithInboxSize(4))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "t", 2000)
	waitFor(t, "2000 events", func() bool { return rec.count("t") >= 2000 })
	if err := contiguous(rec.seqs["t"], 1, 2000); err != nil {
		t.Error(err)
	}
	s := f.Stats()
	t.Logf("overflows %d, replayed %d, duplicates %d", s.Overflows, s.Replayed, s.Duplicates)
}

func TestTrimmedBacklogReportsTheExactLoss(t *testing.T) {
	// Retention 100; a durable subscriber is away while 500 events are
	// published: seq 11..410 are gone, and exactly that is reported.
	mem := newMem(t, memtransport.WithMaxLen(100))
	rec := newRecorder(t)
	opts := append(fast, replay.WithTopics("t"), replay.WithConsumer("c"), replay.WithStart(replay.Beginning()), replay.WithOnLoss(rec.onLoss))
	f, err := replay.New(mem, rec.handle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "t", 10)
	waitFor(t, "first 10", func() bool { return rec.count("t") == 10 })
	stop()

	publish(t, mem, "t", 500)
	f2, err := replay.New(mem, rec.handle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f2)
	waitFor(t, "the rest", func() bool { return rec.last("t") == 510 })
	want := replay.LossError{Topic: "t", Epoch: rec.lossEpoch(), From: 11, To: 410, Reason: replay.Trimmed}
	if len(rec.losses) != 1 || *rec.losses[0] != want {
		t.Fatalf("losses = %v, want exactly %v", rec.losses, &want)
	}
	if !errors.Is(rec.losses[0], replay.ErrLoss) {
		t.Error("LossError does not match ErrLoss")
	}
	got := rec.seqs["t"]
	if err := contiguous(got[:10], 1, 10); err != nil {
		t.Error(err)
	}
	if err := contiguous(got[10:], 411, 510); err != nil {
		t.Error(err)
	}
	if s := f2.Stats(); s.Lost != 400 || s.LossReports != 1 {
		t.Errorf("stats lost %d reports %d, want 400 and 1", s.Lost, s.LossReports)
	}
}

func (r *recorder) lossEpoch() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.losses) == 0 {
		return ""
	}
	return r.losses[0].Epoch
}

func TestEpochChangeIsReportedAndDeliveryGoesOn(t *testing.T) {
	mem := newMem(t)
	rec := newRecorder(t)
	f, err := replay.New(mem, rec.handle, append(fast, replay.WithTopics("t"), replay.WithOnLoss(rec.onLoss))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	subscribed(t, f, 1)
	old := publish(t, mem, "t", 5)
	waitFor(t, "5 events", func() bool { return rec.count("t") == 5 })
	mem.DeleteTopic("t")
	fresh := publish(t, mem, "t", 3)
	waitFor(t, "3 more", func() bool { return rec.count("t") == 8 })
	if old[0].Epoch == fresh[0].Epoch {
		t.Fatal("epoch did not change")
	}
	if len(rec.losses) != 1 || rec.losses[0].Reason != replay.EpochChanged || rec.losses[0].From != 6 || rec.losses[0].Epoch != old[0].Epoch ||
		rec.losses[0].To != 0 || rec.losses[0].Next != fresh[0].Epoch {
		t.Fatalf("losses = %v, want one epoch change from seq 6 of %s up to %s", rec.losses, old[0].Epoch, fresh[0].Epoch)
	}
	if got := rec.seqs["t"][5:]; got[0] != 1 || got[2] != 3 {
		t.Errorf("new epoch seqs = %v, want 1 2 3", got)
	}
}

func TestStartPositions(t *testing.T) {
	mem := newMem(t)
	pos := publish(t, mem, "t", 10)
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	publish(t, mem, "t", 5)
	cases := []struct {
		name  string
		start replay.Start
		from  uint64
	}{
		{"beginning", replay.Beginning(), 1},
		{"after", replay.After(pos[6]), 8},
		{"since", replay.Since(mid), 11},
		{"new", replay.NewOnly(), 16},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder(t)
			f, err := replay.New(mem, rec.handle, append(fast, replay.WithTopics("t"), replay.WithStart(c.start))...)
			if err != nil {
				t.Fatal(err)
			}
			stop := run(t, f)
			subscribed(t, f, 1)
			waitFor(t, "catch-up", func() bool { return f.Stats().Topics[0].Cursor.Seq >= 15 })
			stop()
			if c.from > 15 {
				if len(rec.seqs["t"]) != 0 {
					t.Errorf("delivered %v, want nothing (all published before the start)", rec.seqs["t"])
				}
			} else if err := contiguous(rec.seqs["t"], c.from, 15); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDurableConsumerResumesAfterItsCheckpoint(t *testing.T) {
	mem := newMem(t)
	rec := newRecorder(t)
	opts := append(fast, replay.WithTopics("t"), replay.WithConsumer("worker"))
	f, err := replay.New(mem, rec.handle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "t", 50)
	waitFor(t, "50", func() bool { return rec.count("t") == 50 })
	stop() // flushes the checkpoint
	cps, err := mem.LoadCheckpoints(context.Background(), "worker")
	if err != nil || cps["t"].Seq != 50 {
		t.Fatalf("checkpoint = %v, %v; want seq 50", cps, err)
	}
	publish(t, mem, "t", 25) // while the worker is down
	f2, err := replay.New(mem, rec.handle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f2)
	waitFor(t, "75", func() bool { return rec.count("t") == 75 })
	if err := contiguous(rec.seqs["t"], 1, 75); err != nil {
		t.Error(err)
	}
}

func TestPatternFollowsTopicsCreatedBeforeAndAfter(t *testing.T) {
	mem := newMem(t)
	publish(t, mem, "user.1.notes", 2)
	rec := newRecorder(t)
	f, err := replay.New(mem, rec.handle, append(fast, replay.WithPattern("user.*.notes"), replay.WithStart(replay.Beginning()))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "user.2.notes", 3)
	publish(t, mem, "user.1.notes", 1)
	publish(t, mem, "other", 1)
	waitFor(t, "both topics", func() bool { return rec.count("user.1.notes") == 3 && rec.count("user.2.notes") == 3 })
	if rec.count("other") != 0 {
		t.Error("pattern delivered a topic that does not match")
	}
}

func TestFailingHandlerIsRetriedUntilItSucceeds(t *testing.T) {
	mem := newMem(t)
	rec := newRecorder(t)
	var mu sync.Mutex
	fails := 3
	h := func(ctx context.Context, d replay.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Position.Seq == 2 && fails > 0 {
			fails--
			if fails == 0 {
				panic("boom")
			}
			return errors.New("not yet")
		}
		return rec.handle(ctx, d)
	}
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithOnError(rec.onError))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	subscribed(t, f, 1)
	publish(t, mem, "t", 3)
	waitFor(t, "3 events", func() bool { return rec.count("t") == 3 })
	if err := contiguous(rec.seqs["t"], 1, 3); err != nil {
		t.Error(err)
	}
	var he *replay.HandlerError
	var pe *replay.PanicError
	if len(rec.errs) != 3 || !errors.As(rec.errs[0], &he) || he.Attempt != 1 || !errors.As(rec.errs[2], &pe) {
		t.Errorf("errors = %v, want 2 handler errors then a panic", rec.errs)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	mem := newMem(t)
	h := func(context.Context, replay.Delivery) error { return nil }
	_, err := replay.New(mem, h, replay.WithTopics("bad topic"), replay.WithPattern("x*"), replay.WithPageSize(0))
	if !errors.Is(err, replay.ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
	for _, want := range []string{"bad topic", "either", "page size"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

func TestManyPatternTopicsCostLittleMemory(t *testing.T) {
	// A pattern over 5 000 topics (one user each): every topic gets its
	// cursor and goroutine, but no preallocated inbox.
	mem := newMem(t)
	const topics = 5000
	for i := range topics {
		publish(t, mem, fmt.Sprintf("user.%d.notes", i), 1)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := newRecorder(t)
	f, err := replay.New(mem, rec.handle, append(fast, replay.WithPattern("user.*.notes"), replay.WithStart(replay.Beginning()))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	waitFor(t, "every topic", func() bool { return f.Stats().Delivered == topics })
	runtime.GC()
	runtime.ReadMemStats(&after)
	perTopic := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / topics
	t.Logf("%d topics: about %d bytes each (heap and stacks)", topics, perTopic)
	if perTopic > 20_000 {
		t.Errorf("%d bytes per followed topic, want under 20 kB", perTopic)
	}
}

// flakyHead fails the first Head calls, as a Redis restart right after the
// subscription does.
type flakyHead struct {
	*memtransport.Transport
	fails atomic.Int32
}

func (f *flakyHead) Head(ctx context.Context, topic string) (transport.Position, error) {
	if f.fails.Add(-1) >= 0 {
		return transport.Position{}, errors.New("EOF")
	}
	return f.Transport.Head(ctx, topic)
}

func TestNewOnlyStartSurvivesAFailedHeadRead(t *testing.T) {
	// The head cannot be read when the follower starts; meanwhile events
	// are published. NewOnly means "after the subscription": those events
	// are new and must be delivered, not skipped by a later head read.
	mem := newMem(t)
	publish(t, mem, "t", 3) // old
	tr := &flakyHead{Transport: mem}
	tr.fails.Store(3)
	rec := newRecorder(t)
	f, err := replay.New(tr, rec.handle, append(fast, replay.WithTopics("t"), replay.WithBackoff(30*time.Millisecond, 30*time.Millisecond, 1))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	waitFor(t, "subscription", func() bool { return f.Stats().Connected })
	time.Sleep(5 * time.Millisecond)
	mem.DropFrames(func(string, uint64) bool { return true }) // only the backlog can tell
	publish(t, mem, "t", 2)                                   // new: seq 4 and 5
	mem.DropFrames(nil)
	waitFor(t, "the new events", func() bool { return rec.last("t") == 5 })
	if got := rec.seqs["t"]; fmt.Sprint(got) != "[4 5]" {
		t.Errorf("delivered %v, want [4 5]", got)
	}
}

// slowHead answers Head late, as a loaded machine or a Redis restart does:
// events published meanwhile were published after the subscription.
type slowHead struct {
	*memtransport.Transport
	during func()
}

func (s *slowHead) Head(ctx context.Context, topic string) (transport.Position, error) {
	if s.during != nil {
		s.during()
		s.during = nil
	}
	return s.Transport.Head(ctx, topic)
}

func TestNewOnlyIncludesWhatWasPublishedWhileTheHeadWasRead(t *testing.T) {
	mem := newMem(t)
	publish(t, mem, "t", 3) // old
	time.Sleep(2 * time.Millisecond)
	tr := &slowHead{Transport: mem}
	tr.during = func() {
		mem.DropFrames(func(string, uint64) bool { return true })
		publish(t, mem, "t", 2) // new: seq 4 and 5, live frames lost
		mem.DropFrames(nil)
	}
	rec := newRecorder(t)
	f, err := replay.New(tr, rec.handle, append(fast, replay.WithTopics("t"))...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	waitFor(t, "the new events", func() bool { return rec.last("t") == 5 })
	if got := rec.seqs["t"]; fmt.Sprint(got) != "[4 5]" {
		t.Errorf("delivered %v, want [4 5]", got)
	}
}

// rangeLimits is a transport that records the limit of every Range call.
type rangeLimits struct {
	transport.Transport
	mu     sync.Mutex
	limits []int
}

func (r *rangeLimits) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	r.mu.Lock()
	r.limits = append(r.limits, limit)
	r.mu.Unlock()
	return r.Transport.Range(ctx, topic, after, limit)
}

// Large events are read in smaller pages: about 4 MiB per page whatever
// the page size, so the page handled and the one read ahead stay bounded.
func TestLargeEventsAreReadInPagesOfBoundedBytes(t *testing.T) {
	mem := newMem(t)
	const n, size = 300, 32 << 10
	pad := strings.Repeat("x", size)
	for i := range n {
		now := time.Now().UTC()
		data := fmt.Appendf(nil, `{"specversion":"1.0","id":"big-%d","source":"test","type":"t","version":1,"time":%q,"data":%q}`,
			i, now.Format(time.RFC3339Nano), pad)
		if _, err := mem.Publish(context.Background(), transport.Message{Topic: "t", ID: fmt.Sprint(i), Time: now, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	tr := &rangeLimits{Transport: mem}
	rec := newRecorder(t)
	f, err := replay.New(tr, rec.handle, append(fast, replay.WithTopics("t"), replay.WithStart(replay.Beginning()))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	waitFor(t, "replay", func() bool { return rec.count("t") >= n })
	stop()
	if err := contiguous(rec.seqs["t"], 1, n); err != nil {
		t.Error(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, l := range tr.limits {
		if l*size > 5<<20 {
			t.Fatalf("a Range asked for %d events of %d bytes (limits %v)", l, size, tr.limits)
		}
	}
	if len(tr.limits) < n*size/(5<<20) {
		t.Fatalf("only %d Range calls for %d MiB: %v", len(tr.limits), n*size>>20, tr.limits)
	}
}
