package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

type ChargeCard struct {
	Order string `json:"order"`
}

func (ChargeCard) EventType() string { return "payment.charge" }

// The recommended chain with a dead letter: a handler that keeps failing
// is tried three times, then its event is set aside in
// "payment.charge.dead" and the topic goes on.
func ExampleDefault() {
	tr, _ := memtransport.New() // redistransport.New(rdb) for Redis
	defer tr.Close()
	ctx := context.Background()

	var b *bus.Bus // the bus publishes its own dead letters
	dead := middleware.PublisherFunc(func(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
		return b.PublishEnvelope(ctx, topic, e)
	})
	b, err := bus.New(tr, bus.WithMiddleware(middleware.Default(middleware.Options{
		DeadLetter: dead,
		Retry:      middleware.RetryConfig{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond},
	})...))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	var attempts atomic.Int32
	if _, err := bus.Subscribe(b, func(context.Context, *ChargeCard) error {
		attempts.Add(1)
		return errors.New("card declined")
	}); err != nil {
		panic(err)
	}
	go b.Run(ctx)
	if err := b.Ready(ctx); err != nil {
		panic(err)
	}
	if _, err := b.Publish(ctx, ChargeCard{Order: "o-1"}); err != nil {
		panic(err)
	}

	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		dl, err := b.DeadLetters(ctx, "payment.charge", 10)
		if err != nil {
			panic(err)
		}
		if len(dl) == 1 {
			fmt.Println("attempts:", attempts.Load())
			fmt.Println("dead letter:", string(dl[0].Data), "error:", dl[0].Extensions[bus.ExtDeadError])
			break
		}
	}
	// Output:
	// attempts: 3
	// dead letter: {"order":"o-1"} error: card declined
}
