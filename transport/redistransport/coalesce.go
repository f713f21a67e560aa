package redistransport

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/durabus/durabus/transport"
)

// ErrUnknownOutcome is wrapped (beside the caller's ctx error) by Publish
// when the caller's ctx ended after its event had been handed to Redis in a
// coalesced pipeline: the event may or may not be in the log. With
// WithIdempotency, publishing it again with the same ID is safe.
var ErrUnknownOutcome = errors.New("redistransport: publish outcome unknown")

// Coalescing of concurrent Publish calls.
//
// There is no writer goroutine. A Publish that finds no flush under way
// becomes the leader: it takes its own event and everything queued so far,
// sends them in one pipeline (one script call per topic, so the call's fixed
// cost in Redis is shared), hands the results to the waiting callers and,
// if more arrived meanwhile, passes the lead to the first of them. A lone
// publisher therefore flushes at once, with no added latency and no
// goroutine switch; under load, the events that arrive during one round trip
// leave together in the next. Up to maxFlushes pipelines are in flight at
// once, so Redis works on one while the client parses the other.
//
// Order: events of one caller are in the order of its calls (each call
// returns after its event is written). Events of concurrent callers have no
// order among themselves, as before.
//
// Cancellation: a caller whose ctx ends while its event is still queued
// leaves the queue and its event is never written. A caller whose ctx ends
// after its event was taken into a pipeline returns at once with an error
// wrapping ErrUnknownOutcome and ctx.Err(); the event may be in the log.
// Its Data is copied into the pipeline, so the caller may reuse it at once.

// maxFlushes is the number of coalesced pipelines in flight at once.
const maxFlushes = 4

// maxCoalesce bounds the events one leader takes (the rest wait for the
// next flush).
const maxCoalesce = 4 * maxCallEvents

type pubState uint8

const (
	stQueued  pubState = iota // in writer.queue
	stLead                    // picked to lead the next flush
	stSending                 // taken into a pipeline
	stDone                    // result set
	stGone                    // caller left (ctx ended while queued)
)

// pubReq is one waiting Publish call.
type pubReq struct {
	ctx   context.Context
	msg   transport.Message
	pos   transport.Position
	err   error
	state pubState      // guarded by writer.mu
	wake  chan struct{} // one token: result ready, or lead
}

type writer struct {
	mu      sync.Mutex
	queue   []*pubReq
	flushes int // pipelines being sent by leaders
}

var reqPool = sync.Pool{New: func() any { return &pubReq{wake: make(chan struct{}, 1)} }}

// publishOne is Publish after validation: coalesced with concurrent calls.
func (t *Transport) publishOne(ctx context.Context, msg transport.Message) (transport.Position, error) {
	w := &t.w
	w.mu.Lock()
	if w.flushes < maxFlushes && len(w.queue) == 0 {
		// Nothing queued and room for a flush: send at once, alone.
		w.flushes++
		w.mu.Unlock()
		pos, err := t.publishSingle(ctx, msg)
		t.handOff()
		return pos, err
	}
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.state = ctx, msg, stQueued
	w.queue = append(w.queue, r)
	w.mu.Unlock()
	for {
		select {
		case <-r.wake:
		case <-ctx.Done():
			w.mu.Lock()
			switch r.state {
			case stQueued:
				w.remove(r)
				r.state = stGone
				w.mu.Unlock()
				r.release()
				return transport.Position{}, fmt.Errorf("redistransport: publish to %q: not sent: %w", msg.Topic, ctx.Err())
			case stSending:
				// The leader still holds r; it is not reused.
				w.mu.Unlock()
				return transport.Position{}, fmt.Errorf("redistransport: publish to %q: %w (it may be in the log): %w",
					msg.Topic, ErrUnknownOutcome, ctx.Err())
			}
			w.mu.Unlock()
			<-r.wake // stLead or stDone: the token is on its way
		}
		w.mu.Lock()
		st := r.state
		w.mu.Unlock()
		if st == stLead {
			// Lead a flush of the queue (r is in it unless it left).
			t.lead(r)
			continue // wait for r's own result if it was not in that flush
		}
		pos, err := r.pos, r.err
		r.release()
		return pos, err
	}
}

func (r *pubReq) release() {
	r.ctx, r.msg, r.pos, r.err = nil, transport.Message{}, transport.Position{}, nil
	reqPool.Put(r)
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

// lead is called by me, a queued request woken to lead: it holds a flush
// slot (w.flushes counts it). It sends me and what is queued with it, sets
// their results, then passes the slot to the next waiter or gives it back.
func (t *Transport) lead(me *pubReq) {
	w := &t.w
	w.mu.Lock()
	// Take the queued requests, oldest first, but not those another leader
	// picked to lead a flush of their own.
	batch := []*pubReq{me}
	keep := w.queue[:0]
	for _, q := range w.queue {
		switch {
		case q == me:
		case q.state == stQueued && len(batch) < maxCoalesce:
			batch = append(batch, q)
		default:
			keep = append(keep, q)
		}
	}
	clear(w.queue[len(keep):])
	w.queue = keep
	for _, r := range batch {
		r.state = stSending
	}
	w.mu.Unlock()

	t.flush(batch)

	w.mu.Lock()
	for _, r := range batch {
		r.state = stDone
	}
	next := w.nextLeaderLocked()
	w.mu.Unlock()
	for _, r := range batch {
		if r != me {
			r.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
	me.wake <- struct{}{} // me's result is set: its loop returns it
}

// handOff gives up the caller's flush slot: to the oldest queued request,
// woken to lead the next flush, or back to the pool when nothing waits. The
// caller returns at once either way: no caller waits for a flush of events
// that are not its own.
func (t *Transport) handOff() {
	w := &t.w
	w.mu.Lock()
	next := w.nextLeaderLocked()
	w.mu.Unlock()
	if next != nil {
		next.wake <- struct{}{}
	}
}

// nextLeaderLocked picks the oldest queued request not already picked by
// another leader and marks it to lead; with none, it frees the slot.
func (w *writer) nextLeaderLocked() *pubReq {
	for _, q := range w.queue {
		if q.state == stQueued {
			q.state = stLead
			return q
		}
	}
	w.flushes--
	return nil
}

// flush publishes batch in one pipeline and sets each request's result.
// Requests whose ctx already ended are not sent.
func (t *Transport) flush(batch []*pubReq) {
	msgs := make([]transport.Message, 0, len(batch))
	reqs := make([]*pubReq, 0, len(batch))
	var ctx context.Context
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("redistransport: publish to %q: not sent: %w", r.msg.Topic, err)
			continue
		}
		if ctx == nil {
			// The pipeline must not fail for the others when this caller
			// gives up: keep ctx's values, drop its cancellation. go-redis's
			// read and write timeouts still bound the round trip.
			ctx = context.WithoutCancel(r.ctx)
		}
		m := r.msg
		m.Data = append([]byte(nil), m.Data...) // the caller may leave early
		msgs = append(msgs, m)
		reqs = append(reqs, r)
	}
	if len(msgs) == 0 {
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
