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

// prepRecorder is a WithPrepare function (the event's position) and a
// handler that checks each Prepared value against its event.
type prepRecorder struct {
	t     *testing.T
	rec   *recorder
	calls atomic.Int64
	mu    sync.Mutex
	seen  int    // handler calls with a Prepared value
	last  uint64 // highest seq prepared
}

func (p *prepRecorder) prep(d transport.Delivery) any {
	p.calls.Add(1)
	p.mu.Lock()
	p.last = max(p.last, d.Position.Seq)
	p.mu.Unlock()
	return d.Position
}

// waitSeq waits up to 10 s for seq to be prepared.
func (p *prepRecorder) waitSeq(seq uint64) bool {
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		if last >= seq {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *prepRecorder) handle(ctx context.Context, d replay.Delivery) error {
	if d.Prepared != nil {
		if got := d.Prepared.(transport.Position); got != d.Position {
			p.t.Errorf("seq %d: Prepared for %v", d.Position.Seq, got)
		}
		p.mu.Lock()
		p.seen++
		p.mu.Unlock()
	}
	return p.rec.handle(ctx, d)
}

// waitCalls waits up to 10 s for n prepare calls in all.
func (p *prepRecorder) waitCalls(n int64) bool {
	deadline := time.Now().Add(10 * time.Second)
	for p.calls.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// A backlog of 10 pages read with WithPrepare: every event is delivered
// once, in order, prepared, with the value computed for that very event.
// The next page is prepared while the handler works: the handler holds the
// first page's last event until 2 pages are prepared.
func TestPreparedValuesBelongToTheirEventAndKeepOrder(t *testing.T) {
	mem := newMem(t)
	const n, page = 1000, 100
	publish(t, mem, "t", n)
	p := &prepRecorder{t: t, rec: newRecorder(t)}
	ahead := true
	h := func(ctx context.Context, d replay.Delivery) error {
		if d.Position.Seq == page && !p.waitCalls(2*page) {
			ahead = false
		}
		return p.handle(ctx, d)
	}
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithStart(replay.Beginning()),
		replay.WithPageSize(page), replay.WithPrepare(p.prep))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	waitFor(t, "replay", func() bool { return p.rec.count("t") >= n })
	stop()
	if err := contiguous(p.rec.seqs["t"], 1, n); err != nil {
		t.Error(err)
	}
	if !ahead {
		t.Error("the second page was not prepared while the handler held the first")
	}
	if p.seen != n || p.calls.Load() != n {
		t.Errorf("%d of %d events came prepared, %d prepare calls; want each prepared once", p.seen, n, p.calls.Load())
	}
}

// Live frames, published after the follower is ready, that queue behind a
// busy handler are prepared off its goroutine (by the dispatching one): the
// handler holds the second event until the fourth is prepared (the third
// found the queue empty).
func TestLiveFramesArrivePrepared(t *testing.T) {
	mem := newMem(t)
	p := &prepRecorder{t: t, rec: newRecorder(t)}
	ahead := true
	h := func(ctx context.Context, d replay.Delivery) error {
		if d.Position.Seq == 2 && !p.waitSeq(4) {
			ahead = false
		}
		return p.handle(ctx, d)
	}
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithPrepare(p.prep))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	subscribed(t, f, 1)
	// The first event of an empty topic is read from the backlog (the
	// cursor has no epoch yet); the rest continue it live.
	publish(t, mem, "t", 1)
	waitFor(t, "first event", func() bool { return p.rec.count("t") >= 1 })
	const n = 50
	publish(t, mem, "t", n-1)
	waitFor(t, "live events", func() bool { return p.rec.count("t") >= n })
	stop()
	if err := contiguous(p.rec.seqs["t"], 1, n); err != nil {
		t.Error(err)
	}
	if !ahead {
		t.Error("the fourth event was not prepared while the handler held the second")
	}
	// The first frame may be prepared and then delivered from the backlog.
	if p.seen != n || p.calls.Load() < n {
		t.Errorf("%d of %d events came prepared, %d prepare calls; want all prepared", p.seen, n, p.calls.Load())
	}
}

// A panic in the prepare function, on whichever goroutine it runs, reaches
// the handler as a *PanicError and stops nothing: the other events arrive.
func TestPreparePanicBecomesTheEventsPreparedValue(t *testing.T) {
	mem := newMem(t)
	const n, page = 300, 100
	publish(t, mem, "t", n)
	rec := newRecorder(t)
	var mu sync.Mutex
	panicked := map[uint64]bool{}
	prep := func(d transport.Delivery) any {
		if d.Position.Seq%50 == 0 {
			panic("bad input")
		}
		return d.Position
	}
	h := func(ctx context.Context, d replay.Delivery) error {
		if pe, ok := d.Prepared.(*replay.PanicError); ok {
			if pe.Value != "bad input" {
				t.Errorf("seq %d: panic value %v", d.Position.Seq, pe.Value)
			}
			mu.Lock()
			panicked[d.Position.Seq] = true
			mu.Unlock()
		}
		return rec.handle(ctx, d)
	}
	f, err := replay.New(mem, h, append(fast, replay.WithTopics("t"), replay.WithStart(replay.Beginning()),
		replay.WithPageSize(page), replay.WithPrepare(prep))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	waitFor(t, "replay", func() bool { return rec.count("t") >= n })
	publish(t, mem, "t", 100) // live: seq 350 and 400 panic on the dispatching goroutine
	waitFor(t, "live", func() bool { return rec.count("t") >= n+100 })
	stop()
	if err := contiguous(rec.seqs["t"], 1, n+100); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(panicked) != (n+100)/50 {
		t.Errorf("handler saw %d panics as Prepared, want %d: %v", len(panicked), (n+100)/50, panicked)
	}
}
