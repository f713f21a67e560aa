package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

type env struct {
	ctx   context.Context
	rdb   *redis.Client // the clients' pool (benchmarked calls)
	admin *redis.Client // INFO, FLUSHALL, CLIENT KILL
	js    jetstream.JetStream
	nc    *nats.Conn
	msgs  []transport.Message // pre-encoded envelopes, topic unset
	raw   []byte              // an encoded envelope: the peers' payload
	dur   time.Duration       // length of a timed publish case
	n     int                 // events of a delivery case
	round int
}

// metrics of one case run, by name.
type metrics map[string]float64

func payload(n int) string { return strings.Repeat("x", n) }

// encode builds a pool of envelopes whose JSON "data" is 256 bytes.
func (e *env) encode() (err error) {
	pad := func(i int) int { return 256 - len(`{"n":,"t":0,"s":""}`) - len(strconv.Itoa(i)) }
	if e.msgs, err = benchkit.Messages(1000, "bench", pad); err != nil {
		return err
	}
	e.raw = e.msgs[0].Data
	return nil
}

// newEnv connects to the Redis at addr and encodes the envelope pool;
// close releases the clients.
func newEnv(ctx context.Context, addr string, dur time.Duration, n int) (*env, error) {
	e := &env{ctx: ctx, dur: dur, n: n}
	e.rdb = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	e.admin = redis.NewClient(&redis.Options{Addr: addr})
	if err := e.encode(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	_ = e.rdb.Close()
	_ = e.admin.Close()
}

// client returns a new client on the same Redis, for code that closes it.
func (e *env) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: e.rdb.Options().Addr, PoolSize: 64})
}

func (e *env) flush() { _ = e.admin.FlushAll(e.ctx).Err() }

func (e *env) topic(name string) string { return fmt.Sprintf("bench.r%d.%s", e.round, name) }

func (e *env) transport() *redistransport.Transport {
	tr, err := redistransport.New(e.rdb)
	if err != nil {
		panic(err)
	}
	return tr
}

// publisher returns a bus on a transport of its own, for the publishing
// side of a case; release closes both.
func (e *env) publisher() (b *bus.Bus, release func()) {
	tr := e.transport()
	b, _ = bus.New(tr, bus.WithSource("bench"))
	return b, func() { _ = b.Close(); _ = tr.Close() }
}

// withCPU runs f and adds Redis CPU µs per event as name+".cpu".
func (e *env) withCPU(m metrics, name string, f func() (float64, error)) error {
	c0 := redisCPU(e.ctx, e.admin)
	t0 := time.Now()
	rate, err := f()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	cpu := redisCPU(e.ctx, e.admin) - c0
	m[name] = rate
	if events := rate * time.Since(t0).Seconds(); events > 0 {
		m[name+".cpu"] = cpu / events * 1e6
	}
	return nil
}

