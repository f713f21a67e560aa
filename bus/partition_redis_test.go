package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
)

// Two processes (two clients) on one Redis: the count is recorded in Redis,
// a process with another count is refused, and a subscription from a time
// replays every partition from that time, then follows them live in order
// per key across Pub/Sub connection kills.
func TestRedisPartitionsAgreeReplaySinceAndKeepKeyOrder(t *testing.T) {
	srv := redistest.Start(t)
	rdbA, rdbB := srv.Client(t), srv.Client(t)
	trA, trB := redisTransport(t, rdbA), redisTransport(t, rdbB)
	const n, perKey = 8, 60
	ks := keys(16)
	ctx := context.Background()

	pub, _ := bus.New(trA, bus.WithPartitions("shipment", n))
	publishKeyed(t, pub, ks, 20) // N 0..19: before the cut
	if v, err := rdbB.Get(ctx, trB.PartitionsKey("shipment")).Result(); err != nil || v != "8" {
		t.Fatalf("%s = %q, %v; want \"8\"", trB.PartitionsKey("shipment"), v, err)
	}

	other, _ := bus.New(trB, bus.WithPartitions("shipment", 12))
	if _, err := other.Publish(ctx, Shipment{Order: "o-1", N: -1}); !errors.Is(err, bus.ErrPartitionCount) {
		t.Fatalf("another process with 12 partitions over 8: %v, want ErrPartitionCount", err)
	}

	cut := time.Now()
	waitFor(t, "the clock to pass the cut", func() bool { return time.Now().After(cut) })
	for i := 20; i < 30; i++ { // N 20..29: after the cut, before the subscription
		for _, k := range ks {
			if _, err := pub.Publish(ctx, Shipment{Order: k, N: i}); err != nil {
				t.Fatal(err)
			}
		}
	}

	sub, _ := bus.New(trB, bus.WithPartitions("shipment", n), fast)
	got := newKeyedLog()
	if _, err := bus.Subscribe(sub, func(ctx context.Context, e *Shipment) error {
		m, _ := bus.MessageFrom(ctx)
		e.Order = keyOf(m)
		return got.handle(ctx, e)
	}, bus.StartAt(bus.Since(cut))); err != nil {
		t.Fatal(err)
	}
	start(t, sub)

	// N 30..59 live, each key from its own goroutine, while the
	// subscriber's Pub/Sub connection is killed three times.
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Go(func() {
			for i := 30; i < perKey; i++ {
				if _, err := pub.Publish(ctx, Shipment{Order: k, N: i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 3 {
		if err := rdbA.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Errorf("CLIENT KILL: %v", err)
		}
	}
	wg.Wait()
	waitFor(t, "every event since the cut handled", func() bool { return got.count() >= len(ks)*(perKey-20) })
	got.checkFrom(t, "shipment", n, ks, 20, perKey-20)
}

// On a cluster every partition has its own hash tag: the partitions of one
// topic land on every master, and a subscriber follows them all.
func TestRedisClusterPartitionsSpreadOverMasters(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	tr := redisTransport(t, rdb)
	const n = 16
	ctx := context.Background()

	sub, _ := bus.New(tr, bus.WithPartitions("shipment", n), fast)
	got := newKeyedLog()
	if _, err := bus.Subscribe(sub, func(ctx context.Context, e *Shipment) error { return got.handle(ctx, e) }); err != nil {
		t.Fatal(err)
	}
	start(t, sub)
	pub, _ := bus.New(redisTransport(t, rdb), bus.WithPartitions("shipment", n))
	ks := keys(40)
	for i := range 10 {
		batch := make([]bus.Event, len(ks))
		for j, k := range ks {
			batch[j] = Shipment{Order: k, N: i}
		}
		if _, err := pub.PublishBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every event handled", func() bool { return got.count() >= len(ks)*10 })
	got.check(t, "shipment", n, ks, 10)

	// Where the partitions' logs are: each master lists its own keys.
	perMaster := map[string]int{}
	var mu sync.Mutex
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		names, err := c.Keys(ctx, "durabus:{shipment:p*}:log").Result()
		mu.Lock()
		perMaster[c.Options().Addr] = len(names)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	total, used := 0, 0
	for _, c := range perMaster {
		total += c
		if c > 0 {
			used++
		}
	}
	if used != 3 || total != n {
		t.Errorf("partition logs per master: %v; want all %d partitions spread over the 3 masters", perMaster, n)
	}
	// Each partition's own keys share its slot; the count sits in the
	// topic's.
	for _, pt := range transport.PartitionTopics("shipment", n) {
		logKey, metaKey, channel := tr.Keys(pt)
		a, b, c := rdb.ClusterKeySlot(ctx, logKey).Val(), rdb.ClusterKeySlot(ctx, metaKey).Val(), rdb.ClusterKeySlot(ctx, channel).Val()
		if a != b || a != c {
			t.Errorf("%s: slots of log, meta, channel %d %d %d", pt, a, b, c)
		}
	}
	logKey, _, _ := tr.Keys("shipment")
	if a, b := rdb.ClusterKeySlot(ctx, tr.PartitionsKey("shipment")).Val(), rdb.ClusterKeySlot(ctx, logKey).Val(); a != b {
		t.Errorf("the partition count is in slot %d, the topic's log in %d", a, b)
	}
}
