// Command quickstart is the README's Quick start: publish a typed event and
// handle it in a durable consumer, with every error checked and every wait
// bounded. It uses the Redis at $REDIS_ADDR (default 127.0.0.1:6379).
package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport/redistransport"
)

type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func (OrderPlaced) EventType() string { return "order.placed" } // stable name, stored with every event

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds every wait below
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: cmp.Or(os.Getenv("REDIS_ADDR"), "127.0.0.1:6379")})
	defer rdb.Close() // yours: durabus never closes it
	tr, err := redistransport.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	b, err := bus.New(tr, bus.WithSource("checkout"), bus.WithConsumer("billing")) // durable: resumes after restarts
	if err != nil {
		log.Fatal(err)
	}
	billed := make(chan string, 1)
	_, err = bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error {
		m, _ := bus.MessageFrom(ctx) // envelope and position
		fmt.Println("bill", e.ID, e.Total, "seq", m.Position.Seq)
		select {
		case billed <- e.ID:
		default:
		}
		return nil // an error is retried with backoff
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		log.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	if err := b.Ready(ctx); err != nil { // fails with "cannot reach Redis at …" when Redis is down
		log.Fatal(err)
	}
	pos, err := b.Publish(ctx, OrderPlaced{ID: "o-1", Total: 42}) // returns once durable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published, seq", pos.Seq)
	select {
	case <-billed:
	case <-ctx.Done():
		log.Fatal("not handled in time: ", ctx.Err())
	}
	if err := b.Close(); err != nil { // drains handlers, saves checkpoints
		log.Fatal(err)
	}
	if err := <-runErr; err != nil {
		log.Fatal(err)
	}
}