// publishCases: raw go-redis, durabus, watermill, JetStream.
func (e *env) publishCases(m metrics) error {
	ctx := e.ctx
	if err := benchkit.RawScript.Load(ctx, e.rdb).Err(); err != nil {
		return err
	}
	for _, g := range []int{1, 16} {
		gs := strconv.Itoa(g)
		e.flush()
		ch := e.topic("rawpub")
		if err := e.withCPU(m, "pub.raw_publish."+gs, func() (float64, error) {
			return benchkit.Timed(e.dur, g, 1, func(int) error { return e.rdb.Publish(ctx, ch, e.raw).Err() })
		}); err != nil {
			return err
		}
		e.flush()
		keys := []string{"raw:{" + ch + "}:log", "raw:{" + ch + "}:seq"}
		if err := e.withCPU(m, "pub.raw_evalsha."+gs, func() (float64, error) {
			return benchkit.Timed(e.dur, g, 1, func(int) error { return benchkit.RawScript.EvalSha(ctx, e.rdb, keys, ch, e.raw).Err() })
		}); err != nil {
			return err
		}
		e.flush()
		tr := e.transport()
		topic := e.topic("pub" + gs)
		if err := e.withCPU(m, "pub.ours."+gs, func() (float64, error) {
			return benchkit.Timed(e.dur, g, 1, benchkit.PublishEach(ctx, tr, e.msgs, topic))
		}); err != nil {
			return err
		}
		_ = tr.Close()
		if g == 1 {
			// Allocations of one Publish (client side, go-redis included).
			e.flush()
			tr := e.transport()
			msg := e.msgs[0]
			msg.Topic = topic
			_, _ = tr.Publish(ctx, msg)
			a, b := allocs(2000, func() { _, _ = tr.Publish(ctx, msg) })
			m["allocs.publish"], m["bytes.publish"] = a, b
			bb, _ := bus.New(tr, bus.WithSource("bench"))
			a, b = allocs(2000, func() { _, _ = bb.Publish(ctx, benchkit.Event{N: 1, S: e.msgs[0].Topic}, bus.ToTopic(topic)) })
			m["allocs.bus_publish"], m["bytes.bus_publish"] = a, b
			_ = bb.Close()
			_ = tr.Close()
		}
	}
	// Pipelined: 100 raw script calls per round trip, and PublishBatch of 100.
	e.flush()
	ch := e.topic("rawpipe")
	keys := []string{"raw:{" + ch + "}:log", "raw:{" + ch + "}:seq"}
	if err := e.withCPU(m, "pub.raw_evalsha.pipe100", func() (float64, error) {
		return benchkit.Timed(e.dur, 1, 100, benchkit.RawPipelined(ctx, e.rdb, keys, ch, e.raw, 100))
	}); err != nil {
		return err
	}
	e.flush()
	tr := e.transport()
	batch := benchkit.Batch(e.msgs, e.topic("batch"), 100)
	if err := e.withCPU(m, "pub.ours.batch100", func() (float64, error) {
		return benchkit.Timed(e.dur, 1, 100, func(int) error { _, err := tr.PublishBatch(ctx, batch); return err })
	}); err != nil {
		return err
	}
	_ = tr.Close()

	// watermill-redisstream, default config.
	for _, g := range []int{1, 16} {
		e.flush()
		// watermill closes the client it is given: each gets its own.
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: e.client()}, watermill.NopLogger{})
		if err != nil {
			return err
		}
		topic := e.topic("wm")
		rate, err := benchkit.Timed(e.dur, g, 1, func(int) error {
			return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), e.raw))
		})
		if err != nil {
			return fmt.Errorf("watermill publish: %w", err)
		}
		m["pub.wm."+strconv.Itoa(g)] = rate
		_ = pub.Close()
	}

	// JetStream.
	if e.js != nil {
		for _, g := range []int{1, 16} {
			subj := fmt.Sprintf("bench.r%d.sync%d", e.round, g)
			rate, err := benchkit.Timed(e.dur, g, 1, func(int) error { _, err := e.js.Publish(ctx, subj, e.raw); return err })
			if err != nil {
				return fmt.Errorf("jetstream publish: %w", err)
			}
			m["pub.js.sync"+strconv.Itoa(g)] = rate
		}
		subj := fmt.Sprintf("bench.r%d.async", e.round)
		rate, err := e.jsAsync(subj, e.dur)
		if err != nil {
			return err
		}
		m["pub.js.async"] = rate
		_ = e.purgeJS()
	}
	return nil
}

