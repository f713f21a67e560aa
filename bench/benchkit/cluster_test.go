package benchkit_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport/redistransport"
)

// On a 3-master cluster: Shards lists the masters by slot, ShardOf places
// keys, and the spread publish bodies count every event by topic, so that
// PerShard's shares add up to what each master's keys hold.
func TestClusterShardsAndSpreadPublishes(t *testing.T) {
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	shards, err := benchkit.Shards(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3: %+v", len(shards), shards)
	}
	slots := 0
	for i, sh := range shards {
		if sh.Master != cl.Addrs()[i] || sh.Ranges[0][0] != i*16384/3 {
			t.Errorf("shard %d: %+v, want master %s from slot %d", i, sh, cl.Addrs()[i], i*16384/3)
		}
		slots += sh.Slots
	}
	if slots != 16384 {
		t.Errorf("shards serve %d slots, want 16384", slots)
	}

	const n = 12
	topics, chans := make([]string, n), make([]string, n)
	for k := range topics {
		topics[k] = fmt.Sprintf("spread.t%02d", k)
		chans[k] = "raw:{" + topics[k] + "}"
	}
	shardOf, err := benchkit.ShardOf(ctx, cc, shards, chans)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := benchkit.Messages(10, "test", func(int) int { return 10 })
	if err != nil {
		t.Fatal(err)
	}
	tr, err := redistransport.New(cc, redistransport.WithShardedPubSub(true))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := benchkit.RawShardedScript.Load(ctx, cc).Err(); err != nil {
		t.Fatal(err)
	}
	ours, raw := make([]atomic.Int64, n), make([]atomic.Int64, n)
	spreadToEach(t, ours, benchkit.PublishSpread(ctx, tr, msgs, topics, ours))
	spreadToEach(t, raw, benchkit.RawSpread(ctx, cc, benchkit.RawShardedScript, chans, msgs[0].Data, raw))
	for _, c := range []struct {
		name   string
		counts []atomic.Int64
		logKey func(k int) string
	}{
		{"Publish", ours, func(k int) string { l, _, _ := tr.Keys(topics[k]); return l }},
		{"raw", raw, func(k int) string { return chans[k] + ":log" }},
	} {
		want := make([]int64, 3)
		for k := range topics {
			if c.counts[k].Load() == 0 {
				t.Errorf("%s: nothing counted on %s", c.name, topics[k])
			}
			got, err := cc.XLen(ctx, c.logKey(k)).Result()
			if err != nil || got != c.counts[k].Load() {
				t.Errorf("%s: %s holds %d events (%v), %d counted", c.name, topics[k], got, err, c.counts[k].Load())
			}
			want[shardOf[k]] += got
		}
		per := benchkit.PerShard(c.counts, shardOf, 3)
		for i := range per {
			if per[i] != want[i] {
				t.Errorf("%s: shard %d counted %d, its keys hold %d", c.name, i, per[i], want[i])
			}
		}
	}
	cpu, err := benchkit.NodesCPU(ctx, cc)
	if err != nil || len(cpu) != 3 {
		t.Fatalf("NodesCPU = %v, %v; want the 3 nodes", cpu, err)
	}
	for addr, c := range cpu {
		if c <= 0 {
			t.Errorf("%s: Redis CPU %v, want > 0", addr, c)
		}
	}
}

// spreadToEach runs body for 50 ms on 4 goroutines, then once more for
// each topic that counted nothing (call k publishes to topic k): a loaded
// machine may make only a few calls in 50 ms.
func spreadToEach(t *testing.T, counts []atomic.Int64, body func(i int) error) {
	t.Helper()
	if _, err := benchkit.Timed(50*time.Millisecond, 4, 1, body); err != nil {
		t.Fatal(err)
	}
	for k := range counts {
		if counts[k].Load() == 0 {
			if err := body(k); err != nil {
				t.Fatal(err)
			}
		}
	}
}
