package middleware_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
)

// chain builds Default's chain around h with fast retries.
func chain(h bus.Handler, o middleware.Options) bus.Handler {
	if o.Retry.InitialInterval == 0 {
		o.Retry.InitialInterval, o.Retry.MaxInterval = time.Millisecond, 2*time.Millisecond
	}
	return bus.Chain(h, middleware.Default(o)...)
}

func TestDefaultDeadLetterOnlyAfterRetriesSpent(t *testing.T) {
	p := &recordingPublisher{}
	var published []int // dead letters seen at each attempt
	h := chain(bus.HandlerFunc(func(ctx context.Context, _ *bus.Message) error {
		p.mu.Lock()
		published = append(published, len(p.envs))
		p.mu.Unlock()
		return errBoom
	}), middleware.Options{DeadLetter: p, Retry: middleware.RetryConfig{MaxAttempts: 4}})
	if err := h.Handle(context.Background(), msg(t, 3)); err != nil {
		t.Fatalf("err = %v, want nil: the topic moves on", err)
	}
	if len(published) != 4 || published[3] != 0 {
		t.Fatalf("attempts %d, dead letters seen during them %v: want 4 attempts before any dead letter", len(published), published)
	}
	if len(p.envs) != 1 || p.envs[0].Extensions["deadattempts"] != "4" {
		t.Fatalf("dead letters = %d %v", len(p.envs), p.envs)
	}
}

func TestDefaultFreshDeadlinePerAttempt(t *testing.T) {
	var mu sync.Mutex
	var deadlines []time.Time
	h := chain(bus.HandlerFunc(func(ctx context.Context, _ *bus.Message) error {
		dl, ok := ctx.Deadline()
		if !ok {
			return middleware.Permanent(errors.New("no deadline"))
		}
		mu.Lock()
		deadlines = append(deadlines, dl)
		mu.Unlock()
		<-ctx.Done() // every attempt uses its whole deadline
		return ctx.Err()
	}), middleware.Options{Timeout: 30 * time.Millisecond, Retry: middleware.RetryConfig{MaxAttempts: 3}})
	err := h.Handle(context.Background(), msg(t, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if len(deadlines) != 3 {
		t.Fatalf("attempts = %d, want 3: a shared deadline would have starved the later ones", len(deadlines))
	}
	for i := 1; i < len(deadlines); i++ {
		if !deadlines[i].After(deadlines[i-1].Add(25 * time.Millisecond)) {
			t.Fatalf("deadline %d (%v) is not fresh after %v", i, deadlines[i], deadlines[i-1])
		}
	}
}

func TestDefaultPanicIsRetried(t *testing.T) {
	calls := 0
	h := chain(bus.HandlerFunc(func(ctx context.Context, _ *bus.Message) error {
		calls++
		if middleware.Attempt(ctx) < 3 {
			panic("flaky")
		}
		return nil
	}), middleware.Options{})
	if err := h.Handle(context.Background(), msg(t, 1)); err != nil {
		t.Fatalf("err = %v", err)
	}
	if calls != 3 {
		t.Fatalf("calls = %d, want 3: two panics retried", calls)
	}
	p := &recordingPublisher{}
	h = chain(bus.HandlerFunc(func(context.Context, *bus.Message) error { panic("always") }), middleware.Options{DeadLetter: p, Retry: middleware.RetryConfig{MaxAttempts: 2}})
	if err := h.Handle(context.Background(), msg(t, 2)); err != nil {
		t.Fatalf("err = %v", err)
	}
	if len(p.envs) != 1 || p.envs[0].Extensions["deaderror"] != "handler panicked: always" {
		t.Fatalf("dead letters %v", p.envs)
	}
}

func TestDefaultMarksSeenOnlyAfterSuccess(t *testing.T) {
	store := middleware.NewMemoryStore(0, 0)
	m := msg(t, 1)
	calls := 0
	h := chain(bus.HandlerFunc(func(ctx context.Context, _ *bus.Message) error {
		calls++
		if _, done, err := store.Claim(ctx, m.ID); done || !errors.Is(err, middleware.ErrInFlight) {
			t.Errorf("attempt %d: id seen=%v err=%v while the handler runs: want in flight, not seen", calls, done, err)
		}
		if calls < 3 {
			return errBoom
		}
		return nil
	}), middleware.Options{Dedupe: store})
	if err := h.Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("calls = %d, want 3 attempts and the redelivery dropped", calls)
	}
}

func TestDefaultOmitsUnset(t *testing.T) {
	if n := len(middleware.Default(middleware.Options{})); n != 3 {
		t.Fatalf("zero Options: %d middleware, want Retry, Timeout, Recover", n)
	}
	if n := len(middleware.Default(middleware.Options{Timeout: -1})); n != 2 {
		t.Fatalf("no timeout: %d middleware", n)
	}
}
