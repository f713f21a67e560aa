// Package bus is durabus's typed event bus: publish Go values as events,
// subscribe typed handlers per event type, and let the follower (package
// replay) deliver every event of a topic in order, at least once, across
// disconnects, stalls and restarts.
//
//	type OrderPlaced struct{ ID string; Total int }
//	func (OrderPlaced) EventType() string { return "order.placed" }
//
//	b, _ := bus.New(tr, bus.WithSource("checkout"), bus.WithConsumer("billing"))
//	bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error { … })
//	go b.Run(ctx)
//	pos, err := b.Publish(ctx, OrderPlaced{ID: "o-1", Total: 42})
//
// A Bus sits on a transport.Transport (redistransport for Redis,
// memtransport in process). It never closes the transport. Every exported
// method is safe for concurrent use.
//
// Topics: an event type's topic is its type name, unless WithRoute sends it
// to another topic (several types on one topic share its order). Handlers of
// one topic run one at a time, in order; topics run concurrently.
//
// Partitions: WithPartitions splits a topic into N topics of its own, by
// the hash of each event's key (WithKey, Keyed), so that order is kept per
// key and the partitions can be shared out; a subscription on the topic
// follows every partition. See docs/groups.md.
//
// Bad input never stops a topic: an event whose envelope cannot be decoded,
// whose type has no handler on its topic, whose payload does not decode into
// the handler's type, or whose version cannot be upcast is reported to the
// WithOnError callback as a *DeliveryError and set aside.
package bus
