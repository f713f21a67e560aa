// Command services is the event-driven services example of the Redis Pub/Sub
// guides, made durable. An order service publishes OrderPlaced; a billing
// and a notification service, each a bus with its own durable consumer
// name, react to it; billing publishes PaymentCaptured. Both event types are
// routed to one topic, "orders", so every service sees the events of an
// order in the order they happened.
//
// Billing and notifications start only after the first orders were placed,
// as if they had been down: a durable consumer starts at the beginning the
// first time and at its checkpoint after that, so no order is missed.
//
//	go run ./examples/services [--n 6] [--redis redis://localhost:6379]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/transport"
)

// OrderPlaced is published by the order service.
type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Cents    int    `json:"total_cents"`
}

func (OrderPlaced) EventType() string { return "order.placed" }

// PaymentCaptured is published by billing once an order is paid.
type PaymentCaptured struct {
	OrderID string `json:"order_id"`
	Cents   int    `json:"cents"`
}

func (PaymentCaptured) EventType() string { return "payment.captured" }

// service returns the bus of one service. Every service routes both types
// to the topic "orders".
func service(tr transport.Transport, name string, opts ...bus.Option) (*bus.Bus, error) {
	return bus.New(tr, append(opts,
		bus.WithSource(name),
		bus.WithRoute("order.placed", "orders"),
		bus.WithRoute("payment.captured", "orders"))...)
}

func main() { exredis.Main("services", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("services", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	n := fs.Int("n", 6, "orders to place, half of them before billing and notifications start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tr, _, closeAll, err := exredis.Transport(ctx, *redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeAll()
	out := exredis.NewSyncWriter(stdout)

	// The order service only publishes.
	checkout, err := service(tr, "checkout")
	if err != nil {
		return err
	}
	defer checkout.Close()
	placeOrders := func(from, to int) error {
		for i := from; i < to; i++ {
			o := OrderPlaced{OrderID: fmt.Sprintf("order-%d", i+1), Customer: fmt.Sprintf("customer%d@example.com", i%3+1), Cents: 1000 + 250*i}
			pos, err := checkout.Publish(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "checkout:      placed %s (orders seq %d)\n", o.OrderID, pos.Seq)
		}
		return nil
	}
	if err := placeOrders(0, *n/2); err != nil { // billing and notifications are down
		return err
	}

	// Billing captures the payment of each order and says so.
	billing, err := service(tr, "billing", bus.WithConsumer("billing"))
	if err != nil {
		return err
	}
	defer billing.Close()
	_, err = bus.Subscribe(billing, func(ctx context.Context, o *OrderPlaced) error {
		// At least once: after a crash between this Publish and billing's
		// next checkpoint, this runs again for the same order; a real
		// billing service makes the capture idempotent by order id.
		_, err := billing.Publish(ctx, PaymentCaptured{OrderID: o.OrderID, Cents: o.Cents})
		fmt.Fprintf(out, "billing:       captured $%d.%02d for %s\n", o.Cents/100, o.Cents%100, o.OrderID)
		return err
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		return err
	}
	// Other types on the topic (its own PaymentCaptured) are not billing's
	// business: without this catch-all they are reported as unknown types.
	if _, err := billing.Handle("orders", bus.HandlerFunc(func(context.Context, *bus.Message) error { return nil })); err != nil {
		return err
	}

	// Notifications mails the customer about both events.
	notify, err := service(tr, "notifications", bus.WithConsumer("notifications"))
	if err != nil {
		return err
	}
	defer notify.Close()
	var received, paid atomic.Int64
	_, err = bus.Subscribe(notify, func(ctx context.Context, o *OrderPlaced) error {
		fmt.Fprintf(out, "notifications: mail to %s: we received %s\n", o.Customer, o.OrderID)
		received.Add(1)
		return nil
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		return err
	}
	_, err = bus.Subscribe(notify, func(ctx context.Context, p *PaymentCaptured) error {
		fmt.Fprintf(out, "notifications: receipt for %s: paid $%d.%02d\n", p.OrderID, p.Cents/100, p.Cents%100)
		paid.Add(1)
		return nil
	})
	if err != nil {
		return err
	}

	for _, b := range []*bus.Bus{billing, notify} {
		go b.Run(ctx) // until ctx ends or Close
	}
	if err := placeOrders(*n/2, *n); err != nil {
		return err
	}
	for received.Load() < int64(*n) || paid.Load() < int64(*n) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Fprintf(out, "summary: %d orders placed, %d payments captured, %d mails sent\n", *n, paid.Load(), received.Load()+paid.Load())
	return nil
}
