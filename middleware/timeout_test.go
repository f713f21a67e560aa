package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
)

func TestTimeout(t *testing.T) {
	waitCtx := func(ctx context.Context, _ *bus.Message) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
			return nil
		}
	}
	ignoreCtx := func(ctx context.Context, _ *bus.Message) error {
		time.Sleep(30 * time.Millisecond)
		return errBoom
	}
	tests := []struct {
		name       string
		d          time.Duration
		h          bus.HandlerFunc
		want       error
		also       error
		noDeadline bool
	}{
		{"fast handler", time.Second, func(context.Context, *bus.Message) error { return nil }, nil, nil, false},
		{"handler error passes", time.Second, func(context.Context, *bus.Message) error { return errBoom }, errBoom, nil, false},
		{"deadline ends a waiting handler", 20 * time.Millisecond, waitCtx, context.DeadlineExceeded, nil, false},
		{"late error wraps both", 10 * time.Millisecond, ignoreCtx, context.DeadlineExceeded, errBoom, false},
		{"zero disables", 0, func(ctx context.Context, _ *bus.Message) error {
			if _, ok := ctx.Deadline(); ok {
				return errors.New("deadline set")
			}
			return nil
		}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := middleware.Timeout(tt.d)(tt.h).Handle(context.Background(), msg(t, 1))
			if (tt.want == nil) != (err == nil) || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.also != nil && !errors.Is(err, tt.also) {
				t.Fatalf("err = %v, want it to wrap %v too", err, tt.also)
			}
		})
	}
}

func TestTimeoutParentCancelNotWrapped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := middleware.Timeout(time.Second)(bus.HandlerFunc(func(ctx context.Context, _ *bus.Message) error { return ctx.Err() })).Handle(ctx, msg(t, 1))
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.Canceled only", err)
	}
}
