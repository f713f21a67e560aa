package middleware

import (
	"context"
	"runtime/debug"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
)

// PanicError is the error Recover returns for a handler that panicked:
// the follower's own panic error, so one errors.As finds either. Its
// Unwrap returns the panic value when that is an error.
type PanicError = replay.PanicError

// Recover turns a panic in the handler into a *PanicError with the stack,
// so that Retry sees an ordinary error and the topic goes on. A PanicError
// is not permanent: Retry calls the handler again.
func Recover() bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next.Handle(ctx, m)
		})
	}
}
