package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// durabus bench --cluster: Publish through a go-redis ClusterClient on the
// user's Redis Cluster, spread over topics on every master, against the raw
// script on the same topics; each master's events/s and Redis CPU per event.

// clusterBench is one run of bench --cluster.
type clusterBench struct {
	ctx    context.Context
	cc     *redis.ClusterClient
	ns     string
	o      *benchOpts
	gs     []int // --goroutines
	msgs   []transport.Message
	raw    []byte
	out    io.Writer // progress (a terminal) or io.Discard
	r      int
	shards []benchkit.Shard
	nodes  int   // masters and replicas, from the last CPU snapshot
	cpuErr error // INFO refused (an ACL without it): no CPU figures
}

// clusterModes are the Pub/Sub kinds measured: plain PUBLISH and sharded.
var clusterModes = []string{"plain", "sharded"}

func runClusterBench(ctx context.Context, e *env, o *benchOpts) error {
	gs, err := parseGoroutines(o.goroutines)
	if err != nil {
		return err
	}
	if o.topics < 1 || o.topics > 10_000 {
		return usagef("bench: want 1 ≤ --topics ≤ 10000")
	}
	opts, err := parseClusterURL(e.redisURL)
	if err != nil {
		return err
	}
	opts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		_ = cn.ClientSetName(ctx, "durabus-bench").Err()
		return nil
	}
	opts.DialTimeout = 3 * time.Second
	opts.DialerRetries = 2
	opts.PoolSize = slices.Max(gs) + 8 // per node
	cc := redis.NewClusterClient(opts)
	defer cc.Close()
	addrs := strings.Join(opts.Addrs, ",")
	b := &clusterBench{ctx: ctx, cc: cc, o: o, gs: gs, out: io.Discard}
	if b.shards, err = b.loadShards(addrs); err != nil {
		return err
	}
	if f, isFile := e.stderr.(*os.File); isFile && isTerminal(f) {
		b.out = e.stderr
	}
	b.ns = fmt.Sprintf("durabus-bench-%08x", rand.Uint32())
	defer b.cleanup()
	if b.msgs, err = benchkit.Messages(1000, "durabus-bench", func(int) int { return 230 }); err != nil {
		return err
	}
	b.raw = b.msgs[0].Data
	for _, s := range []*redis.Script{benchkit.RawScript, benchkit.RawShardedScript} {
		if err := s.Load(ctx, cc).Err(); err != nil {
			return fmt.Errorf("bench: load script: %w", explainRedisErr(addrs, err))
		}
	}
	var rounds []map[string]float64
	for b.r = 0; b.r < o.rounds; b.r++ {
		m := map[string]float64{}
		if err := b.round(m); err != nil {
			return err
		}
		rounds = append(rounds, m)
	}
	fmt.Fprintf(b.out, "\r%-60s\r", "")
	b.print(e.stdout, rounds)
	return nil
}

