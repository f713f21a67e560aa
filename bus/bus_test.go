package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, redistest.LeakOptions()...) }

type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func (OrderPlaced) EventType() string { return "order.placed" }

type OrderShipped struct {
	ID string `json:"id"`
}

func (OrderShipped) EventType() string { return "order.shipped" }

var fast = bus.WithFollowerOptions(
	replay.WithHeadCheck(20*time.Millisecond),
	replay.WithBackoff(time.Millisecond, 20*time.Millisecond, 2),
	replay.WithCheckpointEvery(10, 10*time.Millisecond),
)

// start runs b until the test ends.
func start(t testing.TB, b *bus.Bus) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	t.Cleanup(func() {
		b.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

// startStoppable runs b and waits until it is Ready; stop closes it and
// checks what Run returned. For a test that stops b itself.
func startStoppable(t testing.TB, b *bus.Bus) (stop func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return func() {
		t.Helper()
		b.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the machine may be loaded
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newMem(t testing.TB) *memtransport.Transport {
	mem, _ := memtransport.New()
	t.Cleanup(func() { mem.Close() })
	return mem
}

type log[T any] struct {
	mu    sync.Mutex
	items []T
}

func (l *log[T]) add(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
}

func (l *log[T]) get() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

func TestTypedPublishAndSubscribe(t *testing.T) {
	mem := newMem(t)
	b, err := bus.New(mem, bus.WithSource("checkout"), fast)
	if err != nil {
		t.Fatal(err)
	}
	var got log[string]
	_, err = bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error {
		m, ok := bus.MessageFrom(ctx)
		if !ok {
			return errors.New("no message in ctx")
		}
		got.add(fmt.Sprintf("%s %d %s %s seq=%d v=%d", e.ID, e.Total, m.Source, m.Topic, m.Position.Seq, m.Version))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	for i := 1; i <= 3; i++ {
		pos, err := b.Publish(context.Background(), OrderPlaced{ID: fmt.Sprint("o-", i), Total: i * 10})
		if err != nil || pos.Seq != uint64(i) {
			t.Fatalf("publish %d: %v, %v", i, pos, err)
		}
	}
	waitFor(t, "3 orders", func() bool { return len(got.get()) == 3 })
	want := []string{"o-1 10 checkout order.placed seq=1 v=1", "o-2 20 checkout order.placed seq=2 v=1", "o-3 30 checkout order.placed seq=3 v=1"}
	for i, g := range got.get() {
		if g != want[i] {
			t.Errorf("delivery %d = %q, want %q", i, g, want[i])
		}
	}
}

func TestRoutedTypesShareTheTopicOrder(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem, bus.WithRoute("order.placed", "orders"), bus.WithRoute("order.shipped", "orders"), fast)
	var got log[string]
	bus.Subscribe(b, func(_ context.Context, e *OrderPlaced) error { got.add("placed " + e.ID); return nil })
	bus.Subscribe(b, func(_ context.Context, e *OrderShipped) error { got.add("shipped " + e.ID); return nil })
	start(t, b)
	ctx := context.Background()
	b.Publish(ctx, OrderPlaced{ID: "1"})
	b.Publish(ctx, OrderShipped{ID: "1"})
	b.Publish(ctx, OrderPlaced{ID: "2"})
	pos, err := b.PublishBatch(ctx, []bus.Event{OrderShipped{ID: "2"}, OrderPlaced{ID: "3"}})
	if err != nil || len(pos) != 2 || pos[1].Seq != 5 {
		t.Fatalf("batch: %v %v", pos, err)
	}
	waitFor(t, "5 events", func() bool { return len(got.get()) == 5 })
	want := []string{"placed 1", "shipped 1", "placed 2", "shipped 2", "placed 3"}
	for i, g := range got.get() {
		if g != want[i] {
			t.Errorf("delivery %d = %q, want %q", i, g, want[i])
		}
	}
	if len(b.Status()) != 1 || b.Status()[0].Key != "orders" {
		t.Errorf("status = %+v, want one subscription on orders", b.Status())
	}
}

func TestBadEventsAreReportedAndTheTopicGoesOn(t *testing.T) {
	mem := newMem(t)
	var errs log[error]
	b, _ := bus.New(mem, bus.WithOnError(errs.add), fast)
	var got log[string]
	bus.Subscribe(b, func(_ context.Context, e *OrderPlaced) error { got.add(e.ID); return nil })
	start(t, b)
	ctx := context.Background()
	raw := func(data string) {
		if _, err := mem.Publish(ctx, transport.Message{Topic: "order.placed", ID: "x", Time: time.Now(), Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	raw(`not json`)
	raw(`{"specversion":"1.0","id":"0190a6b6-4b9b-7c4e-9d2a-3e8f5d6c7b8a","source":"x","type":"order.cancelled","version":1,"time":"2026-01-01T00:00:00Z","data":{}}`)
	raw(`{"specversion":"1.0","id":"0190a6b6-4b9b-7c4e-9d2a-3e8f5d6c7b8b","source":"x","type":"order.placed","version":1,"time":"2026-01-01T00:00:00Z","data":{"total":"ten"}}`)
	raw(`{"specversion":"1.0","id":"0190a6b6-4b9b-7c4e-9d2a-3e8f5d6c7b8c","source":"x","type":"order.placed","version":7,"time":"2026-01-01T00:00:00Z","data":{}}`)
	b.Publish(ctx, OrderPlaced{ID: "good"})
	waitFor(t, "the good event", func() bool { return len(got.get()) == 1 })
	want := []error{bus.ErrUndecodable, bus.ErrUnknownType, bus.ErrUndecodable, bus.ErrNewerVersion}
	e := errs.get()
	if len(e) != len(want) {
		t.Fatalf("errors = %v, want %d", e, len(want))
	}
	for i, w := range want {
		var de *bus.DeliveryError
		if !errors.Is(e[i], w) || !errors.As(e[i], &de) || de.Position.Seq != uint64(i+1) {
			t.Errorf("error %d = %v, want %v at seq %d", i, e[i], w, i+1)
		}
	}
}

// Three versions of one event type in one backlog.
type priceV1 struct {
	Amount int `json:"amount"` // whole euros
}

func (priceV1) EventType() string { return "price.set" }

type priceV2 struct {
	Cents int `json:"cents"`
}

func (priceV2) EventType() string { return "price.set" }
func (priceV2) EventVersion() int { return 2 }

type Price struct {
	Cents    int    `json:"cents"`
	Currency string `json:"currency"`
}

func (Price) EventType() string { return "price.set" }
func (Price) EventVersion() int { return 3 }

func TestUpcastersBringOldVersionsUpToDate(t *testing.T) {
	mem := newMem(t)
	ctx := context.Background()
	pub, _ := bus.New(mem)
	pub.Publish(ctx, priceV1{Amount: 2})
	pub.Publish(ctx, priceV2{Cents: 350})
	pub.Publish(ctx, Price{Cents: 499, Currency: "USD"})

	var errs log[error]
	b, _ := bus.New(mem, bus.WithOnError(errs.add), fast)
	b.Upcast("price.set", 1, func(d json.RawMessage) (json.RawMessage, error) {
		var v priceV1
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, err
		}
		return json.Marshal(priceV2{Cents: v.Amount * 100})
	})
	b.Upcast("price.set", 2, func(d json.RawMessage) (json.RawMessage, error) {
		var v Price
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, err
		}
		v.Currency = "EUR"
		return json.Marshal(v)
	})
	var got log[Price]
	bus.Subscribe(b, func(_ context.Context, p *Price) error { got.add(*p); return nil }, bus.StartAt(bus.Beginning()))
	start(t, b)
	waitFor(t, "3 prices", func() bool { return len(got.get()) == 3 })
	want := []Price{{200, "EUR"}, {350, "EUR"}, {499, "USD"}}
	for i, p := range got.get() {
		if p != want[i] {
			t.Errorf("price %d = %+v, want %+v", i, p, want[i])
		}
	}
	if len(errs.get()) != 0 {
		t.Errorf("errors: %v", errs.get())
	}
}

func TestMissingUpcasterIsReported(t *testing.T) {
	mem := newMem(t)
	ctx := context.Background()
	pub, _ := bus.New(mem)
	pub.Publish(ctx, priceV1{Amount: 2})
	var errs log[error]
	b, _ := bus.New(mem, bus.WithOnError(errs.add), fast)
	bus.Subscribe(b, func(context.Context, *Price) error { return nil }, bus.StartAt(bus.Beginning()))
	start(t, b)
	waitFor(t, "the report", func() bool { return len(errs.get()) == 1 })
	if !errors.Is(errs.get()[0], bus.ErrNoUpcaster) {
		t.Errorf("error = %v, want ErrNoUpcaster", errs.get()[0])
	}
}

func TestHandlePatternSeesEveryType(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem, fast)
	var got log[string]
	_, err := b.Handle("order.*", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		got.add(m.Topic + " " + m.Type)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	ctx := context.Background()
	b.Publish(ctx, OrderPlaced{ID: "1"})
	b.Publish(ctx, OrderShipped{ID: "1"})
	waitFor(t, "2 events", func() bool { return len(got.get()) == 2 })
}

func TestEventsIterator(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem, fast)
	ctx := context.Background()
	for i := range 5 {
		b.Publish(ctx, OrderPlaced{ID: fmt.Sprint(i)})
	}
	var ids []string
	for m, err := range b.Events(ctx, "order.placed", bus.StartAt(bus.Beginning())) {
		if err != nil {
			t.Fatal(err)
		}
		var o OrderPlaced
		if err := m.Bind(&o); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ID)
		if len(ids) == 5 {
			break
		}
	}
	if fmt.Sprint(ids) != "[0 1 2 3 4]" {
		t.Errorf("ids = %v", ids)
	}
}

func TestCloseDrainsTheHandlerInFlight(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem, fast)
	entered := make(chan struct{})
	var finished bool
	bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error {
		close(entered)
		time.Sleep(100 * time.Millisecond)
		finished = ctx.Err() == nil
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Publish(context.Background(), OrderPlaced{ID: "1"})
	<-entered
	b.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !finished {
		t.Error("the handler in flight was cancelled instead of drained")
	}
	if _, err := b.Publish(context.Background(), OrderPlaced{}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("publish after Close: %v, want ErrClosed", err)
	}
}

func TestHealthRoundTrip(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d, err := b.Health(ctx); err != nil || d <= 0 {
		t.Fatalf("Health = %v, %v", d, err)
	}
}

func TestInvalidUse(t *testing.T) {
	mem := newMem(t)
	if _, err := bus.New(mem, bus.WithRoute("x", "bad topic"), bus.WithSource("")); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("New: %v, want ErrInvalidOption", err)
	}
	b, _ := bus.New(mem)
	h := func(context.Context, *OrderPlaced) error { return nil }
	if _, err := bus.Subscribe(b, h); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Subscribe(b, h); !errors.Is(err, bus.ErrInvalidOption) {
		t.Errorf("second handler for a type: %v", err)
	}
	if _, err := bus.Subscribe(b, func(context.Context, *OrderShipped) error { return nil }, bus.OnTopic("order.placed"), bus.StartAt(bus.Beginning())); err != nil {
		t.Errorf("second type on the topic: %v", err)
	}
	if _, err := b.Publish(context.Background(), OrderPlaced{}, bus.ToTopic("no spaces")); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("publish to a bad topic: %v", err)
	}
}

func TestRoutedTypesWithoutAHandlerAreSkippedQuietly(t *testing.T) {
	mem := newMem(t)
	var errs log[error]
	b, _ := bus.New(mem, bus.WithRoute("order.placed", "orders"), bus.WithRoute("order.shipped", "orders"), bus.WithOnError(errs.add), fast)
	var got log[string]
	bus.Subscribe(b, func(_ context.Context, e *OrderPlaced) error { got.add(e.ID); return nil })
	start(t, b)
	ctx := context.Background()
	b.Publish(ctx, OrderShipped{ID: "s"})
	b.Publish(ctx, OrderPlaced{ID: "p"}, bus.WithEnvelope())
	other, _ := bus.New(mem, bus.WithRoute("user.signed_up", "orders"))
	other.Publish(ctx, UserSignedUp{Email: "x"}) // not routed there by b: reported
	b.Publish(ctx, OrderPlaced{ID: "q"})
	waitFor(t, "2 orders", func() bool { return len(got.get()) == 2 })
	if e := errs.get(); len(e) != 1 || !errors.Is(e[0], bus.ErrUnknownType) {
		t.Errorf("errors = %v, want one ErrUnknownType for user.signed_up", e)
	}
}

func TestReadyAndCloseReportRun(t *testing.T) {
	mem := newMem(t)
	b, _ := bus.New(mem, fast)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Ready(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ready before Run = %v, want the ctx's deadline", err)
	}
	bus.Subscribe(b, func(context.Context, *OrderPlaced) error { return nil })
	go b.Run(context.Background())
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	mem.Close() // the transport goes away under the bus
	waitFor(t, "the subscription to end", func() bool { return !b.Status()[0].Stats.Connected })
	time.Sleep(20 * time.Millisecond) // Run sees its follower's error
	if err := b.Close(); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Close = %v, want Run's error wrapping transport.ErrClosed", err)
	}
}

