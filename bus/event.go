package bus

import (
	"context"
	"errors"
	"time"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// Event is a Go type that names itself as an event type. EventType must
// have a value receiver and return a stable name (it is stored with every
// event and never changes once data exists), such as "order.placed".
type Event interface {
	EventType() string
}

// Versioned is an Event that declares the schema version of its payload.
// Events without it are version 1. Older versions met during replay are
// brought up to date with upcasters (see Upcast).
type Versioned interface {
	EventVersion() int
}

// Keyed is an Event that names its partition key: on a partitioned topic
// (WithPartitions) the events of one key go to one partition and keep
// their order. WithKey on Publish wins over it. An empty key makes the
// event unkeyed: unkeyed events are spread evenly over the partitions, and
// no order is promised between them.
type Keyed interface {
	PartitionKey() string
}

// ExtPartitionKey is the envelope extension that carries an event's
// partition key (the CloudEvents partitioning extension's name), so that
// consumers, and re-publishing tools (dead-letter Requeue), see it. It
// never changes once data exists.
const ExtPartitionKey = "partitionkey"

// Message is an event as a handler sees it: the decoded envelope and where
// it sits in its topic. Every attempt at an event (retries by the bus or by
// middleware) shares one Message: handlers and middleware read it and must
// not modify it, Data's bytes included (copy first).
type Message struct {
	*envelope.Envelope
	// Topic is the topic the event was published to.
	Topic string
	// Position is the event's position in Topic.
	Position transport.Position
	// Replayed is true when the event came from the backlog (catch-up or
	// gap repair) rather than live.
	Replayed bool
	// Subscription is the topic or pattern the handler was registered
	// for; middleware that keeps state per handler (Dedupe) keys by it.
	Subscription string
	// Attempt counts the deliveries of this event to the handler chain in
	// this process: 1 for the first, more after a failure or a Nack (the
	// calls Retry makes inside one delivery are not counted here). A
	// restart or a takeover by another group member counts from 1 again.
	Attempt int
}

// Nack returns an error that asks for the event to be delivered again
// soon (replay.DefaultNackDelay), without the bus's backoff, which grows to
// seconds while a handler keeps failing. Return it from a handler that
// cannot take the event now but expects to shortly (a lock held, a
// dependency warming up). The topic (the partition) waits meanwhile, so
// order is kept. Retry passes a nack up at once; DeadLetter sends the
// event to the dead letter after its maximum of deliveries (see
// middleware.DeadLetterAfter). err says why; it may be nil.
func Nack(err error) error { return replay.Nack(err, 0) }

// NackAfter is Nack with the delay before the next delivery.
func NackAfter(err error, after time.Duration) error { return replay.Nack(err, after) }

// IsNack reports whether err asks for the event to be delivered again
// soon (Nack, NackAfter).
func IsNack(err error) bool {
	var n *replay.NackError
	return errors.As(err, &n)
}

// Handler handles one message. A nil error marks it handled; an error is
// reported and the message retried (see replay.Handler) unless middleware
// such as DeadLetter deals with it.
type Handler interface {
	Handle(ctx context.Context, m *Message) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) error { return f(ctx, m) }

// Middleware wraps a Handler, like net/http middleware: it may act before
// and after calling next, or not call it.
type Middleware func(next Handler) Handler

// Chain applies mw so that mw[0] is the outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

type messageKey struct{}

// WithMessage returns a ctx that carries m; handlers get one from the bus.
func WithMessage(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, messageKey{}, m)
}

// MessageFrom returns the message being handled: a typed handler reaches
// the envelope (id, time, trace context, extensions) and position this way.
func MessageFrom(ctx context.Context) (*Message, bool) {
	m, ok := ctx.Value(messageKey{}).(*Message)
	return m, ok
}

func versionOf(e Event) int {
	if v, ok := e.(Versioned); ok {
		return v.EventVersion()
	}
	return 1
}
