package middleware

import (
	"context"
	"errors"
	"fmt"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// Publisher publishes an envelope as it is; *bus.Bus is one.
type Publisher interface {
	PublishEnvelope(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error)
}

var _ Publisher = (*bus.Bus)(nil)

// PublisherFunc adapts a function to Publisher, for example to reach a bus
// created after its middleware:
//
//	var b *bus.Bus
//	pub := middleware.PublisherFunc(func(ctx context.Context, t string, e *envelope.Envelope) (transport.Position, error) {
//		return b.PublishEnvelope(ctx, t, e)
//	})
type PublisherFunc func(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error)

// PublishEnvelope calls f.
func (f PublisherFunc) PublishEnvelope(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
	return f(ctx, topic, e)
}

// DeadLetter sends an event whose handler failed — after the retries
// inside it, or at once for a permanent error such as a *bus.DeliveryError
// — to the dead-letter topic bus.DeadLetterTopic(m.Topic) as
// bus.NewDeadLetter builds it (same id, with the error text, attempts,
// original topic and position as extensions), and returns nil so that the
// topic moves on. List and re-publish dead letters with Bus.DeadLetters and
// Bus.Requeue.
//
// A dead letter (an event carrying bus.ExtDeadTopic) whose handler fails
// again is not dead-lettered a second time: it stays in the dead-letter
// topic it was read from, the failure is noted for Logging, and nil is
// returned. Pattern subscriptions do not see dead-letter topics unless
// their pattern ends in ".dead".
//
// When the ctx has ended (the bus is stopping) the error is returned as it
// is, without a dead letter: the event was not given up, it is delivered
// again later. When the dead letter cannot be published, the handler's
// error is returned joined with the publish error, and the bus calls the
// chain again later: nothing is dropped.
func DeadLetter(p Publisher) bus.Middleware {
	return DeadLetterAfter(p, DefaultMaxDeliveries)
}

// DefaultMaxDeliveries is how many deliveries of a nacked event DeadLetter
// allows before it dead-letters the event.
const DefaultMaxDeliveries = 10

// DeadLetterAfter is DeadLetter with the number of deliveries of a nacked
// event (bus.Nack) before it is dead-lettered: a nack on a delivery before
// maxDeliveries (bus.Message.Attempt) goes up to the bus, which delivers
// the event again soon; on delivery maxDeliveries the event is
// dead-lettered as a failure. maxDeliveries below 1 means
// DefaultMaxDeliveries. Other errors are dead-lettered at once, as
// DeadLetter does.
func DeadLetterAfter(p Publisher, maxDeliveries int) bus.Middleware {
	if maxDeliveries < 1 {
		maxDeliveries = DefaultMaxDeliveries
	}
	return func(next bus.Handler) bus.Handler {
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
			ctx, c := withCall(ctx)
			err := next.Handle(ctx, m)
			if err == nil || ctx.Err() != nil {
				return err
			}
			if bus.IsNack(err) && m.Attempt < maxDeliveries {
				return err
			}
			if _, isDead := m.Extensions[bus.ExtDeadTopic]; isDead {
				// A dead letter failed again: it stays where it is, in
				// its dead-letter topic's backlog; no T.dead.dead chain.
				c.note(fmt.Errorf("middleware: dead letter %s from %q failed again, left in %q: %w", m.ID, m.Extensions[bus.ExtDeadTopic], m.Topic, err))
				return nil
			}
			dead := bus.DeadLetterTopic(m.Topic)
			attempts := c.attempts()
			if bus.IsNack(err) {
				attempts = m.Attempt // the deliveries, each nacked
			}
			if _, perr := p.PublishEnvelope(ctx, dead, bus.NewDeadLetter(m, err, attempts)); perr != nil {
				return errors.Join(err, fmt.Errorf("middleware: dead-letter to %q: %w", dead, perr))
			}
			c.markDead(dead)
			return nil
		})
	}
}
