package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

type benchOpts struct {
	rounds int
	d      time.Duration
	events int

	// --cluster (bench_cluster.go)
	cluster    bool
	goroutines string
	topics     int
}

func init() {
	register(&command{
		name:    "bench",
		summary: "measure publish, delivery and latency on your Redis against raw go-redis",
		help: `Measures durabus on the Redis of --redis, each case next to the same Redis
work done by hand with go-redis, in the same run: Publish from 1 and 16
goroutines against a raw EVALSHA of INCR+XADD+PUBLISH, PublishBatch of 100
against 100 pipelined raw EVALSHAs, live delivery into a typed handler
against a raw Pub/Sub receive (fed by raw PUBLISH both, and once more with
durabus's publisher in the same process), replay of the backlog against raw XRANGE
paging, and publish → handler latency at 5 000 events/s. Events carry a
256-byte payload. On a terminal, stderr shows which case is running. Each round runs every case once; the table gives medians
and the median ratio over the rounds.

With --cluster, --redis names a Redis Cluster (7.0 or newer) by one or more
of its nodes, redis://host1:7000,host2:7000,host3:7000, and the bench
publishes through a go-redis ClusterClient round-robin over --topics topics
spread over the masters: Publish from each --goroutines count, with plain
and with sharded Pub/Sub, against the raw EVALSHA (PUBLISH or SPUBLISH) on
the same topics. It prints the totals, then each master's share: its slots
and topics, the events/s it took and its Redis CPU per event (INFO CPU
over the events of its slots), so that clusters of 3, 6, 9 … masters can
be compared. It runs no failover.

It writes only under a private namespace (durabus-bench-<random>) and deletes
those keys at the end. It loads Redis: do not run it on a production server.
The full comparison with watermill and NATS JetStream is "make bench" in a
clone of the repository.`,
		flags: func(fs *flag.FlagSet) any {
			o := &benchOpts{}
			fs.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every case once)")
			fs.DurationVar(&o.d, "duration", time.Second, "length of each timed publish case")
			fs.IntVar(&o.events, "events", 50_000, "events of the delivery and replay cases")
			fs.BoolVar(&o.cluster, "cluster", false, "--redis is a Redis Cluster: measure Publish per master (see above)")
			fs.StringVar(&o.goroutines, "goroutines", "1,16,64", "publishing goroutines of the --cluster cases, comma-separated")
			fs.IntVar(&o.topics, "topics", 48, "topics of the --cluster cases, spread over the masters")
			return o
		},
		run: runBench,
	})
}

type benchRun struct {
	ctx  context.Context
	c    *conn
	ns   string
	msgs []transport.Message
	raw  []byte
	o    *benchOpts
	out  io.Writer // progress (a terminal) or io.Discard
	r    int
}