func (e *env) jsAsync(subj string, d time.Duration) (float64, error) {
	start := time.Now()
	deadline := start.Add(d)
	n := 0
	for time.Now().Before(deadline) {
		for j := 0; j < 1000; j++ {
			if err := e.publishAsync(subj); err != nil {
				return 0, fmt.Errorf("jetstream async publish: %w", err)
			}
		}
		n += 1000
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return 0, errors.New("jetstream async publish: not complete after 30s")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// publishAsync is js.PublishAsync of e.raw on subj. When the window is
// full past nats.go's stall wait (200 ms: it happens on a loaded machine),
// it waits for the window to drain and sends again, the wait counting in
// the case's time.
func (e *env) publishAsync(subj string) error {
	for {
		_, err := e.js.PublishAsync(subj, e.raw)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return err
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			return fmt.Errorf("%w, and not drained after 30s", err)
		}
	}
}

func (e *env) purgeJS() error {
	s, err := e.js.Stream(e.ctx, "BENCH")
	if err != nil {
		return err
	}
	return s.Purge(e.ctx)
}

// allocs returns allocations and bytes per call of f (run n times).
func allocs(n int, f func()) (float64, float64) {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	for i := 0; i < n; i++ {
		f()
	}
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(n), float64(b.TotalAlloc-a.TotalAlloc) / float64(n)
}

// typedBus starts a bus of its own whose typed handler calls h, on topic
// (or pattern), from the beginning of its log when fromStart (a
// benchkit.Subscriber). stop ends it.
func (e *env) typedBus(topic string, fromStart bool, h func(*benchkit.Event)) (stop func(), err error) {
	tr := e.transport()
	b, err := bus.New(tr, bus.WithSource("bench"))
	if err == nil {
		err = benchkit.Subscribe(b, topic, fromStart, h)
	}
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return e.run(b, tr)
}

// run runs b until stop, which also closes tr.
func (e *env) run(b *bus.Bus, tr *redistransport.Transport) (func(), error) {
	stop, err := benchkit.Start(e.ctx, b)
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return func() { stop(); _ = tr.Close() }, nil
}

// liveCases: events published (PublishBatch of 1000) while a typed handler
// receives them, against raw PUBLISH pipelined ×1000 into ReceiveMessage.
func (e *env) liveCases(m metrics) error {
	rate, err := e.liveOurs(e.topic("live"), e.n, 1)
	if err != nil {
		return fmt.Errorf("live delivery: %w", err)
	}
	m["live.ours"] = rate
	if rate, err = e.liveRaw(e.topic("liveraw"), e.n); err != nil {
		return fmt.Errorf("raw pubsub: %w", err)
	}
	m["live.raw"] = rate
	for _, c := range []struct {
		name     string
		perFrame int
	}{{"live.fed", 1000}, {"live.fed1", 1}} {
		if rate, err = e.liveFed(e.topic(c.name), c.perFrame); err != nil {
			return fmt.Errorf("live delivery fed by PUBLISH: %w", err)
		}
		m[c.name] = rate
	}
	return nil
}

// liveFed: the receive side alone, fed frames by raw pipelined PUBLISH.
func (e *env) liveFed(topic string, perFrame int) (float64, error) {
	e.flush()
	pub := e.transport()
	defer pub.Close()
	return benchkit.FedLive(e.ctx, e.rdb, pub, e.typedBus, "durabus:{"+topic+"}", topic, e.msgs, e.n, perFrame, liveWindow)
}

// liveWindow is how many fed events may be in flight: the follower's
// default inbox (replay.DefaultInboxSize), so that none is dropped.
const liveWindow = 256

// liveOurs returns deliveries per second over subs subscribers.
func (e *env) liveOurs(topic string, n, subs int) (float64, error) {
	e.flush()
	var got atomic.Int64
	var stops []func()
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	for i := 0; i < subs; i++ {
		stop, err := e.typedBus(topic, false, func(*benchkit.Event) { got.Add(1) })
		if err != nil {
			return 0, err
		}
		stops = append(stops, stop)
	}
	pub := e.transport()
	defer pub.Close()
	start := time.Now()
	if err := benchkit.Fill(e.ctx, pub, e.msgs, topic, n); err != nil {
		return 0, err
	}
	if err := benchkit.WaitCount(e.ctx, &got, int64(n*subs)); err != nil {
		return 0, err
	}
	return float64(n*subs) / time.Since(start).Seconds(), nil
}

func (e *env) liveRaw(ch string, n int) (float64, error) {
	e.flush()
	return benchkit.RawLive(e.ctx, e.rdb, ch, e.raw, n)
}

// replayCases: a backlog of e.n events replayed into a typed handler, and
// paged with raw XRANGE COUNT 1000.
func (e *env) replayCases(m metrics) error {
	rate, a, b, err := e.replay(e.topic("replay"), e.n)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	m["replay.ours"], m["allocs.replay"], m["bytes.replay"] = rate, a, b
	raw, n, err := e.xrange(e.topic("replay"))
	if err != nil || n != e.n {
		return fmt.Errorf("raw xrange: %d of %d: %v", n, e.n, err)
	}
	m["replay.raw_xrange"] = raw
	return nil
}

// replay fills topic with n events, then times the replay of all of them
// into a typed handler, and raw XRANGE paging over the same stream.
func (e *env) replay(topic string, n int) (rate, allocsPer, bytesPer float64, err error) {
	e.flush()
	tr := e.transport()
	if err := benchkit.Fill(e.ctx, tr, e.msgs, topic, n); err != nil {
		return 0, 0, 0, err
	}
	_ = tr.Close()
	var got atomic.Int64
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	stop, err := e.typedBus(topic, true, func(*benchkit.Event) { got.Add(1) })
	if err != nil {
		return 0, 0, 0, err
	}
	err = benchkit.WaitCount(e.ctx, &got, int64(n))
	rate = float64(n) / time.Since(start).Seconds()
	runtime.ReadMemStats(&ms1)
	stop()
	if err != nil {
		return 0, 0, 0, err
	}
	allocsPer = float64(ms1.Mallocs-ms0.Mallocs) / float64(n)
	bytesPer = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(n)
	return rate, allocsPer, bytesPer, nil
}

// xrange pages through topic's log with raw XRANGE COUNT 1000.
func (e *env) xrange(topic string) (float64, int, error) {
	tr := e.transport()
	logKey, _, _ := tr.Keys(topic)
	_ = tr.Close()
	return benchkit.XRange(e.ctx, e.rdb, logKey)
}

// peerConsume: watermill consume and JetStream's ordered consumer.
func (e *env) peerConsume(m metrics) error {
	// watermill: 5 000 events, consumer group, ack each (its default).
	const wmN = 5000
	e.flush()
	topic := e.topic("wmc")
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: e.client()}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	for i := 0; i < wmN; i++ {
		if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), e.raw)); err != nil {
			return err
		}
	}
	_ = pub.Close()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: e.client(), ConsumerGroup: "bench"}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	start := time.Now()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		return err
	}
	got := 0
	for got < wmN {
		select {
		case msg := <-msgs:
			msg.Ack()
			got++
		case <-ctx.Done():
			cancel()
			return fmt.Errorf("watermill consume: %d of %d", got, wmN)
		}
	}
	m["consume.wm"] = float64(wmN) / time.Since(start).Seconds()
	cancel()
	_ = sub.Close()

	if e.js == nil {
		return nil
	}
	subj := fmt.Sprintf("bench.r%d.ordered", e.round)
	for i := 0; i < e.n; i++ {
		if err := e.publishAsync(subj); err != nil {
			return err
		}
	}
	<-e.js.PublishAsyncComplete()
	start = time.Now()
	cons, err := e.js.OrderedConsumer(e.ctx, "BENCH", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	for got := 0; got < e.n; got++ {
		if _, err := it.Next(); err != nil {
			it.Stop()
			return fmt.Errorf("jetstream ordered consumer: %w", err)
		}
	}
	m["consume.js_ordered"] = float64(e.n) / time.Since(start).Seconds()
	it.Stop()
	return e.purgeJS()
}

