package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/durabus/durabus/bus"
)

// Defaults of RetryConfig.
const (
	DefaultMaxAttempts     = 5
	DefaultInitialInterval = 100 * time.Millisecond
	DefaultMaxInterval     = 5 * time.Second
	DefaultMultiplier      = 2.0
	DefaultJitter          = 0.5
)

// RetryConfig configures Retry. The zero value uses the defaults.
type RetryConfig struct {
	// MaxAttempts bounds the handler calls, the first one included.
	// 0 means DefaultMaxAttempts (5); a negative value means no bound
	// (then MaxElapsed or the ctx ends the retries).
	MaxAttempts int
	// MaxElapsed bounds the time since the first call after which no new
	// attempt starts. 0 means no bound.
	MaxElapsed time.Duration
	// InitialInterval, MaxInterval and Multiplier shape the exponential
	// backoff between attempts. Defaults 100 ms, 5 s and 2.
	InitialInterval, MaxInterval time.Duration
	Multiplier                   float64
	// Jitter is the randomization factor of each wait, 0..1: a wait of w
	// becomes a random value in [w(1−j), w(1+j)]. 0 means DefaultJitter
	// (0.5); a negative value means none.
	Jitter float64
	// OnRetry, when set, is called after each failed attempt that will be
	// retried, with the wait before the next one. Default none.
	OnRetry func(ctx context.Context, m *bus.Message, attempt int, err error, wait time.Duration)
}

func (c RetryConfig) withDefaults() RetryConfig {
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.InitialInterval <= 0 {
		c.InitialInterval = DefaultInitialInterval
	}
	if c.MaxInterval < c.InitialInterval {
		c.MaxInterval = max(DefaultMaxInterval, c.InitialInterval)
	}
	if c.Multiplier < 1 {
		c.Multiplier = DefaultMultiplier
	}
	switch {
	case c.Jitter == 0:
		c.Jitter = DefaultJitter
	case c.Jitter < 0:
		c.Jitter = 0
	case c.Jitter > 1:
		c.Jitter = 1
	}
	return c
}

// PermanentError marks an error that retrying cannot fix: Retry returns it
// at once. Create it with Permanent.
type PermanentError struct{ Err error }

// Permanent wraps err so that Retry gives up on it at once; nil stays nil.
// Errors with a method Permanent() bool that returns true (such as
// *bus.DeliveryError) and backoff.Permanent errors are permanent too.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true.
func (e *PermanentError) Permanent() bool { return true }

// IsPermanent reports whether err, or an error it wraps, is permanent (see
// Permanent).
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return true
	}
	var bp *backoff.PermanentError
	return errors.As(err, &bp)
}

// Retry calls the handler again when it fails, with exponential backoff
// and jitter (cenkalti/backoff/v4), until it succeeds, a permanent error
// (IsPermanent) comes back, MaxAttempts calls were made or MaxElapsed has
// passed. Then it returns the last error unchanged, so that DeadLetter (or
// the bus) sees the handler's own error. A nack (bus.Nack) is returned at
// once: the bus delivers the event again after the nack's delay; Attempt(ctx) tells the handler
// which attempt it is in. Waits end early when the ctx ends; the last error
// is then returned wrapped together with the ctx's error.
func Retry(cfg RetryConfig) bus.Middleware {
	cfg = cfg.withDefaults()
	return func(next bus.Handler) bus.Handler {
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
			ctx, c := withCall(ctx)
			bo := &backoff.ExponentialBackOff{
				InitialInterval:     cfg.InitialInterval,
				RandomizationFactor: cfg.Jitter,
				Multiplier:          cfg.Multiplier,
				MaxInterval:         cfg.MaxInterval,
				MaxElapsedTime:      cfg.MaxElapsed,
				Stop:                backoff.Stop,
				Clock:               backoff.SystemClock,
			}
			bo.Reset()
			for attempt := 1; ; attempt++ {
				c.setAttempt(attempt)
				err := next.Handle(ctx, m)
				if err == nil || IsPermanent(err) || bus.IsNack(err) {
					return err // a nack: the bus delivers it again soon
				}
				if cfg.MaxAttempts > 0 && attempt >= cfg.MaxAttempts {
					return err
				}
				if ctx.Err() != nil {
					return fmt.Errorf("%w (retry stopped: %w)", err, ctx.Err())
				}
				wait := bo.NextBackOff()
				if wait == backoff.Stop {
					return err
				}
				if cfg.OnRetry != nil {
					cfg.OnRetry(ctx, m, attempt, err, wait)
				}
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return fmt.Errorf("%w (retry stopped: %w)", err, ctx.Err())
				case <-t.C:
				}
			}
		})
	}
}
