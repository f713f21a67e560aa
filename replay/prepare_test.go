package replay_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// A backlog of 10 pages read with WithPrepare: every event is delivered
// once, in order, and every Prepared value that reaches the handler is the
// one computed for that very event. The read-ahead prepares until the
// worker takes its page: the handler holds the first page's last event
// until the second page is prepared, so at least that page comes prepared.
func TestPreparedValuesBelongToTheirEventAndKeepOrder(t *testing.T) {
	mem := newMem(t)
	const n, page = 1000, 100
	publish(t, mem, "t", n)
	rec := newRecorder(t)
	var mu sync.Mutex
	prepared := 0
	var prepCalls atomic.Int64
	h := func(ctx context.Context, d replay.Delivery) error {
		if d.Position.Seq == page {
			deadline := time.Now().Add(10 * time.Second)
			for prepCalls.Load() < page && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		if d.Prepared != nil {
			if got := d.Prepared.(transport.Position); got != d.Position {
				t.Errorf("seq %d: Prepared for %v", d.Position.Seq, got)
			}
			mu.Lock()
			prepared++
			mu.Unlock()
		}
		return rec.handle(ctx, d)
	}
	prep := func(d transport.Delivery) any { prepCalls.Add(1); return d.Position }
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithStart(replay.Beginning()),
		replay.WithPageSize(page), replay.WithPrepare(prep))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	waitFor(t, "replay", func() bool { return rec.count("t") >= n })
	stop()
	if err := contiguous(rec.seqs["t"], 1, n); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if prepared < page {
		t.Errorf("%d of %d events came prepared, want at least the second page's %d", prepared, n, page)
	}
}

// Live frames, published after the follower is ready, reach the
// handler prepared (by the dispatching goroutine), each with its own value.
func TestLiveFramesArrivePrepared(t *testing.T) {
	mem := newMem(t)
	rec := newRecorder(t)
	var mu sync.Mutex
	prepared := 0
	h := func(ctx context.Context, d replay.Delivery) error {
		if d.Prepared != nil {
			if got := d.Prepared.(transport.Position); got != d.Position {
				t.Errorf("seq %d: Prepared for %v", d.Position.Seq, got)
			}
			mu.Lock()
			prepared++
			mu.Unlock()
		}
		return rec.handle(ctx, d)
	}
	prep := func(d transport.Delivery) any { return d.Position }
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithPrepare(prep))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	subscribed(t, f, 1)
	// The first event of an empty topic is read from the backlog (the
	// cursor has no epoch yet); the rest continue it live.
	publish(t, mem, "t", 1)
	waitFor(t, "first event", func() bool { return rec.count("t") >= 1 })
	const n = 50
	publish(t, mem, "t", n-1)
	waitFor(t, "live events", func() bool { return rec.count("t") >= n })
	stop()
	if err := contiguous(rec.seqs["t"], 1, n); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if prepared != n-1 {
		t.Errorf("%d of %d live events came prepared, want all", prepared, n-1)
	}
}
