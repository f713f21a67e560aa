// Command monitor shows a subscriber's live statistics while a publisher
// runs. Every --every it prints bus.Status(): per topic the cursor, the
// head seen by the last head check and the lag between them; whether the
// live connection is up; the counters (delivered, replayed from the
// backlog, duplicates dropped, gaps repaired, reconnects, events lost); and
// the round trip of bus.Health, which proves delivery works end to end.
//
// With --chaos 2s it kills the Pub/Sub connections every two seconds
// (CLIENT KILL TYPE pubsub), as a flaky network would: watch reconnects and
// replayed grow while lost stays 0.
//
//	go run ./examples/monitor [--for 10s] [--rate 500] [--chaos 2s] [--redis redis://localhost:6379]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/replay"
)

// Reading is a sensor value, published to "sensors.a" and "sensors.b".
type Reading struct {
	Value int `json:"value"`
}

func (Reading) EventType() string { return "sensor.reading" }

func main() { exredis.Main("monitor", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	runFor := fs.Duration("for", 10*time.Second, "how long the publisher runs")
	every := fs.Duration("every", time.Second, "how often to print the status")
	rate := fs.Int("rate", 500, "events published per second")
	work := fs.Duration("work", time.Millisecond, "time the handler takes per event")
	chaos := fs.Duration("chaos", 0, "kill the Pub/Sub connections this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tr, rdb, closeAll, err := exredis.Transport(ctx, *redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeAll()
	out := exredis.NewSyncWriter(stdout) // the status loop and the chaos write concurrently

	// The subscriber: one pattern subscription over both topics. A head
	// check every 500 ms keeps Head and Lag fresh (default 2 s).
	sub, err := bus.New(tr, bus.WithFollowerOptions(replay.WithHeadCheck(500*time.Millisecond)))
	if err != nil {
		return err
	}
	defer sub.Close()
	_, err = sub.Handle("sensors.*", bus.HandlerFunc(func(context.Context, *bus.Message) error {
		time.Sleep(*work)
		return nil
	}), bus.StartAt(bus.Beginning()))
	if err != nil {
		return err
	}
	go sub.Run(ctx) // until ctx ends or Close

	// The publisher, and the chaos, until --for is over.
	pubCtx, stopPub := context.WithTimeout(ctx, *runFor)
	defer stopPub()
	pub, err := bus.New(tr, bus.WithSource("sensors"))
	if err != nil {
		return err
	}
	defer pub.Close()
	var wg sync.WaitGroup
	published := 0
	wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		defer tick.Stop()
		topics := []string{"sensors.a", "sensors.b"}
		for i := 0; pubCtx.Err() == nil; i++ {
			// ctx, not pubCtx: a publish cut off by pubCtx's deadline may
			// still be written, and would be delivered uncounted.
			if _, err := pub.Publish(ctx, Reading{Value: i}, bus.ToTopic(topics[i%2])); err == nil {
				published++
			}
			select {
			case <-tick.C:
			case <-pubCtx.Done():
			}
		}
	})
	if *chaos > 0 {
		wg.Go(func() {
			tick := time.NewTicker(*chaos)
			defer tick.Stop()
			for {
				select {
				case <-pubCtx.Done():
					return
				case <-tick.C:
					rdb.ClientKillByFilter(pubCtx, "TYPE", "pubsub")
					fmt.Fprintln(out, "chaos: killed the Pub/Sub connections")
				}
			}
		})
	}

	tick := time.NewTicker(*every)
	defer tick.Stop()
	for pubCtx.Err() == nil {
		select {
		case <-tick.C:
			show(ctx, out, sub)
		case <-pubCtx.Done():
		}
	}
	wg.Wait()

	// Let the subscriber finish what was published, then the last status.
	for delivered(sub) < uint64(published) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	show(ctx, out, sub)
	fmt.Fprintf(out, "summary: published %d, delivered %d\n", published, delivered(sub))
	return ctx.Err()
}

// show prints the health round trip and every subscription's status.
func show(ctx context.Context, w io.Writer, b *bus.Bus) {
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rtt, err := b.Health(hctx)
	if err != nil {
		fmt.Fprintf(w, "%s  health: %v\n", time.Now().Format("15:04:05.000"), err)
	} else {
		fmt.Fprintf(w, "%s  health round trip %v\n", time.Now().Format("15:04:05.000"), rtt.Round(10*time.Microsecond))
	}
	for _, s := range b.Status() {
		st := s.Stats
		fmt.Fprintf(w, "  %s  connected=%v delivered=%d replayed=%d duplicates=%d gaps=%d reconnects=%d lost=%d\n",
			s.Key, st.Connected, st.Delivered, st.Replayed, st.Duplicates, st.Gaps, st.Reconnects, st.Lost)
		for _, t := range st.Topics {
			fmt.Fprintf(w, "    %s  cursor %d  head %d  lag %d\n", t.Topic, t.Cursor.Seq, t.Head.Seq, t.Lag)
		}
	}
}

func delivered(b *bus.Bus) uint64 {
	var n uint64
	for _, s := range b.Status() {
		n += s.Stats.Delivered
	}
	return n
}
