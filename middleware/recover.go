package middleware

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/durabus/durabus/bus"
)

// PanicError is the error Recover returns for a handler that panicked.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the goroutine's stack at the panic (runtime/debug.Stack).
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("middleware: handler panicked: %v", e.Value) }

// Unwrap returns Value when it is an error, so errors.Is and errors.As see
// through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

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
