package redistransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/durabus/durabus/transport"
)

// ErrUnknownOutcome is wrapped by the error of Publish, and of
// PublishBatch's *transport.BatchError, when the event may have been
// written: the call was sent and its reply was lost (read timeout, broken
// connection, an unexpected reply), or ctx ended after the event was handed
// to Redis. errors.Is finds the cause beside it (ctx.Err(), the network
// error).
//
// What to do: the event may be in the log, or not. With WithIdempotency,
// publish the same Message (same ID) again within the window: if the first
// one was written, that writes nothing and returns its position. Without
// the window, publishing it again may log it twice, under two seqs
// (subscribers that dedupe by ID, like the bus's Dedupe middleware, see it
// once); not publishing it again may lose it.
//
// An error that does not wrap ErrUnknownOutcome means the event was not
// written, and publishing it again is safe.
var ErrUnknownOutcome = errors.New("redistransport: publish outcome unknown")

// Coalescing of concurrent Publish calls.
//
// A lone Publish whose ctx cannot end (context.Background, WithoutCancel)
// sends its event at once, from its own goroutine: no added latency and no
// goroutine switch. Any other call waits for its result or for its ctx,
// whichever comes first, while another goroutine does the sending (go-redis
// does not give up a read when a ctx ends): a lone call is handed to an
// idle sender goroutine, or a new one, which sends it at once, and
// concurrent calls queue. A sender or flusher holds one of maxFlushes
// slots; it sends what is queued in one pipeline (one script call per
// topic, so the call's fixed cost in Redis is shared), sets the results,
// and goes on while the queue is not empty. Under load, the events that
// arrive during one round trip leave together in the next, and up to
// maxFlushes pipelines are in flight at once, so Redis works on one while
// the client parses the other.
//
// The hand-over costs a lone call with a ctx that can end two goroutine
// wake-ups, which wake the thread of an idle P: BenchmarkPublishCost's
// Publish/Ctx/1goroutine took about 50 % more client CPU than
// Publish/Background/1goroutine (35 against 53 µs per event, most of it the
// runtime's spinning; GOMAXPROCS=1 shows none of it) and about 20 % more
// time per call, on a loaded 2-core machine. A sender lives on for
// senderIdle after its call, so that a steady publisher does not start a
// goroutine, and grow its stack, per call (that saved about 15 % of the
// extra CPU).
//
// Order: events of one caller are in the order of its calls, as long as
// each call returns with its outcome known (a call that returned early,
// with ErrUnknownOutcome, may still be written after the caller's next
// event). Events of concurrent callers have no order among themselves.
//
// Cancellation: a caller whose ctx ends while its event is still queued
// leaves the queue and its event is never written (a plain ctx error). A
// caller whose ctx ends after its event was taken by a flusher returns at
// once with an error wrapping ErrUnknownOutcome and ctx.Err(); the event
// may be in the log. Data is copied before the call can return early, so
// the caller may reuse it at once.

// maxFlushes is the number of coalesced pipelines in flight at once.
const maxFlushes = 4

// maxCoalesce bounds the events one flush takes (the rest wait for the
// next flush).
const maxCoalesce = 4 * maxCallEvents

// maxKeptBuf is the largest copy buffer a pooled request keeps.
const maxKeptBuf = 64 << 10

type pubState uint8

const (
	stQueued  pubState = iota // in writer.queue
	stSending                 // taken by a flusher
	stDone                    // result set
	stGone                    // caller left while queued: never sent
	stLeft                    // caller left while sending: result unread
)

// pubReq is one waiting Publish call.
type pubReq struct {
	ctx   context.Context
	msg   transport.Message // Data is buf: the caller's is not used
	buf   []byte
	pos   transport.Position
	err   error
	state pubState      // guarded by writer.mu
	wake  chan struct{} // one token: result ready
}

