package redistransport_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// Seek is exact (Range from its result starts at the first event, in log
// order, whose envelope time is at or after t) when no publisher's clock is
// ahead of Redis's by more than WithSeekSkew, whatever the lag of clocks
// behind Redis's. The log is written by hand: stream ids (Redis's clock)
// 300 ms apart, envelope times off by the publisher's clock.
func TestSeekPublisherClockSkew(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	const n = 40
	cases := []struct {
		name  string
		skew  time.Duration // WithSeekSkew; 0: the default
		clock func(i int) time.Duration
		exact bool
	}{
		{"ahead 5s, skew 5s", 5 * time.Second, func(int) time.Duration { return 5 * time.Second }, true},
		{"behind 5s, default skew", 0, func(int) time.Duration { return -5 * time.Second }, true},
		{"behind 5s, skew 0", -1, func(int) time.Duration { return -5 * time.Second }, true},
		{"two publishers 5s ahead and 5s behind, skew 5s", 5 * time.Second, func(i int) time.Duration {
			if i%2 == 0 {
				return 5 * time.Second
			}
			return -5 * time.Second
		}, true},
		// Beyond the skew: the events whose stream id is before t minus
		// the skew are not found, and Range from the result starts later.
		{"ahead 5s, default skew", 0, func(int) time.Duration { return 5 * time.Second }, false},
	}
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := testCtx(t)
			var opts []redistransport.Option
			switch {
			case c.skew > 0:
				opts = append(opts, redistransport.WithSeekSkew(c.skew))
			case c.skew < 0:
				opts = append(opts, redistransport.WithSeekSkew(0))
			}
			tr := newTransport(t, rdb, opts...)
			topic := "skew." + strconv.Itoa(k)
			logKey, metaKey, _ := tr.Keys(topic)
			const epoch = "skewed"
			times := make([]time.Time, n) // envelope times
			pos := make([]transport.Position, n)
			for i := range n {
				redisTime := base.Add(time.Duration(i) * 300 * time.Millisecond)
				times[i] = redisTime.Add(c.clock(i))
				id := strconv.FormatInt(redisTime.UnixMilli(), 10) + "-0"
				env := fmt.Sprintf(`{"specversion":"1.0","id":"e%d","source":"test","type":"t","version":1,"time":%q,"data":{}}`,
					i, times[i].Format(time.RFC3339Nano))
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: logKey, ID: id, Values: []any{"seq", i + 1, "e", env}}).Err(); err != nil {
					t.Fatal(err)
				}
				pos[i] = transport.Position{Epoch: epoch, Seq: uint64(i + 1), ID: id}
			}
			if err := rdb.HSet(ctx, metaKey, "epoch", epoch, "seq", n).Err(); err != nil {
				t.Fatal(err)
			}
			head, err := tr.Head(ctx, topic)
			if err != nil || head != pos[n-1] {
				t.Fatalf("Head: %v, %v; want %v", head, err, pos[n-1])
			}
			// first returns the index of the first event with time >= at,
			// n for none.
			first := func(at time.Time) int {
				for i, tm := range times {
					if !tm.Before(at) {
						return i
					}
				}
				return n
			}
			ats := []time.Time{base.Add(-time.Hour), base.Add(time.Hour)}
			for _, tm := range times {
				ats = append(ats, tm.Add(-time.Nanosecond), tm, tm.Add(time.Nanosecond))
			}
			later := 0
			for _, at := range ats {
				p, err := tr.Seek(ctx, topic, at)
				if err != nil {
					t.Fatalf("Seek(%v): %v", at, err)
				}
				page, err := tr.Range(ctx, topic, p, 1)
				if err != nil {
					t.Fatalf("Range after Seek(%v) = %v: %v", at, p, err)
				}
				got := n
				if len(page.Events) == 1 {
					got = int(page.Events[0].Position.Seq) - 1
				} else if p != head {
					t.Fatalf("Seek(%v) = %v: nothing follows, yet it is not the head %v", at, p, head)
				}
				want := first(at)
				switch {
				case got == want:
				case c.exact || got < want:
					t.Fatalf("Seek(%v): Range starts at event %d, want %d", at, got, want)
				default:
					later++
				}
			}
			if !c.exact && later == 0 {
				t.Fatal("Seek was exact although a publisher clock is ahead by more than the skew: the doc says otherwise")
			}
			t.Logf("%d times sought; %d started later than the first event at or after them", len(ats), later)
		})
	}
}
