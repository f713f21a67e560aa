package redistransport_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// cpuTime returns the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// evalshaStats returns Redis's EVALSHA calls and the µs they took.
func evalshaStats(b *testing.B, rdb *redis.Client) (calls, usec float64) {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				calls = f
			case "usec":
				usec = f
			}
		}
	}
	return calls, usec
}

// BenchmarkPublishCost measures Publish as BenchmarkPublish does, with
// figures that a loaded machine disturbs less than the wall time: the
// client's CPU time per event (this process: the transport and go-redis)
// and Redis's time per EVALSHA call (INFO commandstats). "Background" is a
// ctx that cannot end (the lone call sends inline), "Ctx" one that can (the
// call waits for its result or its ctx: a goroutine per lone call). One op
// is one event.
func BenchmarkPublishCost(b *testing.B) {
	srv := redistest.Start(b)
	admin := srv.Client(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32})
	b.Cleanup(func() { _ = rdb.Close() })
	tr, err := redistransport.New(rdb, redistransport.WithMaxLen(100_000))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = tr.Close() })
	cctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	msg := transport.Message{Topic: "bench", Data: benchEnvelope()}
	if _, err := tr.Publish(cctx, msg); err != nil {
		b.Fatal(err)
	}
	msgs := make([]transport.Message, 100)
	for i := range msgs {
		msgs[i] = msg
	}
	// measure runs f, which publishes per events, b.N events in all.
	measure := func(b *testing.B, par bool, per int, f func() error) {
		calls0, usec0 := evalshaStats(b, admin)
		cpu0 := cpuTime()
		b.ResetTimer()
		if par {
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := f(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		} else {
			for i := 0; i < b.N; i += per {
				if err := f(); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StopTimer()
		cpu := cpuTime() - cpu0
		calls, usec := evalshaStats(b, admin)
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		if calls > calls0 {
			b.ReportMetric((usec-usec0)/(calls-calls0), "srv-us/call")
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"Background", context.Background()}, {"Ctx", cctx}} {
		b.Run("Publish/"+c.name+"/1goroutine", func(b *testing.B) {
			measure(b, false, 1, func() error { _, err := tr.Publish(c.ctx, msg); return err })
		})
		b.Run("Publish/"+c.name+"/16goroutines", func(b *testing.B) {
			measure(b, true, 1, func() error { _, err := tr.Publish(c.ctx, msg); return err })
		})
		b.Run("PublishBatch100/"+c.name, func(b *testing.B) {
			measure(b, false, len(msgs), func() error { _, err := tr.PublishBatch(c.ctx, msgs); return err })
		})
	}
}