type writer struct {
	mu      sync.Mutex
	queue   []*pubReq // all stQueued
	flushes int       // slots held: flushers, and lone calls sending inline
	closed  bool      // no goroutine starts any more (waitPublishes)
	wg      sync.WaitGroup

	work chan *pubReq  // a lone call for an idle sender
	quit chan struct{} // closed by waitPublishes: idle senders end

	policyOnce sync.Once
	retry      retryPolicy // see Transport.policy
}

var reqPool = sync.Pool{New: func() any { return &pubReq{wake: make(chan struct{}, 1)} }}

// newReq returns a request for msg, with a copy of its Data.
func newReq(ctx context.Context, msg transport.Message, st pubState) *pubReq {
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.state = ctx, msg, st
	r.buf = append(r.buf[:0], msg.Data...)
	r.msg.Data = r.buf
	return r
}

func (r *pubReq) release() {
	r.ctx, r.msg, r.pos, r.err = nil, transport.Message{}, transport.Position{}, nil
	if cap(r.buf) > maxKeptBuf {
		r.buf = nil
	}
	reqPool.Put(r)
}

// publishOne is Publish after validation: coalesced with concurrent calls.
func (t *Transport) publishOne(ctx context.Context, msg transport.Message) (transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return transport.Position{}, notSentErr(msg.Topic, err)
	}
	w := &t.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return transport.Position{}, errClosed("publish")
	}
	if w.flushes < maxFlushes && len(w.queue) == 0 {
		// Nothing queued and room for a flush: send at once, alone.
		w.flushes++
		if ctx.Done() == nil {
			// Nothing to wait for but the reply: send from this goroutine.
			w.mu.Unlock()
			pos, err := t.publishSingle(ctx, msg)
			t.freeSlot()
			return pos, err
		}
		r := newReq(ctx, msg, stSending)
		if w.work == nil {
			w.work, w.quit = make(chan *pubReq), make(chan struct{})
		}
		select {
		case w.work <- r: // an idle sender takes it
		default:
			w.wg.Add(1)
			go t.sender(r)
		}
		w.mu.Unlock()
		return t.await(r)
	}
	r := newReq(ctx, msg, stQueued)
	w.queue = append(w.queue, r)
	w.mu.Unlock()
	return t.await(r)
}

// await waits for r's result, or for its ctx.
func (t *Transport) await(r *pubReq) (transport.Position, error) {
	w := &t.w
	select {
	case <-r.wake:
	case <-r.ctx.Done():
		topic, err := r.msg.Topic, r.ctx.Err()
		w.mu.Lock()
		switch r.state {
		case stQueued:
			w.remove(r)
			r.state = stGone
			w.mu.Unlock()
			r.release()
			return transport.Position{}, notSentErr(topic, err)
		case stSending:
			// The flusher still holds r; it is not reused.
			r.state = stLeft
			w.mu.Unlock()
			return transport.Position{}, fmt.Errorf("redistransport: publish to %q: %w (the event may be in the log): %w",
				topic, ErrUnknownOutcome, err)
		}
		w.mu.Unlock()
		<-r.wake // stDone: the token is on its way
	}
	pos, err := r.pos, r.err
	r.release()
	return pos, err
}

// remove takes r out of the queue. w.mu is held.
func (w *writer) remove(r *pubReq) {
	for i, q := range w.queue {
		if q == r {
			n := len(w.queue) - 1
			copy(w.queue[i:], w.queue[i+1:])
			w.queue[n] = nil
			w.queue = w.queue[:n]
			return
		}
	}
}

// senderIdle is how long a sender goroutine waits for another lone call
// before it ends.
const senderIdle = 100 * time.Millisecond

