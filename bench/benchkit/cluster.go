package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// The Redis Cluster measurements shared by "make bench" and "durabus bench
// --cluster": publishes spread over many topics, counted per topic so that
// each master's share is known, and each server's CPU from INFO.

// Shard is one master of a Redis Cluster and the slots it serves.
type Shard struct {
	Master string   // host:port of its master (its endpoint in CLUSTER SHARDS)
	Ranges [][2]int // its slot ranges, inclusive
	Slots  int      // how many slots it serves
}

// Shards lists the masters of cc that serve slots, from CLUSTER SHARDS
// (Redis 7.0 or newer), ordered by their lowest slot, so that shard i
// keeps its index across a failover.
func Shards(ctx context.Context, cc *redis.ClusterClient) ([]Shard, error) {
	all, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	var out []Shard
	for _, cs := range all {
		if len(cs.Slots) == 0 {
			continue
		}
		sh := Shard{}
		for _, n := range cs.Nodes {
			if n.Role == "master" && n.Health == "online" {
				port := n.Port
				if port == 0 {
					port = n.TLSPort
				}
				sh.Master = net.JoinHostPort(n.Endpoint, strconv.FormatInt(port, 10))
			}
		}
		if sh.Master == "" {
			return nil, fmt.Errorf("CLUSTER SHARDS: slots %d–%d have no master online", cs.Slots[0].Start, cs.Slots[0].End)
		}
		for _, r := range cs.Slots {
			sh.Ranges = append(sh.Ranges, [2]int{int(r.Start), int(r.End)})
			sh.Slots += int(r.End-r.Start) + 1
		}
		slices.SortFunc(sh.Ranges, func(a, b [2]int) int { return a[0] - b[0] })
		out = append(out, sh)
	}
	slices.SortFunc(out, func(a, b Shard) int { return a.Ranges[0][0] - b.Ranges[0][0] })
	return out, nil
}

// ShardOf returns, for each key, the index in shards of the shard whose
// slots hold it (CLUSTER KEYSLOT), or an error if none does.
func ShardOf(ctx context.Context, cc *redis.ClusterClient, shards []Shard, keys []string) ([]int, error) {
	out := make([]int, len(keys))
	for i, k := range keys {
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER KEYSLOT %s: %w", k, err)
		}
		out[i] = -1
		for j, sh := range shards {
			for _, r := range sh.Ranges {
				if int(slot) >= r[0] && int(slot) <= r[1] {
					out[i] = j
				}
			}
		}
		if out[i] < 0 {
			return nil, fmt.Errorf("slot %d of %s is served by no master", slot, k)
		}
	}
	return out, nil
}

// PerShard sums counts (one per key, e.g. per topic) by shard: shardOf[k]
// is the shard of key k, from ShardOf.
func PerShard(counts []atomic.Int64, shardOf []int, shards int) []int64 {
	out := make([]int64, shards)
	for k := range counts {
		out[shardOf[k]] += counts[k].Load()
	}
	return out
}

// PublishSpread returns the body of a timed publish case over several
// topics: call i publishes msgs[i%len(msgs)] to topics[i%len(topics)] with
// tr.Publish and, once it succeeded, counts it in counts[i%len(topics)].
func PublishSpread(ctx context.Context, tr transport.Transport, msgs []transport.Message, topics []string, counts []atomic.Int64) func(i int) error {
	return func(i int) error {
		k := i % len(topics)
		msg := msgs[i%len(msgs)]
		msg.Topic = topics[k]
		if _, err := tr.Publish(ctx, msg); err != nil {
			return err
		}
		counts[k].Add(1)
		return nil
	}
}

// RawSpread is PublishSpread by hand: call i runs script (RawScript or
// RawShardedScript, loaded: EVALSHA) with channel chans[k] and payload raw
// on the keys chans[k]+":log" and chans[k]+":seq", k = i%len(chans), and
// counts it in counts[k]. rdb is a *redis.Client or a *redis.ClusterClient,
// which routes each call to its keys' master; on a cluster each channel
// needs a hash tag ("ns:{topic}"), so that its keys and its SPUBLISH share
// a slot.
func RawSpread(ctx context.Context, rdb redis.Scripter, script *redis.Script, chans []string, raw []byte, counts []atomic.Int64) func(i int) error {
	keys := make([][]string, len(chans))
	for k, ch := range chans {
		keys[k] = []string{ch + ":log", ch + ":seq"}
	}
	return func(i int) error {
		k := i % len(chans)
		if err := script.EvalSha(ctx, rdb, keys[k], chans[k], raw).Err(); err != nil {
			return err
		}
		counts[k].Add(1)
		return nil
	}
}

// RedisCPU returns the server's used_cpu_user + used_cpu_sys (INFO CPU:
// the whole redis-server process), in seconds.
func RedisCPU(ctx context.Context, rdb redis.Cmdable) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	found := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu: %s: %w", k, err)
			}
			total += f
			found++
		}
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu: no used_cpu_user and used_cpu_sys")
	}
	return total, nil
}

// NodesCPU returns RedisCPU of every node of cc (masters and replicas), by
// address.
func NodesCPU(ctx context.Context, cc *redis.ClusterClient) (map[string]float64, error) {
	var mu sync.Mutex
	out := map[string]float64{}
	err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		cpu, err := RedisCPU(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		out[c.Options().Addr] = cpu
		mu.Unlock()
		return nil
	})
	return out, err
}
