package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

type benchOpts struct {
	rounds int
	d      time.Duration
	events int
}

func init() {
	register(&command{
		name:    "bench",
		summary: "measure publish, delivery and latency on your Redis against raw go-redis",
		help: `Measures durabus on the Redis of --redis, each case next to the same Redis
work done by hand with go-redis, in the same run: Publish from 1 and 16
goroutines against a raw EVALSHA of INCR+XADD+PUBLISH, PublishBatch of 100
against 100 pipelined raw EVALSHAs, live delivery into a typed handler
against a raw Pub/Sub receive, replay of the backlog against raw XRANGE
paging, and publish → handler latency at 5 000 events/s. Events carry a
256-byte payload. On a terminal, stderr shows which case is running. Each round runs every case once; the table gives medians
and the median ratio over the rounds.

It writes only under a private namespace (durabus-bench-<random>) and deletes
those keys at the end. It loads Redis: do not run it on a production server.
The full comparison with watermill and NATS JetStream is "make bench" in a
clone of the repository.`,
		flags: func(fs *flag.FlagSet) any {
			o := &benchOpts{}
			fs.IntVar(&o.rounds, "rounds", 3, "rounds (each runs every case once)")
			fs.DurationVar(&o.d, "duration", time.Second, "length of each timed publish case")
			fs.IntVar(&o.events, "events", 50_000, "events of the delivery and replay cases")
			return o
		},
		run: runBench,
	})
}

// benchEvent is the typed event of the delivery cases.
type benchEvent struct {
	N int64  `json:"n"`
	T int64  `json:"t"`
	S string `json:"s"`
}

func (benchEvent) EventType() string { return "bench.event" }

