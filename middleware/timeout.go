package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/durabus/durabus/bus"
)

// Timeout gives every call of the handler a ctx that ends d after the call
// starts (or earlier, when the caller's ctx does). Placed inside Retry, as
// Default does, each attempt gets a fresh deadline; placed outside, one
// deadline covers all attempts. Cancellation is cooperative: a handler that
// ignores its ctx runs on, and Timeout waits for it, because a topic's
// events are handled one at a time. When the call fails after its deadline
// passed, the error wraps context.DeadlineExceeded and the handler's error.
// d ≤ 0 disables it.
func Timeout(d time.Duration) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		if d <= 0 {
			return next
		}
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
			tctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			err := next.Handle(tctx, m)
			// tctx.Err() is set by a timer that may run late on a busy
			// machine: the deadline itself says whether it passed.
			dl, _ := tctx.Deadline()
			passed := errors.Is(tctx.Err(), context.DeadlineExceeded) || !time.Now().Before(dl)
			if err != nil && ctx.Err() == nil && passed && !errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("middleware: handler timed out after %v: %w (%w)", d, context.DeadlineExceeded, err)
			}
			return err
		})
	}
}
