package redistransport_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
	"github.com/durabus/durabus/transport/transporttest"
)

// deleteTopic removes a topic's log, meta hash and index entry, as an
// operator would with DEL and ZREM, with a client of its own (closed after,
// so that no goroutine of it outlives the subtest).
func deleteTopic(newClient func() redis.UniversalClient) func(t *testing.T, tr transport.Transport, topic string) {
	return func(t *testing.T, tr transport.Transport, topic string) {
		t.Helper()
		rdb := newClient()
		defer rdb.Close()
		rt := tr.(*redistransport.Transport)
		logKey, metaKey, _ := rt.Keys(topic)
		ctx := context.Background()
		if err := rdb.Del(ctx, logKey).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.Del(ctx, metaKey).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.ZRem(ctx, redistransport.DefaultNamespace+":topics", topic).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConformanceStandalone(t *testing.T) {
	srv := redistest.Start(t)
	conformance(t, func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: srv.Addr()}) }, true)
}

func TestConformanceCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	conformance(t, func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()}) }, true)
}

func TestConformanceClusterSharded(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	conformance(t, func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()}) }, false,
		redistransport.WithShardedPubSub(true))
}

// conformance runs transporttest.Run on transports over clients from
// newClient; patterns says whether the options allow pattern subscriptions
// (sharded Pub/Sub does not).
func conformance(t *testing.T, newClient func() redis.UniversalClient, patterns bool, opts ...redistransport.Option) {
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		rdb := newClient()
		t.Cleanup(func() { _ = rdb.Close() })
		tr, err := redistransport.New(rdb, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}, transporttest.Features{
		MaxSize:     redistransport.DefaultMaxSize,
		DeleteTopic: deleteTopic(newClient),
	})
	if tr, err := redistransport.New(newClient(), opts...); err == nil {
		if got := transport.FeaturesOf(tr).Patterns; got != patterns {
			t.Errorf("FeaturesOf(...).Patterns = %v, want %v", got, patterns)
		}
		_ = tr.Close()
	}
}
