package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// Bug: Subscribe after Run's ctx ended raced Run's wg.Wait (go test -race
// reported a DATA RACE). Now it is refused, and the race is gone.
func TestSubscribeWhileRunReturnsDoesNotRace(t *testing.T) {
	for range 20 {
		b, err := bus.New(newMem(t), fast)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		if err := b.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				_, err := b.Handle("t"+string(rune('a'+i%26))+strings.Repeat("x", i/26), bus.HandlerFunc(func(context.Context, *bus.Message) error { return nil }))
				if errors.Is(err, bus.ErrClosed) {
					return
				}
			}
		}()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		b.Close()
	}
}

// Bug: Ready blocked until its ctx ended when Close came before Run.
func TestReadyAfterCloseBeforeRunReturnsErrClosed(t *testing.T) {
	b, err := bus.New(newMem(t))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := b.Handle("t", bus.HandlerFunc(func(context.Context, *bus.Message) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Ready(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Ready after Close = %v, want ErrClosed", err)
	}
	select {
	case <-sub.Done():
	case <-ctx.Done():
		t.Fatal("the subscription's Done is not closed after Close")
	}
	if err := b.Run(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

// Bug: a batch the bus refused left its publish hooks open.
func TestPublishBatchRefusedEndsEveryHook(t *testing.T) {
	var started, ended atomic.Int32
	var endErrs atomic.Int32
	hook := func(ctx context.Context, _ string, _ *envelope.Envelope) (context.Context, func(transport.Position, error)) {
		started.Add(1)
		return ctx, func(_ transport.Position, err error) {
			ended.Add(1)
			if err != nil {
				endErrs.Add(1)
			}
		}
	}
	b, err := bus.New(newMem(t), bus.WithPublishHook(hook), bus.WithMaxEventSize(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	events := []bus.Event{
		OrderPlaced{ID: "a"}, OrderPlaced{ID: "b"},
		OrderPlaced{ID: strings.Repeat("x", 2048)}, // refused: too large
		OrderPlaced{ID: "d"},
	}
	if _, err := b.PublishBatch(context.Background(), events); !errors.Is(err, transport.ErrTooLarge) {
		t.Fatalf("PublishBatch = %v, want ErrTooLarge", err)
	}
	if s, e, ee := started.Load(), ended.Load(), endErrs.Load(); s != 3 || e != s || ee != s {
		t.Fatalf("hooks started %d, ended %d (%d with the error); want 3, 3, 3", s, e, ee)
	}
}

func TestSubscriptionStopWhileRunning(t *testing.T) {
	mem := newMem(t)
	b, err := bus.New(mem, fast)
	if err != nil {
		t.Fatal(err)
	}
	var a, c log[string]
	subA, err := b.Handle("a", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error { a.add(m.ID); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Handle("c", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error { c.add(m.ID); return nil })); err != nil {
		t.Fatal(err)
	}
	start(t, b)
	ctx := context.Background()
	if _, err := b.Publish(ctx, OrderPlaced{ID: "1"}, bus.ToTopic("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's first event", func() bool { return len(a.get()) == 1 })
	subA.Stop()
	select {
	case <-subA.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	for _, s := range b.Status() {
		if s.Key == "a" {
			t.Fatal("a stopped subscription is still listed")
		}
	}
	if _, err := b.Publish(ctx, OrderPlaced{ID: "2"}, bus.ToTopic("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, OrderPlaced{ID: "3"}, bus.ToTopic("c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c's event", func() bool { return len(c.get()) == 1 })
	// A stopped topic may be subscribed again while the bus runs.
	var again log[string]
	sub, err := b.Handle("a", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error { again.add(m.ID); return nil }), bus.StartAt(bus.Beginning()))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's events again", func() bool { return len(again.get()) == 2 })
	if got := len(a.get()); got != 1 {
		t.Fatalf("the stopped subscription handled %d events, want 1", got)
	}
	if st := sub.Status(); st.Key != "a" || st.Stats.Delivered != 2 {
		t.Fatalf("Status = %+v", st)
	}
	sub.Stop()
	sub.Stop() // twice is fine
}

func TestSubscriptionStopBeforeRun(t *testing.T) {
	b, err := bus.New(newMem(t), fast)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	sub, err := b.Handle("a", bus.HandlerFunc(func(context.Context, *bus.Message) error { n.Add(1); return nil }))
	if err != nil {
		t.Fatal(err)
	}
	sub.Stop()
	<-sub.Done()
	if len(b.Status()) != 0 {
		t.Fatalf("Status = %+v, want no subscription", b.Status())
	}
	// The key is free again: a new handler takes it, and only it gets the
	// event.
	got := make(chan struct{}, 1)
	if _, err := b.Handle("a", bus.HandlerFunc(func(context.Context, *bus.Message) error { got <- struct{}{}; return nil })); err != nil {
		t.Fatal(err)
	}
	start(t, b)
	if _, err := b.Publish(context.Background(), OrderPlaced{ID: "1"}, bus.ToTopic("a")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the new handler got nothing")
	}
	if n.Load() != 0 {
		t.Fatalf("the stopped handler was called %d times", n.Load())
	}
}

func TestSubscriptionDrainDeliversWhatWasPublished(t *testing.T) {
	b, err := bus.New(newMem(t), fast)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var got log[string]
	sub, err := b.Handle("a", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		<-release
		got.add(m.ID)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	ctx := context.Background()
	for i := range 20 {
		if _, err := b.Publish(ctx, OrderPlaced{ID: string(rune('a' + i))}, bus.ToTopic("a")); err != nil {
			t.Fatal(err)
		}
	}
	drained := make(chan error, 1)
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		drained <- sub.Drain(dctx)
	}()
	close(release)
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if n := len(got.get()); n != 20 {
		t.Fatalf("Drain returned after %d of 20 events", n)
	}
	<-sub.Done()
}

func TestShutdownAbandonsAHandlerThatIgnoresItsCtx(t *testing.T) {
	b, err := bus.New(newMem(t), bus.WithFollowerOptions())
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	if _, err := b.Handle("stuck", bus.HandlerFunc(func(context.Context, *bus.Message) error {
		close(entered)
		<-release // ignores its ctx
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), OrderPlaced{ID: "1"}, bus.ToTopic("stuck")); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = b.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `"stuck"`) {
		t.Fatalf("Shutdown = %v, want a deadline error naming \"stuck\"", err)
	}
	release <- struct{}{}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// coreOnly offers the core Transport and nothing optional.
type coreOnly struct{ transport.Transport }

func TestBusRefusesWhatItsTransportDoesNotOffer(t *testing.T) {
	tr := coreOnly{newMem(t)}
	if _, err := bus.New(tr, bus.WithConsumer("billing")); !errors.Is(err, bus.ErrInvalidOption) || !strings.Contains(err.Error(), "CheckpointStore") {
		t.Errorf("New with a consumer = %v, want ErrInvalidOption naming CheckpointStore", err)
	}
	b, err := bus.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Handle("order.*", bus.HandlerFunc(func(context.Context, *bus.Message) error { return nil })); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Handle of a pattern = %v, want ErrUnsupported", err)
	}
	if _, err := b.DeadLetters(context.Background(), "orders", 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("DeadLetters = %v, want ErrUnsupported", err)
	}
	if _, err := b.Handle("orders", bus.HandlerFunc(func(context.Context, *bus.Message) error { return nil })); err != nil {
		t.Errorf("Handle of a topic: %v", err)
	}
}
