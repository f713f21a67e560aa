package replay_test

import (
	"context"
	"fmt"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

// A follower on its own, over raw deliveries: it replays the backlog from
// the beginning, then goes on live, in order, reporting any loss.
func ExampleNew() {
	tr, _ := memtransport.New()
	defer tr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, data := range []string{`"a"`, `"b"`} {
		if _, err := tr.Publish(ctx, transport.Message{Topic: "letters", Data: []byte(data)}); err != nil {
			panic(err)
		}
	}

	seen := make(chan struct{})
	f, err := replay.New(tr, func(_ context.Context, d replay.Delivery) error {
		fmt.Printf("seq %d %s replayed=%v\n", d.Position.Seq, d.Data, d.Replayed)
		if d.Position.Seq == 3 {
			close(seen)
		}
		return nil
	},
		replay.WithTopics("letters"),
		replay.WithStart(replay.Beginning()),
		replay.WithOnLoss(func(l *replay.LossError) { fmt.Println("lost:", l) }),
	)
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	<-f.Ready()
	if _, err := tr.Publish(ctx, transport.Message{Topic: "letters", Data: []byte(`"c"`)}); err != nil {
		panic(err)
	}
	<-seen
	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// seq 1 "a" replayed=true
	// seq 2 "b" replayed=true
	// seq 3 "c" replayed=false
	// run: <nil>
}
