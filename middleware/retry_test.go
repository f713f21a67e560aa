package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
)

func TestRetry(t *testing.T) {
	perm := middleware.Permanent(errBoom)
	delivery := &bus.DeliveryError{Topic: "orders", Err: bus.ErrUnknownType}
	tests := []struct {
		name      string
		cfg       middleware.RetryConfig
		errs      []error
		wantErr   error
		wantCalls int
	}{
		{"success at once", fastRetry(3), nil, nil, 1},
		{"fails twice then succeeds", fastRetry(5), []error{errBoom, errBoom}, nil, 3},
		{"attempts spent", fastRetry(3), []error{errBoom, errBoom, errBoom, errBoom}, errBoom, 3},
		{"permanent stops at once", fastRetry(5), []error{errBoom, perm}, errBoom, 2},
		{"Permanent() bool honoured", fastRetry(5), []error{delivery}, bus.ErrUnknownType, 1},
		{"backoff.Permanent honoured", fastRetry(5), []error{backoff.Permanent(errBoom)}, errBoom, 1},
		{"wrapped permanent honoured", fastRetry(5), []error{fmt.Errorf("ctx: %w", perm)}, errBoom, 1},
		{"default attempts is 5", middleware.RetryConfig{InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
			[]error{errBoom, errBoom, errBoom, errBoom, errBoom, errBoom}, errBoom, 5},
		{"max elapsed ends retries", middleware.RetryConfig{MaxAttempts: -1, MaxElapsed: 30 * time.Millisecond,
			InitialInterval: 10 * time.Millisecond, MaxInterval: 10 * time.Millisecond, Jitter: -1},
			slices.Repeat([]error{errBoom}, 100), errBoom, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{errs: tt.errs}
			err := middleware.Retry(tt.cfg)(s).Handle(context.Background(), msg(t, 1))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			calls := int(s.calls.Load())
			if tt.wantCalls >= 0 && calls != tt.wantCalls {
				t.Fatalf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if tt.wantCalls < 0 && (calls < 2 || calls > 10) {
				t.Fatalf("calls = %d, want a few within MaxElapsed", calls)
			}
			for i, a := range s.attempts {
				if a != i+1 {
					t.Fatalf("Attempt(ctx) on call %d = %d", i+1, a)
				}
			}
		})
	}
}

func TestRetryStopsWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &script{each: func(context.Context, int) error { cancel(); return errBoom }}
	start := time.Now()
	err := middleware.Retry(middleware.RetryConfig{InitialInterval: time.Hour, MaxInterval: time.Hour})(s).Handle(ctx, msg(t, 1))
	if !errors.Is(err, errBoom) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want boom and context.Canceled", err)
	}
	if s.calls.Load() != 1 || time.Since(start) > time.Second {
		t.Fatalf("calls = %d after %v: the wait did not end with the ctx", s.calls.Load(), time.Since(start))
	}
}

func TestRetryOnRetry(t *testing.T) {
	var seen []int
	cfg := fastRetry(3)
	cfg.OnRetry = func(_ context.Context, _ *bus.Message, attempt int, err error, wait time.Duration) {
		if !errors.Is(err, errBoom) || wait <= 0 {
			t.Errorf("OnRetry(%d, %v, %v)", attempt, err, wait)
		}
		seen = append(seen, attempt)
	}
	_ = middleware.Retry(cfg)(&script{errs: []error{errBoom, errBoom, errBoom}}).Handle(context.Background(), msg(t, 1))
	if !slices.Equal(seen, []int{1, 2}) {
		t.Fatalf("OnRetry attempts = %v, want [1 2] (none after the last)", seen)
	}
}

func TestAttemptOutsideRetry(t *testing.T) {
	if n := middleware.Attempt(context.Background()); n != 1 {
		t.Fatalf("Attempt = %d, want 1", n)
	}
}
