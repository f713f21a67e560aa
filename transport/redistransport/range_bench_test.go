package redistransport_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// BenchmarkRange reads a backlog of 256-byte envelopes with Range, in
// pages of 1024 (the replay follower's default) and of 100, beside raw
// XRANGE pages of 1024 on the same log. One op is one event read.
func BenchmarkRange(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = rdb.Close() })
	tr, err := redistransport.New(rdb)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	ctx := context.Background()
	const topic, events = "bench.range", 20_000
	msgs := make([]transport.Message, 500)
	for i := range msgs {
		msgs[i] = transport.Message{Topic: topic, Data: benchEnvelope()}
	}
	for range events / len(msgs) {
		if _, err := tr.PublishBatch(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	logKey, _, _ := tr.Keys(topic)
	for _, page := range []int{1024, 100} {
		b.Run("Range"+strconv.Itoa(page), func(b *testing.B) {
			var after transport.Position
			for n := 0; n < b.N; {
				p, err := tr.Range(ctx, topic, after, min(page, b.N-n))
				if err != nil {
					b.Fatal(err)
				}
				n += len(p.Events)
				if len(p.Events) == 0 {
					after = transport.Position{}
					continue
				}
				after = p.Events[len(p.Events)-1].Position
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	b.Run("RawXRANGE1024", func(b *testing.B) {
		cursor := "-"
		for n := 0; n < b.N; {
			page, err := rdb.XRangeN(ctx, logKey, cursor, "+", int64(min(1024, b.N-n))).Result()
			if err != nil {
				b.Fatal(err)
			}
			n += len(page)
			if len(page) == 0 {
				cursor = "-"
				continue
			}
			cursor = "(" + page[len(page)-1].ID
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
