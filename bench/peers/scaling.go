package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
)

var plotPath = flag.String("plot", "", "PNG file for the scaling curves, referenced from the report by its base name (off when empty)")

type point struct {
	x          int
	ours, base float64
}

type scaleResult struct {
	publishers, topics, subscribers, backlog []point
	big                                      int
	image                                    string // base name of the written plot, "" when none
}

// scaling measures the curves of issue 8 point 5, one pass each.
func (e *env) scaling(big int) (*scaleResult, error) {
	ctx := e.ctx
	r := &scaleResult{big: big}
	e.round = 99
	for _, g := range []int{1, 4, 16, 64} {
		fmt.Fprintf(os.Stderr, "scaling: %d publishers\n", g)
		e.flush()
		tr := e.transport()
		topic := e.topic("scale" + strconv.Itoa(g))
		ours, err := benchkit.Timed(e.dur/2, g, 1, benchkit.PublishEach(ctx, tr, e.msgs, topic))
		_ = tr.Close()
		if err != nil {
			return nil, err
		}
		e.flush()
		keys := []string{"raw:{s}:log", "raw:{s}:seq"}
		base, err := benchkit.Timed(e.dur/2, g, 1, func(int) error { return benchkit.RawScript.EvalSha(ctx, e.rdb, keys, "raw:{s}", e.raw).Err() })
		if err != nil {
			return nil, err
		}
		r.publishers = append(r.publishers, point{g, ours, base})
	}
	for _, nt := range []int{1, 10, 100, 1000} {
		fmt.Fprintf(os.Stderr, "scaling: %d topics\n", nt)
		rate, err := e.topicsRate(nt, e.n)
		if err != nil {
			return nil, fmt.Errorf("%d topics: %w", nt, err)
		}
		r.topics = append(r.topics, point{x: nt, ours: rate})
	}
	for _, s := range []int{1, 4, 16} {
		fmt.Fprintf(os.Stderr, "scaling: %d subscribers\n", s)
		rate, err := e.liveOurs(e.topic("subs"+strconv.Itoa(s)), e.n/2, s)
		if err != nil {
			return nil, fmt.Errorf("%d subscribers: %w", s, err)
		}
		r.subscribers = append(r.subscribers, point{x: s, ours: rate})
	}
	for _, n := range []int{10_000, 100_000, big} {
		fmt.Fprintf(os.Stderr, "scaling: backlog %d\n", n)
		topic := e.topic("backlog" + strconv.Itoa(n))
		ours, _, _, err := e.replay(topic, n)
		if err != nil {
			return nil, fmt.Errorf("backlog %d: %w", n, err)
		}
		base, _, err := e.xrange(topic)
		if err != nil {
			return nil, err
		}
		r.backlog = append(r.backlog, point{n, ours, base})
	}
	e.flush()
	if *plotPath != "" {
		// A plot that cannot be written must not cost the measurements.
		if err := writePlot(*plotPath, r.panels()); err != nil {
			fmt.Fprintln(os.Stderr, "bench: plot:", err)
		} else {
			r.image = filepath.Base(*plotPath)
		}
	}
	return r, nil
}

// topicsRate: n events spread round-robin over nt topics (PublishBatch of
// 1000), delivered to one pattern subscription with a handler per event.
func (e *env) topicsRate(nt, n int) (float64, error) {
	e.flush()
	prefix := e.topic(fmt.Sprintf("t%d", nt))
	tr := e.transport()
	b, err := bus.New(tr, bus.WithSource("bench"))
	if err != nil {
		return 0, err
	}
	var got atomic.Int64
	if _, err := b.Handle(prefix+".*", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		var ev benchkit.Event
		if err := m.Bind(&ev); err != nil {
			return err
		}
		got.Add(1)
		return nil
	})); err != nil {
		return 0, err
	}
	stop, err := e.run(b, tr)
	if err != nil {
		return 0, err
	}
	defer stop()
	pub := e.transport()
	defer pub.Close()
	start := time.Now()
	batch := make([]transport.Message, 0, 1000)
	for i := 0; i < n; i++ {
		msg := e.msgs[i%len(e.msgs)]
		msg.Topic = prefix + "." + strconv.Itoa(i%nt)
		batch = append(batch, msg)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := pub.PublishBatch(e.ctx, batch); err != nil {
				return 0, err
			}
			batch = batch[:0]
		}
	}
	if err := benchkit.WaitCount(e.ctx, &got, int64(n)); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func (r *scaleResult) write(w io.Writer) {
	fmt.Fprintln(w, "\n### Scaling (one pass each)")
	if r.image != "" {
		fmt.Fprintf(w, "\n![Scaling curves](%s)\n", r.image)
	}
	fmt.Fprintln(w, "\n| publisher goroutines | `Publish` | raw `EVALSHA` | ratio |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, p := range r.publishers {
		fmt.Fprintf(w, "| %d | %.1f k/s | %.1f k/s | %.2f × |\n", p.x, p.ours/1000, p.base/1000, p.ours/p.base)
	}
	fmt.Fprintln(w, "\n| topics (one pattern subscription, `PublishBatch` of 1 000 round-robin) | deliveries/s |")
	fmt.Fprintln(w, "| --- | --- |")
	for _, p := range r.topics {
		fmt.Fprintf(w, "| %d | %.1f k/s |\n", p.x, p.ours/1000)
	}
	fmt.Fprintln(w, "\n| subscribers (each its own bus and Pub/Sub connection, one topic) | deliveries/s, all subscribers |")
	fmt.Fprintln(w, "| --- | --- |")
	for _, p := range r.subscribers {
		fmt.Fprintf(w, "| %d | %.1f k/s |\n", p.x, p.ours/1000)
	}
	fmt.Fprintln(w, "\n| backlog | replay into a typed handler | raw `XRANGE` paging | ratio |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, p := range r.backlog {
		fmt.Fprintf(w, "| %d | %.1f k/s | %.1f k/s | %.2f × |\n", p.x, p.ours/1000, p.base/1000, p.ours/p.base)
	}
}
