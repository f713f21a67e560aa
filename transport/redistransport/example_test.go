package redistransport_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redisproc"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// Publish writes each event to the topic's backlog (a Redis stream) and
// sends it live (PUBLISH) in one atomic script; Range reads the backlog.
func ExampleNew() {
	ctx := context.Background()
	// A private redis-server for the example; a program dials its own:
	// redis.NewClient(&redis.Options{Addr: "localhost:6379"}).
	srv, err := redisproc.Start(ctx)
	if err != nil {
		fmt.Println("redis-server:", err)
		return
	}
	defer srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()

	tr, err := redistransport.New(rdb, redistransport.WithNamespace("shop"))
	if err != nil {
		panic(err)
	}
	defer tr.Close()
	for _, data := range []string{`{"n":1}`, `{"n":2}`} {
		pos, err := tr.Publish(ctx, transport.Message{Topic: "orders", Data: []byte(data)})
		if err != nil {
			panic(err)
		}
		fmt.Println("published seq", pos.Seq)
	}
	page, err := tr.Range(ctx, "orders", transport.Position{}, 10)
	if err != nil {
		panic(err)
	}
	for _, d := range page.Events {
		fmt.Printf("backlog seq %d %s\n", d.Position.Seq, d.Data)
	}
	log, _, _ := tr.Keys("orders")
	fmt.Println("stream key:", log)
	// Output:
	// published seq 1
	// published seq 2
	// backlog seq 1 {"n":1}
	// backlog seq 2 {"n":2}
	// stream key: shop:{orders}:log
}
