package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

// Shipment is keyed by its order: the shipments of one order keep their
// order on a partitioned topic.
type Shipment struct {
	Order string `json:"order"`
	N     int    `json:"n"`
}

func (Shipment) EventType() string      { return "shipment" }
func (s Shipment) PartitionKey() string { return s.Order }

// Ping has no key.
type Ping struct {
	N int `json:"n"`
}

func (Ping) EventType() string { return "ping" }

// keyedLog records, per key, the Ns handled and the partitions they came
// from.
type keyedLog struct {
	mu     sync.Mutex
	ns     map[string][]int
	topics map[string]map[string]bool
	total  int
}

func newKeyedLog() *keyedLog {
	return &keyedLog{ns: map[string][]int{}, topics: map[string]map[string]bool{}}
}

func (l *keyedLog) handle(ctx context.Context, s *Shipment) error {
	m, _ := bus.MessageFrom(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ns[s.Order] = append(l.ns[s.Order], s.N)
	if l.topics[s.Order] == nil {
		l.topics[s.Order] = map[string]bool{}
	}
	l.topics[s.Order][m.Topic] = true
	if got := m.Extensions[bus.ExtPartitionKey]; got != s.Order {
		return fmt.Errorf("event of key %q carries partitionkey %q", s.Order, got)
	}
	l.total++
	return nil
}

func (l *keyedLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// check says what is wrong: every key's events handled once each, in
// publish order (0..perKey-1), all from the partition its key hashes to.
func (l *keyedLog) check(t *testing.T, topic string, n int, keys []string, perKey int) {
	t.Helper()
	l.checkFrom(t, topic, n, keys, 0, perKey)
}

// checkFrom is check for the events first..first+count-1 of each key.
func (l *keyedLog) checkFrom(t *testing.T, topic string, n int, keys []string, first, perKey int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	used := map[string]bool{}
	for _, k := range keys {
		got := l.ns[k]
		if len(got) != perKey {
			t.Errorf("key %s: handled %d events, want %d", k, len(got), perKey)
		}
		for i, v := range got {
			if v != first+i {
				t.Errorf("key %s: event %d is N=%d, want %d (out of order or duplicate): %v", k, i, v, first+i, got)
				break
			}
		}
		want := transport.PartitionTopic(topic, transport.PartitionOf(k, n))
		if len(l.topics[k]) != 1 || !l.topics[k][want] {
			t.Errorf("key %s: came from %v, want only %s", k, l.topics[k], want)
		}
		used[want] = true
	}
	if len(used) < 2 {
		t.Errorf("the keys used %d partition(s); the test wants several", len(used))
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("order-%d", i)
	}
	return out
}

// publishKeyed publishes perKey events per key, each key's in order from
// a goroutine of its own, all keys concurrently; every third key's events
// name their key with WithKey instead of PartitionKey.
func publishKeyed(t *testing.T, b *bus.Bus, keys []string, perKey int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, len(keys))
	for ki, k := range keys {
		wg.Go(func() {
			for i := range perKey {
				var err error
				if ki%3 == 0 {
					_, err = b.Publish(ctx, Shipment{Order: "not-the-key", N: i}, bus.WithKey(k))
				} else {
					_, err = b.Publish(ctx, Shipment{Order: k, N: i})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// WithKey wins over PartitionKey: the handler sees the event's own Order,
// so the log keys those by the event's Order. This handler maps them back.
func keyOf(m *bus.Message) string { return m.Extensions[bus.ExtPartitionKey] }

func TestPartitionedTopicKeepsOrderPerKeyAcrossPartitions(t *testing.T) {
	const n, perKey = 8, 40
	mem := newMem(t)
	pub, _ := bus.New(mem, bus.WithPartitions("shipment", n))
	sub, err := bus.New(mem, bus.WithPartitions("shipment", n), fast)
	if err != nil {
		t.Fatal(err)
	}
	ks := keys(24)
	// Half before the subscription (replayed from each partition's
	// backlog), half live.
	publishKeyed(t, pub, ks, perKey/2)
	got := newKeyedLog()
	s, err := bus.Subscribe(sub, func(ctx context.Context, e *Shipment) error {
		m, _ := bus.MessageFrom(ctx)
		e.Order = keyOf(m)
		return got.handle(ctx, e)
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		t.Fatal(err)
	}
	start(t, sub)
	ctx := context.Background()
	for i := perKey / 2; i < perKey; i++ {
		for ki, k := range ks {
			opts := []bus.PublishOption{}
			ev := Shipment{Order: k, N: i}
			if ki%3 == 0 {
				ev.Order, opts = "not-the-key", append(opts, bus.WithKey(k))
			}
			if _, err := pub.Publish(ctx, ev, opts...); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every event handled", func() bool { return got.count() >= len(ks)*perKey })
	got.check(t, "shipment", n, ks, perKey)

	st := s.Status()
	if st.Key != "shipment" || len(st.Stats.Topics) != n {
		t.Fatalf("Status: key %q with %d topics, want shipment with %d partitions", st.Key, len(st.Stats.Topics), n)
	}
	for i, ts := range st.Stats.Topics {
		if want := transport.PartitionTopic("shipment", i); ts.Topic != want {
			t.Errorf("followed topic %d is %q, want %q", i, ts.Topic, want)
		}
	}
	if _, err := mem.Head(ctx, "shipment"); !errors.Is(err, transport.ErrUnknownTopic) {
		t.Errorf("the partitioned topic itself has a log: %v", err)
	}
}

func TestUnkeyedEventsAreSpreadEvenly(t *testing.T) {
	const n, events = 6, 600
	mem := newMem(t)
	b, _ := bus.New(mem, bus.WithPartitions("ping", n))
	ctx := context.Background()
	for i := range events / 2 {
		if _, err := b.Publish(ctx, Ping{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	batch := make([]bus.Event, events/2)
	for i := range batch {
		batch[i] = Ping{N: i}
	}
	if _, err := b.PublishBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		head, err := mem.Head(ctx, transport.PartitionTopic("ping", i))
		if err != nil || head.Seq != events/n {
			t.Errorf("partition %d holds %d events (%v), want %d: one publisher spreads unkeyed events round robin", i, head.Seq, err, events/n)
		}
	}
}

func TestPartitionCountMismatchIsAnErrorNotASplit(t *testing.T) {
	mem := newMem(t)
	ctx := context.Background()
	eight, _ := bus.New(mem, bus.WithPartitions("shipment", 8))
	if _, err := eight.Publish(ctx, Shipment{Order: "o-1"}); err != nil {
		t.Fatal(err)
	}

	sixteen, _ := bus.New(mem, bus.WithPartitions("shipment", 16))
	_, err := sixteen.Publish(ctx, Shipment{Order: "o-1"})
	if !errors.Is(err, bus.ErrPartitionCount) {
		t.Fatalf("publish with 16 partitions over 8 recorded: %v, want ErrPartitionCount", err)
	}
	for _, want := range []string{"8 partitions", "configured with 16", "holds events", "docs/groups.md#repartitioning"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := sixteen.PublishBatch(ctx, []bus.Event{Shipment{Order: "o-2"}}); !errors.Is(err, bus.ErrPartitionCount) {
		t.Errorf("batch with 16 partitions over 8 recorded: %v, want ErrPartitionCount", err)
	}

	none, _ := bus.New(mem)
	_, err = none.Publish(ctx, Shipment{Order: "o-1"})
	if !errors.Is(err, bus.ErrPartitionCount) || !strings.Contains(err.Error(), `bus.WithPartitions("shipment", 8)`) {
		t.Fatalf("publish without partitions to a partitioned topic: %v, want ErrPartitionCount naming the option", err)
	}

	// A subscriber with another count: Ready and Run fail, nothing is
	// followed.
	sub, _ := bus.New(mem, bus.WithPartitions("shipment", 16), fast)
	if _, err := bus.Subscribe(sub, func(context.Context, *Shipment) error { return nil }); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sub.Ready(rctx); !errors.Is(err, bus.ErrPartitionCount) && !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Ready of a subscriber with 16 partitions over 8: %v, want ErrPartitionCount", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrPartitionCount) {
			t.Errorf("Run of a subscriber with 16 partitions over 8: %v, want ErrPartitionCount", err)
		}
	case <-rctx.Done():
		t.Fatal("Run did not return")
	}
	sub.Close()

	// Nothing of the others was written anywhere.
	for _, topic := range []string{"shipment", transport.PartitionTopic("shipment", 8), transport.PartitionTopic("shipment", 15)} {
		if _, err := mem.Head(ctx, topic); !errors.Is(err, transport.ErrUnknownTopic) {
			t.Errorf("%s has a log: %v", topic, err)
		}
	}
}

func TestRepartitionIsRefusedOnceATopicHasData(t *testing.T) {
	mem := newMem(t)
	ctx := context.Background()
	admin, _ := bus.New(mem)

	// No data yet: the count may change.
	if err := admin.Repartition(ctx, "shipment", 8); err != nil {
		t.Fatal(err)
	}
	if err := admin.Repartition(ctx, "shipment", 4); err != nil {
		t.Fatalf("repartition without data: %v", err)
	}
	if n, _ := mem.Partitions(ctx, "shipment"); n != 4 {
		t.Fatalf("recorded %d partitions, want 4", n)
	}
	pub, _ := bus.New(mem, bus.WithPartitions("shipment", 4))
	if _, err := pub.Publish(ctx, Shipment{Order: "o-1"}); err != nil {
		t.Fatal(err)
	}
	err := admin.Repartition(ctx, "shipment", 16)
	if !errors.Is(err, bus.ErrPartitionCount) {
		t.Fatalf("repartition with data: %v, want ErrPartitionCount", err)
	}
	for _, want := range []string{"refused", "holds events", "lose their order", "docs/groups.md#repartitioning"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n, _ := mem.Partitions(ctx, "shipment"); n != 4 {
		t.Errorf("recorded %d partitions after the refusal, want 4", n)
	}
	if err := admin.Repartition(ctx, "shipment", 4); err != nil {
		t.Errorf("repartition to the recorded count: %v", err)
	}

	// A topic with events of its own cannot be partitioned in place.
	if _, err := admin.Publish(ctx, Ping{N: 1}); err != nil {
		t.Fatal(err)
	}
	parted, _ := bus.New(mem, bus.WithPartitions("ping", 4))
	_, err = parted.Publish(ctx, Ping{N: 2})
	if !errors.Is(err, bus.ErrPartitionCount) || !errors.Is(err, transport.ErrTopicHasEvents) {
		t.Errorf("partitioning a topic with events: %v, want ErrPartitionCount and ErrTopicHasEvents", err)
	}
	if err := admin.Repartition(ctx, "ping", 4); !errors.Is(err, bus.ErrPartitionCount) {
		t.Errorf("Repartition of a topic with events: %v, want ErrPartitionCount", err)
	}
}

// bare is a transport with only the core: no optional ability.
type bare struct{ transport.Transport }

func TestPartitionsNeedATransportThatRecordsThem(t *testing.T) {
	mem := newMem(t)
	_, err := bus.New(bare{mem}, bus.WithPartitions("shipment", 4))
	if !errors.Is(err, bus.ErrInvalidOption) || !strings.Contains(err.Error(), "transport.PartitionStore") {
		t.Errorf("New with partitions on a transport without PartitionStore: %v", err)
	}
	b, _ := bus.New(bare{mem})
	if err := b.Repartition(context.Background(), "shipment", 4); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Repartition on a transport without PartitionStore: %v", err)
	}
	// Unpartitioned topics work as before on it.
	if _, err := b.Publish(context.Background(), Shipment{Order: "o-1"}); err != nil {
		t.Error(err)
	}
	for _, n := range []int{0, transport.MaxPartitions + 1} {
		if _, err := bus.New(mem, bus.WithPartitions("shipment", n)); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("WithPartitions(%d): %v", n, err)
		}
	}
}

// A durable consumer of a partitioned topic keeps a checkpoint per
// partition; what retention trimmed while it was away is reported for the
// partition it was in, exactly, and the other partitions go on.
func TestDurablePartitionsResumeAndReportLossPerPartition(t *testing.T) {
	const n = 4
	mem, _ := memtransport.New(memtransport.WithMaxLen(5))
	t.Cleanup(func() { mem.Close() })
	ctx := context.Background()
	pub, _ := bus.New(mem, bus.WithPartitions("shipment", n))
	// Two keys in different partitions.
	a, b := "order-0", ""
	for _, k := range keys(40) {
		if transport.PartitionOf(k, n) != transport.PartitionOf(a, n) {
			b = k
			break
		}
	}
	pa := transport.PartitionTopic("shipment", transport.PartitionOf(a, n))
	pb := transport.PartitionTopic("shipment", transport.PartitionOf(b, n))

	run := func(onLoss func(*replay.LossError)) (*keyedLog, func()) {
		sub, err := bus.New(mem, bus.WithPartitions("shipment", n), bus.WithConsumer("billing"), bus.WithOnLoss(onLoss), fast)
		if err != nil {
			t.Fatal(err)
		}
		got := newKeyedLog()
		if _, err := bus.Subscribe(sub, got.handle, bus.StartAt(bus.Beginning())); err != nil {
			t.Fatal(err)
		}
		return got, startStoppable(t, sub)
	}
	got, stop := run(nil)
	for _, k := range []string{a, b} {
		if _, err := pub.Publish(ctx, Shipment{Order: k, N: 0}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first two events handled", func() bool { return got.count() == 2 })
	stop() // saves the checkpoints: seq 1 of pa and of pb

	// While it is away: 20 events of key a (trimmed to the last 5), 3 of b.
	for i := 1; i <= 20; i++ {
		if _, err := pub.Publish(ctx, Shipment{Order: a, N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		if _, err := pub.Publish(ctx, Shipment{Order: b, N: i}); err != nil {
			t.Fatal(err)
		}
	}
	var losses log[replay.LossError]
	got, stop = run(func(e *replay.LossError) { losses.add(*e) })
	defer stop()
	waitFor(t, "the held events handled", func() bool { return got.count() >= 5+3 })
	ls := losses.get()
	if len(ls) != 1 || ls[0].Topic != pa || ls[0].From != 2 || ls[0].To != 16 {
		t.Fatalf("losses %+v; want one, of %s seqs 2..16", ls, pa)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if fmt.Sprint(got.ns[a]) != "[16 17 18 19 20]" || fmt.Sprint(got.ns[b]) != "[1 2 3]" {
		t.Errorf("handled after the restart: %s %v (%s), %s %v (%s)", a, got.ns[a], pa, b, got.ns[b], pb)
	}
}