// latencyCases: publish → handler at a steady rate, ours through the bus
// (encode, Publish, follower, decode into benchkit.Event) and raw (EVALSHA of
// the raw script, ReceiveMessage).
func (e *env) latencyCases(m metrics, rate int, d time.Duration) error {
	e.flush()
	if err := benchkit.RawScript.Load(e.ctx, e.rdb).Err(); err != nil { // for -profile latency alone
		return err
	}
	b, closePub := e.publisher()
	ours, n, err := benchkit.Latency(e.ctx, e.typedBus, b, e.topic("lat"), rate, d)
	closePub()
	if err != nil {
		return err
	}
	if len(ours) < n*9/10 {
		return fmt.Errorf("latency: %d of %d delivered", len(ours), n)
	}
	pct(m, "lat.ours", ours)

	ch := e.topic("latraw")
	keys := []string{"raw:{" + ch + "}:log", "raw:{" + ch + "}:seq"}
	raw, err := benchkit.RawLatency(e.ctx, e.rdb, keys, ch, e.raw, rate, d)
	if err != nil {
		return err
	}
	pct(m, "lat.raw", raw)
	return nil
}

// pct adds the p50, p99 and p99.9 of ds in µs as name+".p50" and so on
// (nothing for none).
func pct(m metrics, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	for _, q := range []struct {
		suffix string
		p      float64
	}{{".p50", 0.50}, {".p99", 0.99}, {".p999", 0.999}} {
		m[name+q.suffix] = benchkit.Percentile(ds, q.p)
	}
}

