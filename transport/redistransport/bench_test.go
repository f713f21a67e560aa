package redistransport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// rawScript is the minimal publish-with-history of the reference
// measurements in docs/benchmarks.md: INCR + XADD + PUBLISH, the floor for
// one script call per event.
var rawScript = redis.NewScript(`
local seq = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 100000, '*', 'seq', seq, 'e', ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return id`)

// benchEnvelope is an envelope with a 256-byte payload.
func benchEnvelope() []byte {
	return []byte(`{"specversion":"1.0","id":"0190f3e4-0000-7000-8000-000000000001","source":"bench","type":"bench.event","version":1,"time":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","datacontenttype":"application/json","data":{"s":"` + strings.Repeat("x", 248) + `"}}`)
}

// BenchmarkPublish compares durabus publishing with raw go-redis calls on
// the same private Redis (persistence off). One op is one event.
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32})
	b.Cleanup(func() { _ = rdb.Close() })
	tr, err := redistransport.New(rdb, redistransport.WithMaxLen(100_000))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	ctx := context.Background()
	env := benchEnvelope()
	msg := transport.Message{Topic: "bench", Data: env}
	_, _, ch := tr.Keys("bench")
	if err := rawScript.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	raw := func() error {
		return rawScript.EvalSha(ctx, rdb, []string{"raw:{bench}:log", "raw:{bench}:seq"}, "raw:{bench}", env).Err()
	}
	if _, err := tr.Publish(ctx, msg); err != nil { // load the script
		b.Fatal(err)
	}
	events := func(b *testing.B) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	for _, par := range []bool{false, true} {
		name := func(s string) string {
			if par {
				return s + "/16goroutines"
			}
			return s + "/1goroutine"
		}
		run := func(b *testing.B, f func() error) {
			if !par {
				for i := 0; i < b.N; i++ {
					if err := f(); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(8) // 16 goroutines on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := f(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			events(b)
		}
		b.Run(name("RawPUBLISH"), func(b *testing.B) { run(b, func() error { return rdb.Publish(ctx, ch, env).Err() }) })
		b.Run(name("RawEVALSHA"), func(b *testing.B) { run(b, raw) })
		b.Run(name("Publish"), func(b *testing.B) {
			run(b, func() error { _, err := tr.Publish(ctx, msg); return err })
		})
	}
	const batch = 100
	b.Run("RawEVALSHA/pipelined100", func(b *testing.B) {
		for i := 0; i < b.N; i += batch {
			p := rdb.Pipeline()
			for j := 0; j < batch; j++ {
				rawScript.EvalSha(ctx, p, []string{"raw:{bench}:log", "raw:{bench}:seq"}, "raw:{bench}", env)
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		events(b)
	})
	b.Run("PublishBatch100", func(b *testing.B) {
		msgs := make([]transport.Message, batch)
		for i := range msgs {
			msgs[i] = msg
		}
		for i := 0; i < b.N; i += batch {
			if _, err := tr.PublishBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		events(b)
	})
	b.Run("PublishBatch100x4topics", func(b *testing.B) {
		msgs := make([]transport.Message, batch)
		for i := range msgs {
			msgs[i] = transport.Message{Topic: []string{"bench.a", "bench.b", "bench.c", "bench.d"}[i%4], Data: env}
		}
		for i := 0; i < b.N; i += batch {
			if _, err := tr.PublishBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		events(b)
	})
}