func runBench(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*benchOpts)
	if len(args) > 0 {
		return usagef("bench: no arguments expected")
	}
	if o.rounds < 1 || o.events < 1000 || o.d < 10*time.Millisecond {
		return usagef("bench: want --rounds ≥ 1, --events ≥ 1000, --duration ≥ 10ms")
	}
	if o.cluster {
		return runClusterBench(ctx, e, o)
	}
	rdb, addr, err := dial(ctx, e.redisURL, "durabus-bench")
	if err != nil {
		return err
	}
	ns := fmt.Sprintf("durabus-bench-%08x", rand.Uint32())
	c, err := wrap(rdb, addr, ns)
	if err != nil {
		_ = rdb.Close()
		return err
	}
	defer c.Close()
	b := &benchRun{ctx: ctx, c: c, ns: ns, o: o, out: io.Discard}
	if f, isFile := e.stderr.(*os.File); isFile && isTerminal(f) {
		b.out = e.stderr // progress on one rewritten line, only on a terminal
	}
	defer b.cleanup()
	if b.msgs, err = benchkit.Messages(1000, "durabus-bench", func(int) int { return 230 }); err != nil {
		return err
	}
	b.raw = b.msgs[0].Data
	if err := benchkit.RawScript.Load(ctx, rdb).Err(); err != nil {
		return fmt.Errorf("bench: load script: %w", explainRedisErr(addr, err))
	}
	type kase struct {
		name, ours, base string
		lower            bool
	}
	cases := []kase{
		{"Publish, 1 goroutine (events/s)", "pub1", "raw1", false},
		{"Publish, 16 goroutines (events/s)", "pub16", "raw16", false},
		{"PublishBatch of 100 (events/s)", "batch", "rawpipe", false},
		{"live delivery, typed handler (events/s)", "fedlive", "rawlive", false},
		{"live delivery with the publisher (events/s)", "live", "rawlive", false},
		{"replay, typed handler (events/s)", "replay", "xrange", false},
		{"latency p50 at 5 000/s (µs)", "lat50", "rawlat50", true},
		{"latency p99 at 5 000/s (µs)", "lat99", "rawlat99", true},
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
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "case\tdurabus\traw go-redis\tratio\n")
	for _, k := range cases {
		var ours, base, ratio []float64
		for _, m := range rounds {
			ours, base = append(ours, m[k.ours]), append(base, m[k.base])
			if m[k.base] > 0 {
				ratio = append(ratio, m[k.ours]/m[k.base])
			}
		}
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.2f×\n", k.name, benchkit.Median(ours), benchkit.Median(base), benchkit.Median(ratio))
	}
	fmt.Fprintf(w, "\nRedis %s, %d round(s), medians; ratios > 1 are better for rates, < 1 for latency.\n", addr, o.rounds)
	return w.Flush()
}

func (b *benchRun) progress(what string) {
	fmt.Fprintf(b.out, "\rround %d/%d: %-40s", b.r+1, b.o.rounds, what)
}

func (b *benchRun) topic(s string) string { return fmt.Sprintf("r%d.%s", b.r, s) }

// cleanup deletes every key of the bench namespace.
func (b *benchRun) cleanup() {
	ctx := context.WithoutCancel(b.ctx)
	iter := b.c.rdb.Scan(ctx, 0, b.ns+":*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			_ = b.c.rdb.Unlink(ctx, keys...).Err()
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		_ = b.c.rdb.Unlink(ctx, keys...).Err()
	}
}

func (b *benchRun) round(m map[string]float64) error {
	ctx, rdb, tr := b.ctx, b.c.rdb, b.c.tr
	for _, g := range []int{1, 16} {
		gs := strconv.Itoa(g)
		b.progress("raw EVALSHA, " + gs + " goroutine(s)")
		ch := b.ns + ":{" + b.topic("raw"+gs) + "}"
		keys := []string{ch + ":log", ch + ":seq"}
		rate, err := benchkit.Timed(b.o.d, g, 1, func(int) error { return benchkit.RawScript.EvalSha(ctx, rdb, keys, ch, b.raw).Err() })
		if err != nil {
			return err
		}
		m["raw"+gs] = rate
		b.progress("Publish, " + gs + " goroutine(s)")
		if m["pub"+gs], err = benchkit.Timed(b.o.d, g, 1, benchkit.PublishEach(ctx, tr, b.msgs, b.topic("pub"+gs))); err != nil {
			return err
		}
	}
	b.progress("raw EVALSHA pipelined ×100")
	ch := b.ns + ":{" + b.topic("rawpipe") + "}"
	keys := []string{ch + ":log", ch + ":seq"}
	var err error
	if m["rawpipe"], err = benchkit.Timed(b.o.d, 1, 100, benchkit.RawPipelined(ctx, rdb, keys, ch, b.raw, 100)); err != nil {
		return err
	}
	b.progress("PublishBatch of 100")
	batch := benchkit.Batch(b.msgs, b.topic("batch"), 100)
	if m["batch"], err = benchkit.Timed(b.o.d, 1, 100, func(int) error { _, err := tr.PublishBatch(ctx, batch); return err }); err != nil {
		return err
	}
	b.progress("live delivery")
	if err := b.live(m); err != nil {
		return err
	}
	b.progress("replay")
	if err := b.replay(m); err != nil {
		return err
	}
	b.progress("latency")
	return b.latency(m)
}

