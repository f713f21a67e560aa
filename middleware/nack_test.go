package middleware_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

type Job struct {
	N int `json:"n"`
}

func (Job) EventType() string { return "job" }

// runBus runs b until the test ends, and waits until it is ready.
func runBus(t *testing.T, b *bus.Bus) {
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
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestNackIsDeliveredAgainWithoutBackoff(t *testing.T) {
	// 300 nacks, then success. With the bus's backoff (growing to 5 s)
	// this would take minutes; a nack waits its own delay every time, and
	// Retry inside the chain passes it up instead of retrying it itself.
	mem, _ := memtransport.New()
	t.Cleanup(func() { mem.Close() })
	b, _ := bus.New(mem, bus.WithMiddleware(middleware.Default(middleware.Options{})...),
		bus.WithFollowerOptions(replay.WithBackoff(time.Second, 5*time.Second, 2)))
	var calls, attempts atomic.Int64
	done := make(chan struct{})
	sub, err := bus.Subscribe(b, func(ctx context.Context, j *Job) error {
		m, _ := bus.MessageFrom(ctx)
		attempts.Store(int64(m.Attempt))
		if calls.Add(1) <= 300 {
			return bus.NackAfter(errors.New("not yet"), time.Millisecond)
		}
		close(done)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	runBus(t, b)
	if _, err := b.Publish(context.Background(), Job{N: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("not handled after %d calls", calls.Load())
	}
	if n := attempts.Load(); n != 301 {
		t.Errorf("the last delivery is attempt %d, want 301 (Retry makes no calls of its own for a nack)", n)
	}
	waitUntil(t, "the stats", func() bool { return sub.Status().Stats.Delivered == 1 })
	if s := sub.Status().Stats; s.Nacks != 300 || s.HandlerErrors != 0 {
		t.Errorf("stats: %d nacks, %d handler errors; want 300 and 0", s.Nacks, s.HandlerErrors)
	}
}

func TestNackedEventIsDeadLetteredAfterItsMaxDeliveries(t *testing.T) {
	mem, _ := memtransport.New()
	t.Cleanup(func() { mem.Close() })
	var b *bus.Bus
	pub := middleware.PublisherFunc(func(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
		return b.PublishEnvelope(ctx, topic, e)
	})
	b, _ = bus.New(mem, bus.WithMiddleware(middleware.Default(middleware.Options{DeadLetter: pub, MaxDeliveries: 5})...))
	var calls atomic.Int64
	var handled []int
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	if _, err := bus.Subscribe(b, func(ctx context.Context, j *Job) error {
		if j.N == 1 {
			calls.Add(1)
			return bus.NackAfter(nil, time.Millisecond)
		}
		<-mu
		handled = append(handled, j.N)
		mu <- struct{}{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dead := make(chan *bus.Message, 1)
	if _, err := b.Handle(bus.DeadLetterTopic("job"), bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
		dead <- m
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	runBus(t, b)
	for n := range 3 {
		if _, err := b.Publish(context.Background(), Job{N: n + 1}); err != nil {
			t.Fatal(err)
		}
	}
	var m *bus.Message
	select {
	case m = <-dead:
	case <-time.After(30 * time.Second):
		t.Fatalf("no dead letter after %d calls", calls.Load())
	}
	if c := calls.Load(); c != 5 {
		t.Errorf("%d deliveries before the dead letter, want 5", c)
	}
	if got := m.Extensions[bus.ExtDeadAttempts]; got != "5" {
		t.Errorf("dead letter says %s attempts, want 5", got)
	}
	waitUntil(t, "the events after it", func() bool {
		<-mu
		defer func() { mu <- struct{}{} }()
		return len(handled) == 2
	})
}