// catchUp kills the subscriber's Pub/Sub connection kills times while
// events flow at 2 000/s and measures how long until the handler has
// delivered, in order, an event published after the kill.
func (e *env) catchUp(kills int) ([]time.Duration, error) {
	e.flush()
	topic := e.topic("kill")
	var lastT atomic.Int64
	stop, err := e.typedBus(topic, false, func(ev *benchkit.Event) { lastT.Store(ev.T) })
	if err != nil {
		return nil, err
	}
	defer stop()
	b, closePub := e.publisher()
	defer closePub()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	s := payload(220)
	pubDone := make(chan struct{})
	defer func() { cancel(); <-pubDone }()
	go func() {
		defer close(pubDone)
		benchkit.Paced(2000, time.Hour, func(i int) error {
			_, _ = b.Publish(ctx, benchkit.Event{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
			return ctx.Err()
		})
	}()
	time.Sleep(300 * time.Millisecond)
	var out []time.Duration
	for k := 0; k < kills; k++ {
		if err := e.admin.ClientKillByFilter(e.ctx, "TYPE", "pubsub").Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		deadline := t0.Add(30 * time.Second)
		for lastT.Load() <= t0.UnixNano() {
			if time.Now().After(deadline) {
				return nil, errors.New("catch-up: no event after the kill within 30s")
			}
			time.Sleep(100 * time.Microsecond)
		}
		out = append(out, time.Since(t0))
		time.Sleep(150 * time.Millisecond)
	}
	return out, nil
}

// memory runs a handler 10× slower than the publish rate for d and samples
// the heap in use every second.
func (e *env) memory(d time.Duration) (samples []float64, err error) {
	e.flush()
	topic := e.topic("slow")
	const rate = 1000
	stop, err := e.typedBus(topic, false, func(*benchkit.Event) { time.Sleep(10 * time.Millisecond) })
	if err != nil {
		return nil, err
	}
	defer stop()
	b, closePub := e.publisher()
	defer closePub()
	done := make(chan struct{})
	s := payload(220)
	go func() {
		defer close(done)
		benchkit.Paced(rate, d, func(i int) error {
			_, err := b.Publish(e.ctx, benchkit.Event{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
			return err
		})
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return samples, nil
		case <-tick.C:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			samples = append(samples, float64(ms.HeapInuse)/(1<<20))
		}
	}
}