var benchRawScript = redis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000000, '*', 'seq', seq, 'e', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return id`)

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
	for i := 0; i < 1000; i++ {
		ev := benchEvent{N: int64(i), S: strings.Repeat("x", 230)}
		en, err := envelope.New(ev.EventType(), ev, envelope.WithSource("durabus-bench"))
		if err != nil {
			return err
		}
		data, err := en.Encode()
		if err != nil {
			return err
		}
		b.msgs = append(b.msgs, transport.Message{ID: en.ID, Time: en.Time, Data: data})
	}
	b.raw = b.msgs[0].Data
	if err := benchRawScript.Load(ctx, rdb).Err(); err != nil {
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
		{"live delivery, typed handler (events/s)", "live", "rawlive", false},
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
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.2f×\n", k.name, benchMedian(ours), benchMedian(base), benchMedian(ratio))
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
		rate, err := benchTimed(b.o.d, g, 1, func(int) error { return benchRawScript.EvalSha(ctx, rdb, keys, ch, b.raw).Err() })
		if err != nil {
			return err
		}
		m["raw"+gs] = rate
		b.progress("Publish, " + gs + " goroutine(s)")
		topic := b.topic("pub" + gs)
		if m["pub"+gs], err = benchTimed(b.o.d, g, 1, func(i int) error {
			msg := b.msgs[i%len(b.msgs)]
			msg.Topic = topic
			_, err := tr.Publish(ctx, msg)
			return err
		}); err != nil {
			return err
		}
	}
	b.progress("raw EVALSHA pipelined ×100")
	ch := b.ns + ":{" + b.topic("rawpipe") + "}"
	keys := []string{ch + ":log", ch + ":seq"}
	var err error
	if m["rawpipe"], err = benchTimed(b.o.d, 1, 100, func(int) error {
		p := rdb.Pipeline()
		for j := 0; j < 100; j++ {
			benchRawScript.EvalSha(ctx, p, keys, ch, b.raw)
		}
		_, err := p.Exec(ctx)
		return err
	}); err != nil {
		return err
	}
	b.progress("PublishBatch of 100")
	batch := make([]transport.Message, 100)
	for i := range batch {
		batch[i] = b.msgs[i]
		batch[i].Topic = b.topic("batch")
	}
	if m["batch"], err = benchTimed(b.o.d, 1, 100, func(int) error { _, err := tr.PublishBatch(ctx, batch); return err }); err != nil {
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

// subscribe runs a bus with a typed handler on topic.
func (b *benchRun) subscribe(topic string, fromStart bool, h func(*benchEvent)) (func(), error) {
	c, err := wrap(b.c.rdb, b.c.addr, b.ns)
	if err != nil {
		return nil, err
	}
	opts := []bus.SubscribeOption{bus.OnTopic(topic)}
	if fromStart {
		opts = append(opts, bus.StartAt(bus.Beginning()))
	}
	if err := bus.Subscribe(c.bus, func(_ context.Context, e *benchEvent) error { h(e); return nil }, opts...); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() { _ = c.bus.Run(ctx); close(done) }()
	rctx, rcancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer rcancel()
	stop := func() { cancel(); <-done; _ = c.bus.Close(); _ = c.tr.Close() }
	if err := c.bus.Ready(rctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

func (b *benchRun) fill(topic string, n int) error {
	batch := make([]transport.Message, 0, 1000)
	for i := 0; i < n; i++ {
		msg := b.msgs[i%len(b.msgs)]
		msg.Topic = topic
		batch = append(batch, msg)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := b.c.tr.PublishBatch(b.ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

func benchWait(ctx context.Context, c *atomic.Int64, n int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for c.Load() < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: delivered %d of %d after 60s", c.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

func (b *benchRun) live(m map[string]float64) error {
	n := b.o.events
	topic := b.topic("live")
	var got atomic.Int64
	stop, err := b.subscribe(topic, false, func(*benchEvent) { got.Add(1) })
	if err != nil {
		return err
	}
	start := time.Now()
	err = b.fill(topic, n)
	if err == nil {
		err = benchWait(b.ctx, &got, int64(n))
	}
	stop()
	if err != nil {
		return err
	}
	m["live"] = float64(n) / time.Since(start).Seconds()

	ch := b.ns + ":{" + b.topic("rawlive") + "}"
	ps := b.c.rdb.Subscribe(b.ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(b.ctx); err != nil {
		return err
	}
	var raw atomic.Int64
	go func() {
		for raw.Load() < int64(n) {
			if _, err := ps.ReceiveMessage(b.ctx); err != nil {
				return
			}
			raw.Add(1)
		}
	}()
	start = time.Now()
	for sent := 0; sent < n; sent += 1000 {
		p := b.c.rdb.Pipeline()
		for j := 0; j < 1000 && sent+j < n; j++ {
			p.Publish(b.ctx, ch, b.raw)
		}
		if _, err := p.Exec(b.ctx); err != nil {
			return err
		}
	}
	if err := benchWait(b.ctx, &raw, int64(n)); err != nil {
		return err
	}
	m["rawlive"] = float64(n) / time.Since(start).Seconds()
	return nil
}

func (b *benchRun) replay(m map[string]float64) error {
	n := b.o.events
	topic := b.topic("replay")
	if err := b.fill(topic, n); err != nil {
		return err
	}
	var got atomic.Int64
	start := time.Now()
	stop, err := b.subscribe(topic, true, func(*benchEvent) { got.Add(1) })
	if err != nil {
		return err
	}
	err = benchWait(b.ctx, &got, int64(n))
	stop()
	if err != nil {
		return err
	}
	m["replay"] = float64(n) / time.Since(start).Seconds()
	logKey, _, _ := b.c.tr.Keys(topic)
	start = time.Now()
	cursor, total := "-", 0
	for {
		page, err := b.c.rdb.XRangeN(b.ctx, logKey, cursor, "+", 1000).Result()
		if err != nil {
			return err
		}
		total += len(page)
		if len(page) < 1000 {
			break
		}
		cursor = "(" + page[len(page)-1].ID
	}
	m["xrange"] = float64(total) / time.Since(start).Seconds()
	return nil
}

func (b *benchRun) latency(m map[string]float64) error {
	const rate, d = 5000, 2 * time.Second
	topic := b.topic("lat")
	var mu sync.Mutex
	var lat []time.Duration
	stop, err := b.subscribe(topic, false, func(e *benchEvent) {
		mu.Lock()
		lat = append(lat, time.Duration(time.Now().UnixNano()-e.T))
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	s := strings.Repeat("x", 220)
	benchPaced(rate, d, func(i int) error {
		_, err := b.c.bus.Publish(b.ctx, benchEvent{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
		return err
	})
	time.Sleep(200 * time.Millisecond)
	stop()
	mu.Lock()
	m["lat50"], m["lat99"] = benchPct(lat, 0.5), benchPct(lat, 0.99)
	mu.Unlock()

	ch := b.ns + ":{" + b.topic("rawlat") + "}"
	keys := []string{ch + ":log", ch + ":seq"}
	ps := b.c.rdb.Subscribe(b.ctx, ch)
	if _, err := ps.Receive(b.ctx); err != nil {
		return err
	}
	var raw []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := ps.ReceiveMessage(b.ctx)
			if err != nil {
				return
			}
			t, _ := strconv.ParseInt(msg.Payload[:19], 10, 64)
			raw = append(raw, time.Duration(time.Now().UnixNano()-t))
		}
	}()
	pad := string(b.raw[19:])
	benchPaced(rate, d, func(int) error {
		return benchRawScript.EvalSha(b.ctx, b.c.rdb, keys, ch, strconv.FormatInt(time.Now().UnixNano(), 10)+pad).Err()
	})
	time.Sleep(200 * time.Millisecond)
	_ = ps.Close()
	<-done
	m["rawlat50"], m["rawlat99"] = benchPct(raw, 0.5), benchPct(raw, 0.99)
	return nil
}

func benchTimed(d time.Duration, g, per int, f func(i int) error) (float64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < g; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += g {
				if err := f(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(int64(per))
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

func benchPaced(rate int, d time.Duration, f func(i int) error) {
	step := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < int(d/step); i++ {
		if w := time.Until(start.Add(time.Duration(i) * step)); w > 0 {
			time.Sleep(w)
		}
		if f(i) != nil {
			return
		}
	}
}

func benchPct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds())
}

func benchMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
