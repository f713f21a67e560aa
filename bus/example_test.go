package bus_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport/memtransport"
)

type UserSignedUp struct {
	Email string `json:"email"`
}

func (UserSignedUp) EventType() string { return "user.signed_up" }

// runUntil runs b until n events were handled, then closes it.
func runUntil(b *bus.Bus, handled <-chan struct{}, n int) {
	go b.Run(context.Background())
	for range n {
		<-handled
	}
	b.Close()
}

func ExampleNew() {
	tr, _ := memtransport.New() // redistransport.New(rdb) for Redis
	defer tr.Close()
	b, err := bus.New(tr, bus.WithSource("signup-service"))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	pos, err := b.Publish(context.Background(), UserSignedUp{Email: "ada@example.com"})
	fmt.Println(pos.Seq, err)
	// Output: 1 <nil>
}

func ExampleSubscribe() {
	tr, _ := memtransport.New()
	defer tr.Close()
	b, _ := bus.New(tr)
	ctx := context.Background()
	// Events published before the subscription started, replayed from the
	// backlog.
	b.Publish(ctx, UserSignedUp{Email: "ada@example.com"})
	b.Publish(ctx, UserSignedUp{Email: "grace@example.com"})

	handled := make(chan struct{})
	bus.Subscribe(b, func(ctx context.Context, e *UserSignedUp) error {
		m, _ := bus.MessageFrom(ctx)
		fmt.Printf("seq %d: %s (replayed %v)\n", m.Position.Seq, e.Email, m.Replayed)
		handled <- struct{}{}
		return nil
	}, bus.StartAt(bus.Beginning()))
	runUntil(b, handled, 2)
	// Output:
	// seq 1: ada@example.com (replayed true)
	// seq 2: grace@example.com (replayed true)
}

func ExampleBus_Publish() {
	tr, _ := memtransport.New()
	defer tr.Close()
	b, _ := bus.New(tr, bus.WithRoute("user.signed_up", "users"))
	defer b.Close()
	for _, email := range []string{"ada@example.com", "grace@example.com"} {
		pos, err := b.Publish(context.Background(), UserSignedUp{Email: email})
		if err != nil {
			panic(err)
		}
		fmt.Println("durable at seq", pos.Seq, "of topic", b.TopicOf("user.signed_up"))
	}
	// Output:
	// durable at seq 1 of topic users
	// durable at seq 2 of topic users
}

func ExampleSince() {
	tr, _ := memtransport.New()
	defer tr.Close()
	b, _ := bus.New(tr)
	ctx := context.Background()
	b.Publish(ctx, UserSignedUp{Email: "old@example.com"})
	time.Sleep(2 * time.Millisecond)
	cut := time.Now()
	b.Publish(ctx, UserSignedUp{Email: "new@example.com"})

	for m, err := range b.Events(ctx, "user.signed_up", bus.StartAt(bus.Since(cut))) {
		if err != nil {
			panic(err)
		}
		var e UserSignedUp
		m.Bind(&e)
		fmt.Println(e.Email)
		break
	}
	// Output: new@example.com
}

func ExampleWithConsumer() {
	tr, _ := memtransport.New()
	defer tr.Close()
	ctx := context.Background()
	work := func(label string, n int) {
		b, _ := bus.New(tr, bus.WithConsumer("mailer"))
		handled := make(chan struct{})
		bus.Subscribe(b, func(ctx context.Context, e *UserSignedUp) error {
			fmt.Println(label, e.Email)
			handled <- struct{}{}
			return nil
		}, bus.StartAt(bus.Beginning()))
		runUntil(b, handled, n) // Close saves the checkpoint
	}
	pub, _ := bus.New(tr)
	pub.Publish(ctx, UserSignedUp{Email: "ada@example.com"})
	work("first run:", 1)
	pub.Publish(ctx, UserSignedUp{Email: "grace@example.com"})
	work("after restart:", 1) // resumes after its checkpoint
	// Output:
	// first run: ada@example.com
	// after restart: grace@example.com
}

func ExampleSubscription_Drain() {
	tr, _ := memtransport.New()
	defer tr.Close()
	b, _ := bus.New(tr)
	defer b.Close()
	ctx := context.Background()
	sub, err := bus.Subscribe(b, func(ctx context.Context, e *UserSignedUp) error {
		fmt.Println("welcome", e.Email)
		return nil
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		panic(err)
	}
	go b.Run(ctx)
	if err := b.Ready(ctx); err != nil {
		panic(err)
	}
	b.Publish(ctx, UserSignedUp{Email: "ada@example.com"})
	b.Publish(ctx, UserSignedUp{Email: "grace@example.com"})

	// Hand over what was published, then stop this subscription; the bus
	// and its other subscriptions go on.
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fmt.Println("drained:", sub.Drain(dctx))
	<-sub.Done()
	// Output:
	// welcome ada@example.com
	// welcome grace@example.com
	// drained: <nil>
}

// PaymentCaptured names its partition key: the payments of one order stay
// in order.
type PaymentCaptured struct {
	Order string `json:"order"`
	Cents int    `json:"cents"`
}

func (PaymentCaptured) EventType() string      { return "payment.captured" }
func (p PaymentCaptured) PartitionKey() string { return p.Order }

func ExampleWithPartitions() {
	tr, _ := memtransport.New() // redistransport records the count in Redis
	defer tr.Close()
	b, _ := bus.New(tr, bus.WithPartitions("payment.captured", 4))
	ctx := context.Background()
	for _, p := range []PaymentCaptured{{"order-17", 100}, {"order-42", 250}, {"order-17", 300}, {"order-42", 50}} {
		if _, err := b.Publish(ctx, p); err != nil { // to partition FNV-1a(p.Order) mod 4
			panic(err)
		}
	}
	var mu sync.Mutex
	seen := map[string][]string{} // partition topic -> what it delivered, in order
	handled := make(chan struct{})
	bus.Subscribe(b, func(ctx context.Context, p *PaymentCaptured) error {
		m, _ := bus.MessageFrom(ctx)
		mu.Lock()
		seen[m.Topic] = append(seen[m.Topic], fmt.Sprintf("%s:%d", p.Order, p.Cents))
		mu.Unlock()
		handled <- struct{}{}
		return nil
	}, bus.StartAt(bus.Beginning())) // one subscription follows every partition
	runUntil(b, handled, 4)
	for _, topic := range slices.Sorted(maps.Keys(seen)) {
		fmt.Println(topic, seen[topic])
	}
	// Output:
	// payment.captured:p0 [order-42:250 order-42:50]
	// payment.captured:p2 [order-17:100 order-17:300]
}
