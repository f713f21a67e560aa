package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// HealthTopic is the topic Health publishes its probes to.
const HealthTopic = "_durabus.health"

// Health proves that delivery works end to end: it subscribes to
// HealthTopic, publishes a probe event, and waits until the probe comes back
// live. It returns the round-trip time. Use a ctx with a deadline.
func (b *Bus) Health(ctx context.Context) (time.Duration, error) {
	if b.isClosed() {
		return 0, ErrClosed
	}
	start := time.Now()
	sub, err := b.tr.Subscribe(ctx, HealthTopic)
	if err != nil {
		return 0, fmt.Errorf("bus: health: subscribe: %w", err)
	}
	defer sub.Close()
	e, err := envelope.New("durabus.health", map[string]string{"source": b.cfg.source}, envelope.WithSource(b.cfg.source))
	if err != nil {
		return 0, fmt.Errorf("bus: health: %w", err)
	}
	msg, err := b.message(HealthTopic, e)
	if err != nil {
		return 0, fmt.Errorf("bus: health: %w", err)
	}
	pos, err := b.tr.Publish(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("bus: health: publish: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bus: health: probe seq %d not delivered: %w", pos.Seq, ctx.Err())
		case ev, ok := <-sub.Events():
			if !ok {
				return 0, fmt.Errorf("bus: health: subscription ended: %v", sub.Err())
			}
			if ev.Kind == transport.Frame && ev.Delivery.Position.Seq == pos.Seq && ev.Delivery.Position.Epoch == pos.Epoch {
				return time.Since(start), nil
			}
		}
	}
}
