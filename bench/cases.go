package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// BenchEvent is the typed event: a 256-byte payload once encoded.
type BenchEvent struct {
	N int64  `json:"n"`
	T int64  `json:"t"` // publish time, Unix ns (latency cases)
	S string `json:"s"`
}

// EventType implements bus.Event.
func (BenchEvent) EventType() string { return "bench.event" }

// rawScript does the Redis work of a durable publish by hand: INCR, XADD
// with the same trimming as durabus's default, PUBLISH.
var rawScript = redis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000000, '*', 'seq', seq, 'e', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return id`)

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

// newEnv encodes a pool of envelopes whose JSON "data" is 256 bytes.
func (e *env) encode() error {
	const pool = 1000
	for i := 0; i < pool; i++ {
		ev := BenchEvent{N: int64(i), T: 0}
		ev.S = payload(256 - len(`{"n":,"t":0,"s":""}`) - len(strconv.Itoa(i)))
		en, err := envelope.New(ev.EventType(), ev, envelope.WithSource("bench"))
		if err != nil {
			return err
		}
		data, err := en.Encode()
		if err != nil {
			return err
		}
		e.msgs = append(e.msgs, transport.Message{ID: en.ID, Time: en.Time, Data: data})
	}
	e.raw = e.msgs[0].Data
	return nil
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

// timed runs f from g goroutines for d and returns events per second
// (each f call publishes per events).
func timed(d time.Duration, g, per int, f func(i int) error) (float64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
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
	if err := rawScript.Load(ctx, e.rdb).Err(); err != nil {
		return err
	}
	for _, g := range []int{1, 16} {
		gs := strconv.Itoa(g)
		e.flush()
		ch := e.topic("rawpub")
		if err := e.withCPU(m, "pub.raw_publish."+gs, func() (float64, error) {
			return timed(e.dur, g, 1, func(int) error { return e.rdb.Publish(ctx, ch, e.raw).Err() })
		}); err != nil {
			return err
		}
		e.flush()
		keys := []string{"raw:{" + ch + "}:log", "raw:{" + ch + "}:seq"}
		if err := e.withCPU(m, "pub.raw_evalsha."+gs, func() (float64, error) {
			return timed(e.dur, g, 1, func(int) error { return rawScript.EvalSha(ctx, e.rdb, keys, ch, e.raw).Err() })
		}); err != nil {
			return err
		}
		e.flush()
		tr := e.transport()
		topic := e.topic("pub" + gs)
		if err := e.withCPU(m, "pub.ours."+gs, func() (float64, error) {
			return timed(e.dur, g, 1, func(i int) error {
				msg := e.msgs[i%len(e.msgs)]
				msg.Topic = topic
				_, err := tr.Publish(ctx, msg)
				return err
			})
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
			a, b = allocs(2000, func() { _, _ = bb.Publish(ctx, BenchEvent{N: 1, S: e.msgs[0].Topic}, bus.ToTopic(topic)) })
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
		return timed(e.dur, 1, 100, func(int) error {
			p := e.rdb.Pipeline()
			for j := 0; j < 100; j++ {
				rawScript.EvalSha(ctx, p, keys, ch, e.raw)
			}
			_, err := p.Exec(ctx)
			return err
		})
	}); err != nil {
		return err
	}
	e.flush()
	tr := e.transport()
	topic := e.topic("batch")
	batch := make([]transport.Message, 100)
	for i := range batch {
		batch[i] = e.msgs[i]
		batch[i].Topic = topic
	}
	if err := e.withCPU(m, "pub.ours.batch100", func() (float64, error) {
		return timed(e.dur, 1, 100, func(int) error { _, err := tr.PublishBatch(ctx, batch); return err })
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
		rate, err := timed(e.dur, g, 1, func(int) error {
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
			rate, err := timed(e.dur, g, 1, func(int) error { _, err := e.js.Publish(ctx, subj, e.raw); return err })
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
			if _, err := e.js.PublishAsync(subj, e.raw); err != nil {
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

// typedBus starts a bus whose typed handler calls h, on topic (or pattern)
// from start. stop ends it.
func (e *env) typedBus(topic string, start transport.Position, fromStart bool, h func(*BenchEvent)) (stop func(), err error) {
	tr := e.transport()
	b, err := bus.New(tr, bus.WithSource("bench"))
	if err != nil {
		return nil, err
	}
	opts := []bus.SubscribeOption{bus.OnTopic(topic)}
	if fromStart {
		opts = append(opts, bus.StartAt(bus.Beginning()))
	}
	_ = start
	if err := bus.Subscribe(b, func(_ context.Context, ev *BenchEvent) error { h(ev); return nil }, opts...); err != nil {
		return nil, err
	}
	return e.run(b, tr)
}

func (e *env) run(b *bus.Bus, tr *redistransport.Transport) (func(), error) {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	rctx, rcancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer rcancel()
	if err := b.Ready(rctx); err != nil {
		cancel()
		return nil, err
	}
	return func() { cancel(); <-done; _ = b.Close(); _ = tr.Close() }, nil
}

// waitCount waits until c reaches n, or 60 s.
func waitCount(c *atomic.Int64, n int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for c.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("delivered %d of %d after 60s", c.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// fill publishes n events to topic with PublishBatch of 1000.
func (e *env) fill(tr *redistransport.Transport, topic string, n int) error {
	batch := make([]transport.Message, 0, 1000)
	for i := 0; i < n; i++ {
		msg := e.msgs[i%len(e.msgs)]
		msg.Topic = topic
		batch = append(batch, msg)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := tr.PublishBatch(e.ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
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
	return nil
}

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
		stop, err := e.typedBus(topic, transport.Position{}, false, func(*BenchEvent) { got.Add(1) })
		if err != nil {
			return 0, err
		}
		stops = append(stops, stop)
	}
	pub := e.transport()
	defer pub.Close()
	start := time.Now()
	if err := e.fill(pub, topic, n); err != nil {
		return 0, err
	}
	if err := waitCount(&got, int64(n*subs)); err != nil {
		return 0, err
	}
	return float64(n*subs) / time.Since(start).Seconds(), nil
}

func (e *env) liveRaw(ch string, n int) (float64, error) {
	e.flush()
	ps := e.rdb.Subscribe(e.ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(e.ctx); err != nil {
		return 0, err
	}
	var got atomic.Int64
	go func() {
		for got.Load() < int64(n) {
			if _, err := ps.ReceiveMessage(e.ctx); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	start := time.Now()
	for sent := 0; sent < n; sent += 1000 {
		p := e.rdb.Pipeline()
		for j := 0; j < 1000 && sent+j < n; j++ {
			p.Publish(e.ctx, ch, e.raw)
		}
		if _, err := p.Exec(e.ctx); err != nil {
			return 0, err
		}
	}
	if err := waitCount(&got, int64(n)); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
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
	if err := e.fill(tr, topic, n); err != nil {
		return 0, 0, 0, err
	}
	_ = tr.Close()
	var got atomic.Int64
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	stop, err := e.typedBus(topic, transport.Position{}, true, func(*BenchEvent) { got.Add(1) })
	if err != nil {
		return 0, 0, 0, err
	}
	err = waitCount(&got, int64(n))
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
	start := time.Now()
	n := 0
	cursor := "-"
	for {
		page, err := e.rdb.XRangeN(e.ctx, logKey, cursor, "+", 1000).Result()
		if err != nil {
			return 0, 0, err
		}
		n += len(page)
		if len(page) < 1000 {
			break
		}
		cursor = "(" + page[len(page)-1].ID
	}
	return float64(n) / time.Since(start).Seconds(), n, nil
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
		if _, err := e.js.PublishAsync(subj, e.raw); err != nil {
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
// (encode, Publish, follower, decode into BenchEvent) and raw (EVALSHA of
// the raw script, ReceiveMessage).
func (e *env) latencyCases(m metrics, rate int, d time.Duration) error {
	e.flush()
	topic := e.topic("lat")
	var mu sync.Mutex
	var lat []time.Duration
	stop, err := e.typedBus(topic, transport.Position{}, false, func(ev *BenchEvent) {
		l := time.Duration(time.Now().UnixNano() - ev.T)
		mu.Lock()
		lat = append(lat, l)
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	tr := e.transport()
	b, _ := bus.New(tr, bus.WithSource("bench"))
	s := payload(220)
	n := paced(rate, d, func(i int) error {
		_, err := b.Publish(e.ctx, BenchEvent{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
		return err
	})
	time.Sleep(200 * time.Millisecond)
	stop()
	_ = b.Close()
	_ = tr.Close()
	mu.Lock()
	ours := slices.Clone(lat)
	mu.Unlock()
	if len(ours) < n*9/10 {
		return fmt.Errorf("latency: %d of %d delivered", len(ours), n)
	}
	pct(m, "lat.ours", ours)

	// raw
	ch := e.topic("latraw")
	keys := []string{"raw:{" + ch + "}:log", "raw:{" + ch + "}:seq"}
	ps := e.rdb.Subscribe(e.ctx, ch)
	if _, err := ps.Receive(e.ctx); err != nil {
		return err
	}
	var raw []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := ps.ReceiveMessage(e.ctx)
			if err != nil {
				return
			}
			t, _ := strconv.ParseInt(msg.Payload[:19], 10, 64)
			raw = append(raw, time.Duration(time.Now().UnixNano()-t))
		}
	}()
	pad := string(e.raw[19:])
	paced(rate, d, func(int) error {
		return rawScript.EvalSha(e.ctx, e.rdb, keys, ch, strconv.FormatInt(time.Now().UnixNano(), 10)+pad).Err()
	})
	time.Sleep(200 * time.Millisecond)
	_ = ps.Close()
	<-done
	pct(m, "lat.raw", raw)
	return nil
}

// paced calls f rate times a second for d, from one goroutine.
func paced(rate int, d time.Duration, f func(i int) error) int {
	step := time.Second / time.Duration(rate)
	start := time.Now()
	n := int(d / step)
	for i := 0; i < n; i++ {
		if w := time.Until(start.Add(time.Duration(i) * step)); w > 0 {
			time.Sleep(w)
		}
		if err := f(i); err != nil {
			return i
		}
	}
	return n
}

func pct(m metrics, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(p float64) float64 {
		i := int(p * float64(len(ds)-1))
		return float64(ds[i].Microseconds())
	}
	m[name+".p50"], m[name+".p99"], m[name+".p999"] = at(0.50), at(0.99), at(0.999)
}

// catchUp kills the subscriber's Pub/Sub connection kills times while
// events flow at 2 000/s and measures how long until the handler has
// delivered, in order, an event published after the kill.
func (e *env) catchUp(kills int) ([]time.Duration, error) {
	e.flush()
	topic := e.topic("kill")
	var lastT atomic.Int64
	stop, err := e.typedBus(topic, transport.Position{}, false, func(ev *BenchEvent) { lastT.Store(ev.T) })
	if err != nil {
		return nil, err
	}
	defer stop()
	tr := e.transport()
	defer tr.Close()
	b, _ := bus.New(tr, bus.WithSource("bench"))
	defer b.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	s := payload(220)
	pubDone := make(chan struct{})
	defer func() { cancel(); <-pubDone }()
	go func() {
		defer close(pubDone)
		paced(2000, time.Hour, func(i int) error {
			_, _ = b.Publish(ctx, BenchEvent{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
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
	stop, err := e.typedBus(topic, transport.Position{}, false, func(*BenchEvent) { time.Sleep(10 * time.Millisecond) })
	if err != nil {
		return nil, err
	}
	defer stop()
	tr := e.transport()
	defer tr.Close()
	b, _ := bus.New(tr, bus.WithSource("bench"))
	defer b.Close()
	done := make(chan struct{})
	s := payload(220)
	go func() {
		defer close(done)
		paced(rate, d, func(i int) error {
			_, err := b.Publish(e.ctx, BenchEvent{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
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