// sender sends r, a lone call that holds a new slot, then flushes what
// queued meanwhile, then waits a while for another lone call: a goroutine
// that lives on costs a lone call less than a new one (its stack has grown
// to what go-redis needs).
func (t *Transport) sender(r *pubReq) {
	w := &t.w
	defer w.wg.Done()
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		r.pos, r.err = t.publishSingle(r.ctx, r.msg)
		t.finish([]*pubReq{r})
		t.flushLoop()
		idle.Reset(senderIdle)
		select {
		case r = <-w.work:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}

// freeSlot gives up the slot of a lone call that sent inline: to a new
// flusher when requests are queued, back to the pool otherwise. The caller
// returns at once either way.
func (t *Transport) freeSlot() {
	w := &t.w
	w.mu.Lock()
	if len(w.queue) == 0 {
		w.flushes--
		w.mu.Unlock()
		return
	}
	if w.closed { // no new goroutine: flush from this one
		w.mu.Unlock()
		t.flushLoop()
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		t.flushLoop()
	}()
}

// flushLoop, run by the holder of a slot, flushes the queue until it is
// empty, then gives the slot back.
func (t *Transport) flushLoop() {
	w := &t.w
	for {
		w.mu.Lock()
		n := min(len(w.queue), maxCoalesce)
		if n == 0 {
			w.flushes--
			w.mu.Unlock()
			return
		}
		batch := make([]*pubReq, n)
		copy(batch, w.queue)
		for _, r := range batch {
			r.state = stSending
		}
		rest := copy(w.queue, w.queue[n:])
		clear(w.queue[rest:])
		w.queue = w.queue[:rest]
		w.mu.Unlock()

		t.flush(batch)
		t.finish(batch)
	}
}

// finish hands their results to the callers of batch that still wait.
func (t *Transport) finish(batch []*pubReq) {
	w := &t.w
	waiting := batch[:0]
	w.mu.Lock()
	for _, r := range batch {
		if r.state == stSending {
			r.state = stDone
			waiting = append(waiting, r)
		}
	}
	w.mu.Unlock()
	for _, r := range waiting {
		r.wake <- struct{}{} // r may be released and reused from here on
	}
}

// flush publishes batch in one pipeline and sets each request's result.
// Requests whose ctx already ended are not sent.
func (t *Transport) flush(batch []*pubReq) {
	msgs := make([]transport.Message, 0, len(batch))
	reqs := make([]*pubReq, 0, len(batch))
	var ctx context.Context
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = notSentErr(r.msg.Topic, err)
			continue
		}
		if ctx == nil {
			// The pipeline must not fail for the others when this caller
			// gives up: keep ctx's values, drop its cancellation. Each
			// caller waits on its own ctx; go-redis's read and write
			// timeouts bound the round trip.
			ctx = context.WithoutCancel(r.ctx)
		}
		msgs = append(msgs, r.msg)
		reqs = append(reqs, r)
	}
	switch len(msgs) {
	case 0:
		return
	case 1:
		reqs[0].pos, reqs[0].err = t.publishSingle(ctx, msgs[0])
		return
	}
	groups := t.group(msgs, nil)
	pos := make([]transport.Position, len(msgs))
	errs := make([]error, len(msgs))
	t.publish(ctx, msgs, groups, pos, errs)
	for i, r := range reqs {
		r.pos, r.err = pos[i], errs[i]
	}
}

// group splits the indexes of msgs (all valid, or listed in skip) into
// script calls: one per topic, in order, split beyond maxCallEvents or
// maxCallBytes.
func (t *Transport) group(msgs []transport.Message, skip map[int]bool) [][]int {
	groups := make(map[string]int, 4) // topic -> index in order
	var order [][]int
	var sizes []int
	for i := range msgs {
		if skip[i] {
			continue
		}
		g, ok := groups[msgs[i].Topic]
		if !ok || len(order[g]) >= maxCallEvents || sizes[g]+len(msgs[i].Data) > maxCallBytes {
			g = len(order)
			groups[msgs[i].Topic] = g
			order = append(order, nil)
			sizes = append(sizes, 0)
		}
		order[g] = append(order[g], i)
		sizes[g] += len(msgs[i].Data)
	}
	return order
}

// start counts a new sending goroutine, unless waitPublishes ran.
func (w *writer) start() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	return true
}

// waitPublishes makes every later Publish fail with transport.ErrClosed,
// ends the idle senders and waits for the goroutines that send publishes
// (bounded by the client's timeouts). For Close.
func (t *Transport) waitPublishes() {
	w := &t.w
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		if w.quit != nil {
			close(w.quit)
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
}
