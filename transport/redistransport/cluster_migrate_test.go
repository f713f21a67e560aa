package redistransport_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// A sharded subscription whose slot migrates is ended by the old owner
// (sunsubscribe). Its client's slot map is stale then (it sent nothing but
// Pub/Sub commands), so the first rebuild goes to the old owner, which
// answers MOVED: the subscription must reload the map and resubscribe on
// the new owner at once, not after the probe timeout (here a minute, so
// that only the MOVED handling can bring it back within the test's wait).
func TestShardedSubscriptionFollowsSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	newClient := func() *redis.ClusterClient {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DialTimeout: time.Second})
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	sub := newTransport(t, newClient(), redistransport.WithShardedPubSub(true), redistransport.WithProbe(time.Minute, time.Minute))
	pub := newTransport(t, newClient(), redistransport.WithShardedPubSub(true))
	const topic = "migrating.topic"
	ctx := testCtx(t)
	if _, err := pub.Publish(ctx, message(topic, 0)); err != nil {
		t.Fatal(err)
	}
	s, err := sub.Subscribe(context.Background(), topic) // ends with Close, not with ctx
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	slot := redistest.KeySlot("durabus:{" + topic + "}:log")
	from := cl.MasterOfSlot(t, slot)
	var to *redistest.Server
	for _, m := range cl.Masters(t) {
		if m.Addr() != from.Addr() {
			to = m
			break
		}
	}
	cl.MigrateSlot(t, slot, to)
	began := time.Now()

	// Publish until a frame arrives: the subscription is back on the new
	// owner. 30 s is far below the probe timeout.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_, _ = pub.Publish(context.Background(), message(topic, i))
		}
	}()
	defer func() { close(stop); <-done }()
	reconnected := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev := next(t, s, time.Until(deadline))
		if ev.Kind == transport.Reconnected {
			reconnected = true
		}
		if ev.Kind == transport.Frame && reconnected {
			break
		}
	}
	t.Logf("slot %d moved %s -> %s; a frame from the new owner %v after the move", slot, from.Addr(), to.Addr(), time.Since(began).Round(time.Millisecond))
	owner := redis.NewClient(&redis.Options{Addr: to.Addr()})
	defer owner.Close()
	if n, err := owner.PubSubShardNumSub(ctx, "durabus:{"+topic+"}").Result(); err != nil || n["durabus:{"+topic+"}"] != 1 {
		t.Errorf("PUBSUB SHARDNUMSUB on the new owner: %v, %v; want 1", n, err)
	}
}
