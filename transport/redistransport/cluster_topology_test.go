package redistransport_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
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

// After a forced failover a cluster client's slot map still names the dead
// master, and go-redis reloads it only after MOVED or ASK, or once a minute
// (ClusterStateReloadInterval): the transport asks for a reload when a
// command fails without a reply, so that publishing and reading reach the
// promoted replica within seconds, not a minute.
func TestTransportFindsPromotedReplica(t *testing.T) {
	cl := redistest.StartCluster(t, 3, redistest.WithReplicas(1), redistest.WithNodeTimeout(time.Second))
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	tr := newTransport(t, rdb, redistransport.WithLogger(slog.New(slog.DiscardHandler)))
	const topic = "failover.topic"
	ctx := context.Background()
	if _, err := tr.Publish(ctx, message(topic, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Head(ctx, topic); err != nil {
		t.Fatal(err)
	}
	master := cl.MasterOfKey(t, "durabus:{"+topic+"}:log")
	promoted := cl.ForceFailover(t, master)
	began := time.Now()
	// 30 s: half of go-redis's reload interval.
	var lastErr error
	published, read := false, false
	for !(published && read) {
		if time.Since(began) > 30*time.Second {
			t.Fatalf("30 s after %s was promoted, the transport still fails: published %v, read %v; last error: %v", promoted.Addr(), published, read, lastErr)
		}
		if !published {
			if _, err := tr.Publish(ctx, message(topic, 1)); err != nil {
				lastErr = err
			} else {
				published = true
			}
		}
		if !read {
			if _, err := tr.Head(ctx, topic); err != nil {
				lastErr = err
			} else {
				read = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("published and read through the promoted replica %s %v after its promotion", promoted.Addr(), time.Since(began).Round(time.Millisecond))
}

// While a topic's slot migrates, its log and meta hash stay on the source
// until MIGRATE moves them, and a publish with the idempotency window reads
// an idempotency key that may already be on the target. Undeclared, that
// read failed the script half-way ("Script attempted to access a non local
// key": ErrUnknownOutcome); declared, Redis refuses the call whole
// (TRYAGAIN, ASK) and the client retries or follows. Every publish made
// across the migration must succeed, and each once in the log.
func TestIdempotentPublishAcrossSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	pub := newTransport(t, rdb, redistransport.WithIdempotency(time.Minute))
	const topic = "migrating.idem"
	slot := redistest.KeySlot("durabus:{" + topic + "}:log")
	from := cl.MasterOfSlot(t, slot)
	var to *redistest.Server
	for _, m := range cl.Masters(t) {
		if m.Addr() != from.Addr() {
			to = m
			break
		}
	}

	// Four publishers, each sending lone events and batches with ids, so
	// that the slot holds many idempotency keys and MIGRATE takes several
	// batches while the publishes go on.
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	first := func() error { errMu.Lock(); defer errMu.Unlock(); return firstErr }
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				n := 1
				if g%2 == 0 {
					_, err = pub.Publish(ctx, message(topic, i))
				} else {
					n = 4
					_, err = pub.PublishBatch(ctx, []transport.Message{message(topic, i), message(topic, i), message(topic, i), message(topic, i)})
				}
				cancel()
				if err != nil {
					failed.Add(int64(n))
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				sent.Add(int64(n))
			}
		}()
	}
	waitSent := func(n int64) {
		deadline := time.Now().Add(60 * time.Second)
		for sent.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d events published in 60 s (want %d); first error: %v", sent.Load(), n, first())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitSent(2000)
	cl.MigrateSlot(t, slot, to)
	waitSent(sent.Load() + 500) // publishes go on against the new owner
	close(stop)
	wg.Wait()

	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d events failed across the migration; first error: %v", f, f+sent.Load(), first())
	}
	n, err := rdb.XLen(context.Background(), "durabus:{"+topic+"}:log").Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != sent.Load() {
		t.Errorf("the log holds %d entries, %d events were acknowledged", n, sent.Load())
	}
	t.Logf("%d events published across the migration of slot %d %s -> %s", sent.Load(), slot, from.Addr(), to.Addr())
}