// subscribe runs a bus of its own (a benchkit.Subscriber) with a typed
// handler on topic.
func (b *benchRun) subscribe(topic string, fromStart bool, h func(*benchkit.Event)) (func(), error) {
	c, err := wrap(b.c.rdb, b.c.addr, b.ns)
	if err != nil {
		return nil, err
	}
	if err := benchkit.Subscribe(c.bus, topic, fromStart, h); err != nil {
		_ = c.tr.Close()
		return nil, err
	}
	stop, err := benchkit.Start(b.ctx, c.bus)
	if err != nil {
		_ = c.tr.Close()
		return nil, err
	}
	return func() { stop(); _ = c.tr.Close() }, nil
}

// wait waits until got reaches n (or 60 s).
func (b *benchRun) wait(got *atomic.Int64, n int) error {
	if err := benchkit.WaitCount(b.ctx, got, int64(n)); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func (b *benchRun) live(m map[string]float64) error {
	n := b.o.events
	topic := b.topic("live")
	var got atomic.Int64
	stop, err := b.subscribe(topic, false, func(*benchkit.Event) { got.Add(1) })
	if err != nil {
		return err
	}
	start := time.Now()
	err = benchkit.Fill(b.ctx, b.c.tr, b.msgs, topic, n)
	if err == nil {
		err = b.wait(&got, n)
	}
	stop()
	if err != nil {
		return err
	}
	m["live"] = float64(n) / time.Since(start).Seconds()
	// The receive side alone: frames as PublishBatch sends them, by raw
	// PUBLISH, as the raw case is fed.
	fed := b.topic("fedlive")
	if m["fedlive"], err = benchkit.FedLive(b.ctx, b.c.rdb, b.c.tr, b.subscribe, b.ns+":{"+fed+"}", fed, b.msgs, n, 1000, replay.DefaultInboxSize); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	ch := b.ns + ":{" + b.topic("rawlive") + "}"
	if m["rawlive"], err = benchkit.RawLive(b.ctx, b.c.rdb, ch, b.raw, n); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func (b *benchRun) replay(m map[string]float64) error {
	n := b.o.events
	topic := b.topic("replay")
	if err := benchkit.Fill(b.ctx, b.c.tr, b.msgs, topic, n); err != nil {
		return err
	}
	var got atomic.Int64
	start := time.Now()
	stop, err := b.subscribe(topic, true, func(*benchkit.Event) { got.Add(1) })
	if err != nil {
		return err
	}
	err = b.wait(&got, n)
	stop()
	if err != nil {
		return err
	}
	m["replay"] = float64(n) / time.Since(start).Seconds()
	logKey, _, _ := b.c.tr.Keys(topic)
	m["xrange"], _, err = benchkit.XRange(b.ctx, b.c.rdb, logKey)
	return err
}

func (b *benchRun) latency(m map[string]float64) error {
	const rate, d = 5000, 2 * time.Second
	lat, _, err := benchkit.Latency(b.ctx, b.subscribe, b.c.bus, b.topic("lat"), rate, d)
	if err != nil {
		return err
	}
	m["lat50"], m["lat99"] = benchkit.Percentile(lat, 0.5), benchkit.Percentile(lat, 0.99)
	ch := b.ns + ":{" + b.topic("rawlat") + "}"
	keys := []string{ch + ":log", ch + ":seq"}
	raw, err := benchkit.RawLatency(b.ctx, b.c.rdb, keys, ch, b.raw, rate, d)
	if err != nil {
		return err
	}
	m["rawlat50"], m["rawlat99"] = benchkit.Percentile(raw, 0.5), benchkit.Percentile(raw, 0.99)
	return nil
}
