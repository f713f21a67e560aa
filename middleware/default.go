package middleware

import (
	"context"
	"log/slog"
	"time"

	"github.com/durabus/durabus/bus"
)

// DefaultTimeout is the per-attempt timeout Default uses when
// Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Options configures Default. The zero value gives Logging off, Retry with
// its defaults, a 30 s Timeout, Recover, and no tracing, metrics,
// dead-letter or dedupe.
type Options struct {
	// Tracing is the tracing middleware, e.g. tracing.New().Middleware.
	// Default none.
	Tracing bus.Middleware
	// Metrics records handler durations and outcomes, e.g.
	// metrics.New(mp).Middleware (package middleware/metrics). Default none.
	Metrics bus.Middleware
	// Logger receives Logging's lines and a warn line per failed attempt
	// that is retried. Default none (silent).
	Logger *slog.Logger
	// DeadLetter, when set, receives the events whose retries are spent
	// (usually the bus itself). Default none: the error goes back to the
	// bus, which calls the chain again with backoff, and the topic waits.
	DeadLetter Publisher
	// MaxDeliveries bounds the deliveries of an event whose handler keeps
	// returning bus.Nack before it is dead-lettered (with DeadLetter set).
	// 0 means DefaultMaxDeliveries (10).
	MaxDeliveries int
	// Retry configures Retry. Zero fields take Retry's defaults (5
	// attempts, 100 ms doubling to 5 s, jitter 0.5).
	Retry RetryConfig
	// Timeout bounds each attempt. 0 means DefaultTimeout; negative means
	// none.
	Timeout time.Duration
	// Dedupe, when set, drops events already handled. Default none.
	Dedupe DedupeStore
}

// Default returns the recommended chain, outermost first, for
// bus.WithMiddleware:
//
//	Tracing → Metrics → Logging → DeadLetter → Retry → Timeout → Dedupe → Recover → handler
//
// A span and a duration cover the whole processing of an event; the log
// line reports the final outcome and the attempts; an event is
// dead-lettered only once Retry has given up; every attempt gets a fresh
// deadline; Dedupe claims the id per attempt, under that deadline, and
// marks it handled only after the handler succeeded; Recover sits
// innermost so that a panic becomes an error that Dedupe (which releases
// its claim) and Retry both see. Middleware left unset are omitted.
func Default(o Options) []bus.Middleware {
	var mw []bus.Middleware
	if o.Tracing != nil {
		mw = append(mw, o.Tracing)
	}
	if o.Metrics != nil {
		mw = append(mw, o.Metrics)
	}
	if o.Logger != nil {
		mw = append(mw, Logging(o.Logger))
		if o.Retry.OnRetry == nil {
			l := o.Logger
			o.Retry.OnRetry = func(ctx context.Context, m *bus.Message, attempt int, err error, wait time.Duration) {
				l.LogAttrs(ctx, slog.LevelWarn, "durabus: handler attempt failed, retrying",
					slog.String("topic", m.Topic), slog.Uint64("seq", m.Position.Seq), slog.String("id", m.ID),
					slog.String("type", m.Type), slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.Any("err", err))
			}
		}
	}
	if o.DeadLetter != nil {
		mw = append(mw, DeadLetterAfter(o.DeadLetter, o.MaxDeliveries))
	}
	mw = append(mw, Retry(o.Retry))
	switch {
	case o.Timeout == 0:
		mw = append(mw, Timeout(DefaultTimeout))
	case o.Timeout > 0:
		mw = append(mw, Timeout(o.Timeout))
	}
	if o.Dedupe != nil {
		mw = append(mw, Dedupe(o.Dedupe))
	}
	return append(mw, Recover())
}