func TestOverlappingDurableSubscriptionsKeepTheirOwnCheckpoints(t *testing.T) {
	// A typed subscription stuck at seq 6 and a pattern subscription that
	// handled all 20 events of the same topic: after a restart the typed one
	// resumes at 6, not where the pattern one stopped.
	mem := newMem(t)
	ctx := context.Background()
	var typed log[string]
	var stuck sync.Mutex
	stuck.Lock() // held: the typed handler fails from seq 6 on
	run := func(pattern *log[string], typedWant int) {
		b, _ := bus.New(mem, bus.WithConsumer("billing"), fast)
		bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error {
			if m, _ := bus.MessageFrom(ctx); m.Position.Seq >= 6 && !stuck.TryLock() {
				return errors.New("stuck")
			} else if m.Position.Seq >= 6 {
				stuck.Unlock()
			}
			typed.add(e.ID)
			return nil
		}, bus.StartAt(bus.Beginning()))
		b.Handle("order.*", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error { pattern.add(m.ID); return nil }), bus.StartAt(bus.Beginning()))
		start(t, b)
		for i := range 20 {
			b.Publish(ctx, OrderPlaced{ID: fmt.Sprint(i)})
		}
		waitFor(t, "both subscriptions", func() bool { return len(pattern.get()) >= 20 && len(typed.get()) >= typedWant })
		b.Close()
	}
	var p1, p2 log[string]
	run(&p1, 5)
	if n := len(typed.get()); n != 5 {
		t.Fatalf("typed handled %d before the restart, want 5", n)
	}
	cps, _ := mem.LoadCheckpoints(ctx, "billing")
	pcps, _ := mem.LoadCheckpoints(ctx, "billing@order.*")
	if cps["order.placed"].Seq != 5 || pcps["order.placed"].Seq != 20 {
		t.Fatalf("checkpoints: typed %v, pattern %v; want seq 5 and 20", cps, pcps)
	}
	stuck.Unlock() // the typed handler works again
	run(&p2, 40)
	if n := len(typed.get()); n != 40 {
		t.Errorf("typed handled %d in all, want 5 + the 15 it had left + 20 new", n)
	}
	if len(p2.get()) != 20 {
		t.Errorf("pattern handled %d after the restart, want the 20 new ones", len(p2.get()))
	}
}
