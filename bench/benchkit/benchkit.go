// Package benchkit holds the measurements shared by the benchmark suite
// (bench/peers, "make bench") and the CLI's "durabus bench": the typed event and
// its pre-encoded envelopes, the raw go-redis baseline script, timed and
// paced loops, typed-bus subscriptions, backlog fill, the raw Pub/Sub and
// XRANGE baselines, publish → handler latency, and the statistics over
// rounds. It writes only to the keys, channels and topics it is given; the
// caller owns every client, transport and bus it passes in.
//
// It is public only because no internal directory is visible both to
// cmd/durabus and to the suite (bench/peers, a Go module of its own so that
// the peers' dependencies stay out of durabus's go.mod): it serves
// durabus's own tools and makes no stability promise.
package benchkit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// Event is the typed event of the delivery and latency cases.
type Event struct {
	N int64  `json:"n"`
	T int64  `json:"t"` // publish time, Unix ns (latency cases)
	S string `json:"s"`
}

// EventType implements bus.Event.
func (Event) EventType() string { return "bench.event" }

// RawScript does the Redis work of a durable publish by hand: INCR of
// KEYS[2], XADD to KEYS[1] with the same trimming as durabus's default, and
// PUBLISH of ARGV[2] on channel ARGV[1]. Load it before EvalSha.
var RawScript = redis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000000, '*', 'seq', seq, 'e', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return id`)

// RawShardedScript is RawScript with SPUBLISH (sharded Pub/Sub, Redis 7.0
// or newer) instead of PUBLISH, the baseline of redistransport's
// WithShardedPubSub.
var RawShardedScript = redis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000000, '*', 'seq', seq, 'e', ARGV[2])
redis.call('SPUBLISH', ARGV[1], ARGV[2])
return id`)

// Messages encodes n envelopes from source, the i-th carrying
// Event{N: i, S: pad(i) bytes of "x"}, with their topic unset.
func Messages(n int, source string, pad func(i int) int) ([]transport.Message, error) {
	msgs := make([]transport.Message, 0, n)
	for i := 0; i < n; i++ {
		ev := Event{N: int64(i), S: strings.Repeat("x", pad(i))}
		en, err := envelope.New(ev.EventType(), ev, envelope.WithSource(source))
		if err != nil {
			return nil, err
		}
		data, err := en.Encode()
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, transport.Message{ID: en.ID, Time: en.Time, Data: data})
	}
	return msgs, nil
}

