package benchkit_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport/redistransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentileAndMedian(t *testing.T) {
	ds := []time.Duration{5 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	for _, c := range []struct {
		p    float64
		want float64
	}{{0, 1000}, {0.5, 3000}, {0.99, 4000}, {1, 5000}} {
		if got := benchkit.Percentile(ds, c.p); got != c.want {
			t.Errorf("Percentile(p=%v) = %v µs, want %v", c.p, got, c.want)
		}
	}
	if ds[0] != 5*time.Millisecond {
		t.Errorf("Percentile sorted its input: %v", ds)
	}
	if got := benchkit.Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile of none = %v, want 0", got)
	}
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := benchkit.Median(c.xs); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// Timed counts per events a call over all goroutines, each call index once,
// and stops at the first error.
func TestTimedCountsCallsAndStopsAtError(t *testing.T) {
	var calls atomic.Int64
	start := time.Now()
	rate, err := benchkit.Timed(50*time.Millisecond, 4, 10, func(int) error { calls.Add(1); time.Sleep(time.Millisecond); return nil })
	elapsed := time.Since(start)
	if err != nil || rate <= 0 {
		t.Fatalf("Timed = %v, %v; want a positive rate", rate, err)
	}
	// Timed divides by the time it ran: at least its 50 ms, at most the
	// time measured around it (however slow a loaded machine makes it).
	events := float64(calls.Load()) * 10
	if lo, hi := events/elapsed.Seconds(), events/0.05; rate < lo*0.999 || rate > hi*1.001 {
		t.Errorf("rate %v for %d calls × 10: want between %v (over %v) and %v (over 50 ms)", rate, calls.Load(), lo, elapsed, hi)
	}
	boom := errors.New("boom")
	if _, err := benchkit.Timed(time.Second, 4, 1, func(i int) error {
		if i == 6 {
			return boom
		}
		return nil
	}); !errors.Is(err, boom) {
		t.Fatalf("Timed after a failing call = %v, want %v", err, boom)
	}
}

func TestPacedKeepsTheRateAndStopsAtError(t *testing.T) {
	start := time.Now()
	n := benchkit.Paced(1000, 50*time.Millisecond, func(int) error { return nil })
	if n != 50 || time.Since(start) < 49*time.Millisecond {
		t.Errorf("Paced(1000/s, 50ms) made %d calls in %v, want 50 over ≥ 49ms", n, time.Since(start))
	}
	if n := benchkit.Paced(1000, time.Second, func(i int) error {
		if i == 3 {
			return errors.New("stop")
		}
		return nil
	}); n != 3 {
		t.Errorf("Paced stopped after %d calls, want 3", n)
	}
}

func TestWaitCountReturnsWhenReachedOrCancelled(t *testing.T) {
	var c atomic.Int64
	c.Store(7)
	if err := benchkit.WaitCount(context.Background(), &c, 7); err != nil {
		t.Fatalf("WaitCount at the count = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := benchkit.WaitCount(ctx, &c, 8); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitCount with a cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestMessagesArePaddedAndEncoded(t *testing.T) {
	msgs, err := benchkit.Messages(3, "test", func(i int) int { return 10 * i })
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].ID == "" || msgs[0].Topic != "" {
		t.Fatalf("Messages = %+v", msgs)
	}
	if d := len(msgs[2].Data) - len(msgs[0].Data); d < 20 {
		t.Errorf("envelope 2 is %d bytes longer than envelope 0, want ≥ 20 (its padding)", d)
	}
}

// Against a private Redis: a backlog of 2 500 filled in batches reaches a
// typed subscriber from the start and raw XRANGE; live raw Pub/Sub and both
// latency cases deliver what they sent.
func TestCasesOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	tr, err := redistransport.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	msgs, err := benchkit.Messages(100, "test", func(int) int { return 200 })
	if err != nil {
		t.Fatal(err)
	}
	sub := func(topic string, fromStart bool, h func(*benchkit.Event)) (func(), error) {
		str, err := redistransport.New(rdb)
		if err != nil {
			return nil, err
		}
		b, err := bus.New(str)
		if err == nil {
			err = benchkit.Subscribe(b, topic, fromStart, h)
		}
		var stop func()
		if err == nil {
			stop, err = benchkit.Start(ctx, b)
		}
		if err != nil {
			_ = str.Close()
			return nil, err
		}
		return func() { stop(); _ = str.Close() }, nil
	}

	const n = 2500
	if err := benchkit.Fill(ctx, tr, msgs, "backlog", n); err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	stop, err := sub("backlog", true, func(*benchkit.Event) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	err = benchkit.WaitCount(ctx, &got, n)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	logKey, _, _ := tr.Keys("backlog")
	if rate, read, err := benchkit.XRange(ctx, rdb, logKey); err != nil || read != n || rate <= 0 {
		t.Fatalf("XRange = %v/s, %d read, %v; want %d", rate, read, err, n)
	}

	if rate, err := benchkit.RawLive(ctx, rdb, "rawlive", msgs[0].Data, n); err != nil || rate <= 0 {
		t.Fatalf("RawLive = %v, %v", rate, err)
	}

	pub, err := bus.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	lat, sent, err := benchkit.Latency(ctx, sub, pub, "lat", 1000, 100*time.Millisecond)
	if err != nil || sent != 100 || len(lat) != sent {
		t.Fatalf("Latency: %d of %d delivered, %v", len(lat), sent, err)
	}
	if err := benchkit.RawScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	raw, err := benchkit.RawLatency(ctx, rdb, []string{"raw:{c}:log", "raw:{c}:seq"}, "raw:{c}", msgs[0].Data, 1000, 100*time.Millisecond)
	if err != nil || len(raw) != 100 {
		t.Fatalf("RawLatency: %d of 100 delivered, %v", len(raw), err)
	}
	if p := benchkit.Percentile(raw, 0.5); p <= 0 || p > 1e6 {
		t.Errorf("raw latency p50 = %v µs, want between 0 and 1 s", p)
	}
}
