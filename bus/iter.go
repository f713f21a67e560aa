package bus

import (
	"context"
	"errors"
	"iter"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// Events returns an iterator over the events of the topics matching
// pattern (a topic name or a glob), for code that prefers a loop to a
// handler:
//
//	for m, err := range b.Events(ctx, "orders.*", bus.StartAt(bus.Beginning())) {
//		if err != nil { log.Print(err); continue } // a loss or an undecodable event
//		…
//	}
//
// It has the same replay, gap repair and reconnects as Subscribe. Events of
// one topic come in order; the next one is read only after the loop body
// returns. Errors (a *replay.LossError, a *DeliveryError) are yielded with a
// nil message and iteration goes on. The iteration ends when ctx ends or
// the loop breaks; a closed transport ends it with a last error. The bus's
// consumer (WithConsumer) makes it durable too, with checkpoints of its own
// under the name "<consumer>@events:<pattern>".
func (b *Bus) Events(ctx context.Context, pattern string, opts ...SubscribeOption) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		sc := subConfig{}
		for _, o := range opts {
			o(&sc)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()

		type item struct {
			m    *Message
			err  error
			next chan bool
		}
		items := make(chan item)
		send := func(it item) bool {
			select {
			case items <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		handler := func(hctx context.Context, d replay.Delivery) error {
			m, err := b.decode(d)
			if m != nil {
				m.Subscription = pattern
			}
			it := item{m: m, err: err, next: make(chan bool, 1)}
			if !send(it) {
				return ctx.Err()
			}
			select {
			case <-it.next:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		fopts := append([]replay.Option{
			replay.WithStart(sc.start),
			replay.WithLogger(b.log),
			replay.WithOnLoss(func(e *replay.LossError) { send(item{err: e}) }),
			replay.WithOnError(b.followerError),
			replay.WithDrainTimeout(0),
		}, b.cfg.followerOps...)
		if transport.IsPattern(pattern) {
			fopts = append(fopts, replay.WithPattern(pattern), replay.WithExclude(deadUnlessAsked(pattern)))
		} else {
			if _, err := b.partitions(ctx, pattern); err != nil {
				yield(nil, err)
				return
			}
			fopts = append(fopts, replay.WithTopics(b.followed(pattern)...))
		}
		if b.cfg.consumer != "" {
			fopts = append(fopts, replay.WithConsumer(b.cfg.consumer+"@events:"+pattern), replay.WithLeaseHolder(b.holder))
		}
		f, err := replay.New(b.tr, handler, fopts...)
		if err != nil {
			yield(nil, err)
			return
		}
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		for {
			select {
			case it := <-items:
				more := yield(it.m, it.err)
				if it.next != nil {
					it.next <- more
				}
				if !more {
					return
				}
			case err := <-done:
				done <- err // for the deferred wait
				if err != nil && !errors.Is(err, context.Canceled) {
					yield(nil, err)
				}
				return
			}
		}
	}
}