// Timed runs f from g goroutines for d, goroutine w calling f(w), f(w+g), …,
// and returns events per second, each call counting per events. It stops at
// the first error and returns it.
func Timed(d time.Duration, g, per int, f func(i int) error) (float64, error) {
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

// Paced calls f(0), f(1), … rate times a second for d, from the calling
// goroutine, and returns how many calls it made before the first error (or
// all of them).
func Paced(rate int, d time.Duration, f func(i int) error) int {
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

// WaitCount waits until c reaches n, ctx is done or 60 s have passed.
func WaitCount(ctx context.Context, c *atomic.Int64, n int64) error {
	deadline := time.Now().Add(60 * time.Second)
	for c.Load() < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("delivered %d of %d after 60s", c.Load(), n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}

// Fill publishes n events to topic with PublishBatch of 1000, cycling
// through msgs.
func Fill(ctx context.Context, tr transport.Transport, msgs []transport.Message, topic string, n int) error {
	batch := make([]transport.Message, 0, 1000)
	for i := 0; i < n; i++ {
		msg := msgs[i%len(msgs)]
		msg.Topic = topic
		batch = append(batch, msg)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := tr.PublishBatch(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// PublishEach returns the body of a timed publish case: call i publishes
// msgs[i%len(msgs)] to topic with tr.Publish.
func PublishEach(ctx context.Context, tr transport.Transport, msgs []transport.Message, topic string) func(i int) error {
	return func(i int) error {
		msg := msgs[i%len(msgs)]
		msg.Topic = topic
		_, err := tr.Publish(ctx, msg)
		return err
	}
}

// RawPipelined returns the body of the raw pipelined case: each call sends
// n EVALSHAs of RawScript (keys, channel ch, payload raw) in one pipeline.
func RawPipelined(ctx context.Context, rdb *redis.Client, keys []string, ch string, raw []byte, n int) func(int) error {
	return func(int) error {
		p := rdb.Pipeline()
		for j := 0; j < n; j++ {
			RawScript.EvalSha(ctx, p, keys, ch, raw)
		}
		_, err := p.Exec(ctx)
		return err
	}
}

// Batch returns PublishBatch's input of the batch case: the first n of
// msgs, on topic.
func Batch(msgs []transport.Message, topic string, n int) []transport.Message {
	batch := make([]transport.Message, n)
	for i := range batch {
		batch[i] = msgs[i]
		batch[i].Topic = topic
	}
	return batch
}

// Subscriber subscribes a typed handler h to topic (from the beginning of
// its log when fromStart, else to new events) on a bus of its own, runs it
// and returns once it is ready; stop ends it and releases what it opened.
type Subscriber func(topic string, fromStart bool, h func(*Event)) (stop func(), err error)

// Subscribe registers h as b's typed handler of Event on topic, from the
// beginning of its log when fromStart, else for new events.
func Subscribe(b *bus.Bus, topic string, fromStart bool, h func(*Event)) error {
	opts := []bus.SubscribeOption{bus.OnTopic(topic)}
	if fromStart {
		opts = append(opts, bus.StartAt(bus.Beginning()))
	}
	_, err := bus.Subscribe(b, func(_ context.Context, ev *Event) error { h(ev); return nil }, opts...)
	return err
}

// Start runs b in a goroutine and waits up to 20 s for it to be ready. stop
// cancels Run, waits for it and closes b (not its transport); on error b is
// already stopped and closed.
func Start(ctx context.Context, b *bus.Bus) (stop func(), err error) {
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = b.Run(rctx); close(done) }()
	stop = func() { cancel(); <-done; _ = b.Close() }
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := b.Ready(wctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// Latency publishes Events stamped with their publish time through pub to
// topic, rate a second for d, while a handler subscribed with sub records
// publish → handler latencies. It returns them and how many were published.
func Latency(ctx context.Context, sub Subscriber, pub *bus.Bus, topic string, rate int, d time.Duration) (lat []time.Duration, sent int, err error) {
	var mu sync.Mutex
	stop, err := sub(topic, false, func(ev *Event) {
		l := time.Duration(time.Now().UnixNano() - ev.T)
		mu.Lock()
		lat = append(lat, l)
		mu.Unlock()
	})
	if err != nil {
		return nil, 0, err
	}
	s := strings.Repeat("x", 220)
	sent = Paced(rate, d, func(i int) error {
		_, err := pub.Publish(ctx, Event{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topic))
		return err
	})
	time.Sleep(200 * time.Millisecond)
	stop()
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(lat), sent, nil
}

// RawLatency is Latency by hand: EVALSHA of RawScript (keys, channel ch)
// rate a second for d, with a payload of raw whose first 19 bytes are the
// publish time in Unix ns, received with ReceiveMessage on ch.
func RawLatency(ctx context.Context, rdb *redis.Client, keys []string, ch string, raw []byte, rate int, d time.Duration) ([]time.Duration, error) {
	ps := rdb.Subscribe(ctx, ch)
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, err
	}
	var lat []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return
			}
			t, _ := strconv.ParseInt(msg.Payload[:19], 10, 64)
			lat = append(lat, time.Duration(time.Now().UnixNano()-t))
		}
	}()
	pad := string(raw[19:])
	Paced(rate, d, func(int) error {
		return RawScript.EvalSha(ctx, rdb, keys, ch, strconv.FormatInt(time.Now().UnixNano(), 10)+pad).Err()
	})
	time.Sleep(200 * time.Millisecond)
	_ = ps.Close()
	<-done
	return lat, nil
}

// RawLive is live delivery by hand: n PUBLISHes of raw on ch, pipelined by
// 1000, received with ReceiveMessage. It returns deliveries per second.
func RawLive(ctx context.Context, rdb *redis.Client, ch string, raw []byte, n int) (float64, error) {
	ps := rdb.Subscribe(ctx, ch)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		return 0, err
	}
	var got atomic.Int64
	go func() {
		for got.Load() < int64(n) {
			if _, err := ps.ReceiveMessage(ctx); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	start := time.Now()
	for sent := 0; sent < n; sent += 1000 {
		p := rdb.Pipeline()
		for j := 0; j < 1000 && sent+j < n; j++ {
			p.Publish(ctx, ch, raw)
		}
		if _, err := p.Exec(ctx); err != nil {
			return 0, err
		}
	}
	if err := WaitCount(ctx, &got, int64(n)); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// XRange pages through the stream at key with raw XRANGE COUNT 1000 and
// returns entries per second and how many it read.
func XRange(ctx context.Context, rdb *redis.Client, key string) (float64, int, error) {
	start := time.Now()
	n, cursor := 0, "-"
	for {
		page, err := rdb.XRangeN(ctx, key, cursor, "+", 1000).Result()
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

// Percentile returns the p-quantile (0 ≤ p ≤ 1, nearest rank below) of ds
// in µs, 0 for none. ds is not modified.
func Percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds())
}

// Median returns the median of xs, 0 for none. xs is not modified.
func Median(xs []float64) float64 {
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

// MedianOf returns the median over rounds of the figure name, leaving
// out the rounds that lack it; 0 for none.
func MedianOf[M ~map[string]float64](rounds []M, name string) float64 {
	var xs []float64
	for _, m := range rounds {
		if v, ok := m[name]; ok {
			xs = append(xs, v)
		}
	}
	return Median(xs)
}

// MedianRatio returns the median over rounds of ours / base, leaving out
// the rounds where either is not positive; 0 for none.
func MedianRatio[M ~map[string]float64](rounds []M, ours, base string) float64 {
	var xs []float64
	for _, m := range rounds {
		if o, b := m[ours], m[base]; o > 0 && b > 0 {
			xs = append(xs, o/b)
		}
	}
	return Median(xs)
}

// FedLive measures the receive side of live delivery alone: frames in the
// format the publish script sends (see "Live frames" in redistransport's
// package doc), perFrame events each (at most 8 000 bytes of records, as
// the script splits them), are sent with raw pipelined PUBLISH on the topic's
// channel ch, the same Redis work as RawLive, into a typed handler
// subscribed with sub. pub publishes one seed event first, which gives the
// topic its epoch and the subscriber its start; the fed events continue
// its seq and stream ids, and never enter the backlog, so a frame the
// subscriber drops would be reported as lost: at most window events are
// in flight (sent and not yet handled). It returns deliveries per second.
func FedLive(ctx context.Context, rdb *redis.Client, pub transport.Transport, sub Subscriber, ch, topic string, msgs []transport.Message, n, perFrame, window int) (float64, error) {
	seed := msgs[0]
	seed.Topic = topic
	at, err := pub.Publish(ctx, seed)
	if err != nil {
		return 0, err
	}
	sid, ok := transport.ParseStreamID(at.ID)
	if !ok {
		return 0, fmt.Errorf("seed event's stream id %q", at.ID)
	}
	ms, next := strconv.FormatUint(sid.MS, 10), sid.N
	var got atomic.Int64
	wake := make(chan struct{}, 1)
	stop, err := sub(topic, false, func(*Event) {
		if got.Add(1)%64 == 0 {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	if err != nil {
		return 0, err
	}
	defer stop()
	frames, counts := buildFrames(at, ms, next+1, msgs, n, perFrame)
	start := time.Now()
	sent := 0
	last, progress := int64(-1), time.Now()
	for i := 0; i < len(frames); {
		p := rdb.Pipeline()
		for ; i < len(frames) && sent+counts[i] <= int(got.Load())+window; i++ {
			p.Publish(ctx, ch, frames[i])
			sent += counts[i]
		}
		if p.Len() == 0 {
			// The window stays shut when fed events are lost (they are in
			// no backlog to repair from): give up rather than wait forever.
			if g := got.Load(); g != last {
				last, progress = g, time.Now()
			} else if time.Since(progress) > fedStall {
				return 0, fmt.Errorf("delivered %d of %d, none for %v with %d in flight: fed frames lost", g, n, fedStall, sent-int(g))
			}
			select {
			case <-wake:
			case <-time.After(time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			continue
		}
		if _, err := p.Exec(ctx); err != nil {
			return 0, err
		}
	}
	if err := WaitCount(ctx, &got, int64(n)); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// fedStall is how long FedLive waits for a delivery while its window is
// full before it reports the fed events lost.
const fedStall = 30 * time.Second

// buildFrames encodes n events after the seed position at (stream ids
// <ms>-<id>, <ms>-<id+1>, …; envelopes cycling through msgs) into frames of
// at most perFrame events and 8 000 bytes, and returns them with their event
// counts.
func buildFrames(at transport.Position, ms string, id uint64, msgs []transport.Message, n, perFrame int) (frames [][]byte, counts []int) {
	const maxFrame = 8000 // redistransport's frameSize
	var body []byte
	first, count := at.Seq+1, 0
	flush := func() {
		if count == 0 {
			return
		}
		frame := fmt.Appendf(nil, "v1 %s %d %d\n", at.Epoch, first, count)
		frames = append(frames, append(frame, body...))
		counts = append(counts, count)
		first += uint64(count)
		body, count = body[:0], 0
	}
	for i := 0; i < n; i++ {
		data := msgs[i%len(msgs)].Data
		rec := fmt.Appendf(nil, "%s-%d %d\n", ms, id+uint64(i), len(data))
		if count == perFrame || (count > 0 && len(body)+len(rec)+len(data) > maxFrame) {
			flush()
		}
		body = append(append(body, rec...), data...)
		count++
	}
	flush()
	return frames, counts
}