// parseGoroutines parses --goroutines: counts from 1 to 1024, comma-separated.
func parseGoroutines(s string) ([]int, error) {
	var gs []int
	for _, f := range strings.Split(s, ",") {
		g, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || g < 1 || g > 1024 {
			return nil, usagef("bench: --goroutines %q: want counts from 1 to 1024, comma-separated, e.g. 1,16,64", s)
		}
		if !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return gs, nil
}

// parseClusterURL reads --redis as a Redis Cluster's seed nodes:
// redis[s]://[user:password@]host:port[,host:port…][?options], go-redis's
// ClusterClient options (ParseClusterURL) taking the first node as the URL's
// host and the others as addr= parameters. Errors never show the password.
func parseClusterURL(raw string) (*redis.ClusterOptions, error) {
	bad := func(why string) error {
		return usagef("--redis %q: %s; with --cluster want redis://[user:password@]host:port[,host:port…] or rediss:// for TLS", redactURL(raw), why)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, bad("no scheme")
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	hostPart, tail := rest[:end], rest[end:]
	cred := ""
	if at := strings.LastIndex(hostPart, "@"); at >= 0 {
		cred, hostPart = hostPart[:at+1], hostPart[at+1:]
	}
	var hosts []string
	for _, h := range strings.Split(hostPart, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, bad("no host")
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, bad("a Redis Cluster has only database 0")
	}
	var extra []string
	for _, h := range hosts[1:] {
		extra = append(extra, "addr="+url.QueryEscape(h))
	}
	if query != "" {
		extra = append([]string{query}, extra...)
	}
	u := scheme + "://" + cred + hosts[0]
	if len(extra) > 0 {
		u += "?" + strings.Join(extra, "&")
	}
	opts, err := redis.ParseClusterURL(u)
	if err != nil {
		return nil, bad(strings.TrimSpace(strings.TrimPrefix(err.Error(), "redis: ")))
	}
	return opts, nil
}

// loadShards reads the cluster's masters, with a clear error when --redis
// is no cluster or too old a Redis.
func (b *clusterBench) loadShards(addrs string) ([]benchkit.Shard, error) {
	ctx, cancel := context.WithTimeout(b.ctx, connectTimeout)
	defer cancel()
	shards, err := benchkit.Shards(ctx, b.cc)
	if err == nil && len(shards) == 0 {
		err = fmt.Errorf("no master serves slots")
	}
	if err == nil {
		return shards, nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "cluster support disabled"):
		return nil, fmt.Errorf("bench --cluster: Redis at %s is not a cluster (cluster-enabled no): run bench without --cluster", addrs)
	case strings.Contains(strings.ToLower(msg), "unknown subcommand"):
		return nil, fmt.Errorf("bench --cluster: Redis at %s has no CLUSTER SHARDS: Redis 7.0 or newer is needed", addrs)
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner // benchkit's "CLUSTER SHARDS: …" prefix would hide NOAUTH and the like
	}
	return nil, fmt.Errorf("bench --cluster: %w", explainRedisErr(addrs, err))
}

func (b *clusterBench) progress(what string) {
	fmt.Fprintf(b.out, "\rround %d/%d: %-40s", b.r+1, b.o.rounds, what)
}

// round runs, for each goroutine count and Pub/Sub kind, the raw script
// then Publish, over the round's topics.
func (b *clusterBench) round(m map[string]float64) error {
	ctx := b.ctx
	shards, err := b.loadShards(strings.Join(b.cc.Options().Addrs, ","))
	if err != nil {
		return err
	}
	b.shards = shards
	topics := make([]string, b.o.topics)
	chans := make([]string, b.o.topics) // the raw script's, in each topic's slot
	for k := range topics {
		topics[k] = fmt.Sprintf("r%d.t%03d", b.r, k)
		chans[k] = b.ns + ":{" + topics[k] + "}:raw"
	}
	shardOf, err := benchkit.ShardOf(ctx, b.cc, shards, chans)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for k := range topics {
		m["topics."+strconv.Itoa(shardOf[k])]++
	}
	// The library's log says only what the bench would not (errors), on stderr.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	trs := map[string]*redistransport.Transport{}
	for _, mode := range clusterModes {
		tr, err := redistransport.New(b.cc, redistransport.WithNamespace(b.ns), redistransport.WithShardedPubSub(mode == "sharded"),
			redistransport.WithLogger(log))
		if err != nil {
			return err
		}
		defer tr.Close()
		trs[mode] = tr
	}
	// One event to each topic first, not timed: a topic's first publish
	// creates its epoch.
	b.progress("first event of each topic")
	for _, mode := range clusterModes {
		var counts [1]atomic.Int64
		for k := range topics {
			if err := benchkit.PublishSpread(ctx, trs[mode], b.msgs, topics[k:k+1], counts[:])(k); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	for _, g := range b.gs {
		for _, mode := range clusterModes {
			k := mode + "." + strconv.Itoa(g)
			script := benchkit.RawScript
			if mode == "sharded" {
				script = benchkit.RawShardedScript
			}
			b.progress(fmt.Sprintf("raw EVALSHA, %s, %d goroutine(s)", mode, g))
			if err := b.timed(m, "raw."+k, g, shardOf, func(counts []atomic.Int64) func(int) error {
				return benchkit.RawSpread(ctx, b.cc, script, chans, b.raw, counts)
			}); err != nil {
				return err
			}
			b.progress(fmt.Sprintf("Publish, %s, %d goroutine(s)", mode, g))
			tr := trs[mode]
			if err := b.timed(m, "pub."+k, g, shardOf, func(counts []atomic.Int64) func(int) error {
				return benchkit.PublishSpread(ctx, tr, b.msgs, topics, counts)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// timed runs one case for --duration from g goroutines and records its
// rate as name, each shard's as name+".rate.<i>", each shard master's
// Redis CPU per event of its slots (µs) as name+".cpu.<i>", and every
// node's per event of all as name+".cpuall".
func (b *clusterBench) timed(m map[string]float64, name string, g int, shardOf []int, body func([]atomic.Int64) func(int) error) error {
	counts := make([]atomic.Int64, len(shardOf))
	before := b.cpu()
	rate, err := benchkit.Timed(b.o.d, g, 1, body(counts))
	if err != nil {
		return fmt.Errorf("bench: %s: %w", name, err)
	}
	after := b.cpu()
	per := benchkit.PerShard(counts, shardOf, len(b.shards))
	var total int64
	for _, n := range per {
		total += n
	}
	if total == 0 || rate == 0 {
		return fmt.Errorf("bench: %s: nothing published in %v", name, b.o.d)
	}
	m[name] = rate
	secs := float64(total) / rate
	for i, n := range per {
		si := strconv.Itoa(i)
		m[name+".rate."+si] = float64(n) / secs
		c0, ok0 := before[b.shards[i].Master]
		c1, ok1 := after[b.shards[i].Master]
		if ok0 && ok1 && n > 0 {
			m[name+".cpu."+si] = (c1 - c0) / float64(n) * 1e6
		}
	}
	if before != nil && after != nil {
		var all float64
		for addr, c1 := range after {
			all += c1 - before[addr]
		}
		m[name+".cpuall"] = all / float64(total) * 1e6
	}
	return nil
}

// cpu returns every node's Redis CPU by address, nil once INFO was refused.
func (b *clusterBench) cpu() map[string]float64 {
	if b.cpuErr != nil {
		return nil
	}
	cpu, err := benchkit.NodesCPU(b.ctx, b.cc)
	if err != nil {
		b.cpuErr = err
		return nil
	}
	b.nodes = len(cpu)
	return cpu
}

// cleanup deletes every key of the bench namespace, on every master.
func (b *clusterBench) cleanup() {
	ctx := context.WithoutCancel(b.ctx)
	_ = b.cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, b.ns+":*", 1000).Iterator()
		var keys []string
		flush := func() {
			p := node.Pipeline()
			for _, k := range keys { // one key a call: a node refuses keys of several slots in one
				p.Unlink(ctx, k)
			}
			_, _ = p.Exec(ctx)
			keys = keys[:0]
		}
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 500 {
				flush()
			}
		}
		flush()
		return nil
	})
}

// print writes the totals, then each master's share at the largest
// goroutine count.
func (b *clusterBench) print(out io.Writer, rounds []map[string]float64) {
	med := func(name string) float64 { return benchkit.MedianOf(rounds, name) }
	ratio := func(ours, base string) float64 { return benchkit.MedianRatio(rounds, ours, base) }
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "case (events/s)\tdurabus\traw go-redis\tratio\n")
	for _, mode := range clusterModes {
		for _, g := range b.gs {
			k := mode + "." + strconv.Itoa(g)
			label := "Publish"
			if mode == "sharded" {
				label += " sharded"
			}
			fmt.Fprintf(w, "%s, %s\t%.0f\t%.0f\t%.2f×\n", label, plural(g, "goroutine"), med("pub."+k), med("raw."+k), ratio("pub."+k, "raw."+k))
		}
	}
	_ = w.Flush()
	g := slices.Max(b.gs)
	gs := strconv.Itoa(g)
	fmt.Fprintf(out, "\nPer master, Publish from %s (Redis CPU: INFO used_cpu_user+sys over the events of its slots):\n", plural(g, "goroutine"))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "master\tslots\ttopics\tevents/s\tCPU µs/event\tsharded events/s\tsharded CPU µs/event\n")
	var topics, plainSum, shardedSum, plainMax, shardedMax float64
	cpuCell := func(name string) string {
		if b.cpuErr != nil || med(name) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", med(name))
	}
	for i, sh := range b.shards {
		si := strconv.Itoa(i)
		pr, sr := med("pub.plain."+gs+".rate."+si), med("pub.sharded."+gs+".rate."+si)
		topics += med("topics." + si)
		plainSum, shardedSum = plainSum+pr, shardedSum+sr
		plainMax, shardedMax = max(plainMax, med("pub.plain."+gs+".cpu."+si)), max(shardedMax, med("pub.sharded."+gs+".cpu."+si))
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%s\t%.0f\t%s\n", sh.Master, sh.Slots, med("topics."+si), pr, cpuCell("pub.plain."+gs+".cpu."+si),
			sr, cpuCell("pub.sharded."+gs+".cpu."+si))
	}
	maxCell := func(x float64) string {
		if b.cpuErr != nil {
			return "-"
		}
		return fmt.Sprintf("max %.1f", x)
	}
	fmt.Fprintf(w, "all %d masters\t%d\t%.0f\t%.0f\t%s\t%.0f\t%s\n", len(b.shards), 16384, topics, plainSum, maxCell(plainMax), shardedSum, maxCell(shardedMax))
	_ = w.Flush()
	if b.cpuErr != nil {
		fmt.Fprintf(out, "\nNo Redis CPU figures: INFO failed (%v).\n", b.cpuErr)
	} else {
		fmt.Fprintf(out, "\nRedis CPU per event, all %d nodes (masters and replicas): %.1f µs plain, %.1f µs sharded.\n", b.nodes, med("pub.plain."+gs+".cpuall"), med("pub.sharded."+gs+".cpuall"))
	}
	fmt.Fprintf(out, "\nRedis Cluster at %s: %d masters; %d topics, Publish round-robin over them; raw go-redis is EVALSHA of INCR+XADD+PUBLISH (SPUBLISH for sharded) on the same slots through the same ClusterClient. %d round(s), medians; ratios > 1 are better.\n",
		strings.Join(b.cc.Options().Addrs, ","), len(b.shards), b.o.topics, b.o.rounds)
}
