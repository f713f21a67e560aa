package memtransport

import (
	"context"
	"fmt"
	"sync"

	"github.com/durabus/durabus/transport"
)

// Subscribe starts live delivery of topics. The subscription is registered
// before Subscribe returns, so every later publish reaches it.
//
// Each subscription queues up to the WithBuffer number of frames for its
// receiver; the Events channel itself is unbuffered and fed from that
// queue by one goroutine, which also watches ctx and is waited for by Close.
// When the queue is full, frames are dropped and a Dropped signal with the
// exact seq range takes their place in the queue: the receiver reads it
// right after the frames queued before the loss and before any later frame
// of that topic.
func (t *Transport) Subscribe(ctx context.Context, topics ...string) (transport.Subscription, error) {
	if len(topics) == 0 {
		return nil, fmt.Errorf("memtransport: subscribe: no topics: %w", transport.ErrInvalidTopic)
	}
	set := make(map[string]bool, len(topics))
	for _, topic := range topics {
		if err := transport.ValidateTopic(topic); err != nil {
			return nil, fmt.Errorf("memtransport: subscribe: %w", err)
		}
		set[topic] = true
	}
	return t.subscribe(ctx, set, nil)
}

// SubscribePattern is Subscribe for glob patterns over topic names. A topic
// matched by several patterns of one subscription is delivered once.
func (t *Transport) SubscribePattern(ctx context.Context, patterns ...string) (transport.Subscription, error) {
	if len(patterns) == 0 {
		return nil, fmt.Errorf("memtransport: subscribe: no patterns: %w", transport.ErrInvalidTopic)
	}
	for _, p := range patterns {
		if err := transport.ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("memtransport: subscribe: %w", err)
		}
	}
	return t.subscribe(ctx, nil, append([]string(nil), patterns...))
}

func (t *Transport) subscribe(ctx context.Context, topics map[string]bool, patterns []string) (transport.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{
		t:        t,
		topics:   topics,
		patterns: patterns,
		capacity: t.buffer,
		open:     make(map[string]*dropMark),
		out:      make(chan transport.Event),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("subscribe")
	}
	t.subs[s] = struct{}{}
	go s.run(ctx)
	return s, nil
}

// fanoutLocked enqueues a frame for every matching subscription; t.mu is held.
func (t *Transport) fanoutLocked(topic string, pos transport.Position, data []byte) {
	if t.disconnected || len(t.subs) == 0 {
		return
	}
	if t.dropFn != nil && t.dropFn(topic, pos.Seq) {
		return
	}
	for s := range t.subs {
		if s.matches(topic) {
			s.frame(topic, pos, data)
		}
	}
}

type subscription struct {
	t        *Transport
	topics   map[string]bool // nil for a pattern subscription
	patterns []string
	capacity int

	mu     sync.Mutex
	queue  []item
	frames int                  // frames in queue, the one being sent included
	open   map[string]*dropMark // per topic, the Dropped marker still growing
	ended  bool
	err    error

	out  chan transport.Event
	wake chan struct{} // something was queued
	stop chan struct{} // closed by end
	done chan struct{} // closed when run has returned
}

// item is a queued frame or signal; drop is set for a Dropped marker, whose
// range grows until the marker is sent or a later frame of its topic is
// queued behind it.
type item struct {
	ev   transport.Event
	drop *dropMark
}

type dropMark struct {
	topic, epoch string
	from, to     uint64
}

func (s *subscription) matches(topic string) bool {
	if s.topics != nil {
		return s.topics[topic]
	}
	for _, p := range s.patterns {
		if transport.Match(p, topic) {
			return true
		}
	}
	return false
}

func (s *subscription) frame(topic string, pos transport.Position, data []byte) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	m := s.open[topic]
	switch {
	case s.frames < s.capacity:
		delete(s.open, topic) // the marker, if any, is now closed: the frame goes behind it
		s.queue = append(s.queue, item{ev: transport.Event{
			Kind:     transport.Frame,
			Topic:    topic,
			Delivery: transport.Delivery{Topic: topic, Position: pos, Data: clone(data)},
		}})
		s.frames++
	case m != nil && m.epoch == pos.Epoch:
		m.to = pos.Seq
	default:
		m = &dropMark{topic: topic, epoch: pos.Epoch, from: pos.Seq, to: pos.Seq}
		s.open[topic] = m
		s.queue = append(s.queue, item{drop: m})
	}
	s.mu.Unlock()
	s.poke()
}

func (s *subscription) signal(ev transport.Event) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	// Coalesce with an identical signal still waiting (not the one being sent).
	if n := len(s.queue); n < 2 || s.queue[n-1].drop != nil || s.queue[n-1].ev.Kind != ev.Kind {
		s.queue = append(s.queue, item{ev: ev})
	}
	s.mu.Unlock()
	s.poke()
}

func (s *subscription) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// peek returns the head of the queue without removing it; a Dropped marker
// stops growing once peeked.
func (s *subscription) peek() (transport.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return transport.Event{}, false
	}
	it := s.queue[0]
	if m := it.drop; m != nil {
		if s.open[m.topic] == m {
			delete(s.open, m.topic)
		}
		return transport.Event{Kind: transport.Dropped, Topic: m.topic, Epoch: m.epoch, From: m.from, To: m.to}, true
	}
	return it.ev, true
}

func (s *subscription) pop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queue[0].ev.Kind == transport.Frame {
		s.frames--
	}
	s.queue[0] = item{}
	s.queue = s.queue[1:]
}

func (s *subscription) run(ctx context.Context) {
	defer func() {
		s.t.mu.Lock()
		delete(s.t.subs, s)
		s.t.mu.Unlock()
		s.mu.Lock()
		s.queue = nil
		s.mu.Unlock()
		close(s.out)
		close(s.done)
	}()
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		ev, ok := s.peek()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				s.end(ctx.Err())
				return
			case <-s.stop:
				return
			}
		}
		select {
		case s.out <- ev:
			s.pop()
		case <-ctx.Done():
			s.end(ctx.Err())
			return
		case <-s.stop:
			return
		}
	}
}

// end records why the subscription ends (the first reason wins) and stops run.
func (s *subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended, s.err = true, err
	close(s.stop)
}

// Events returns the channel of frames and signals; it is closed when the
// subscription ends.
func (s *subscription) Events() <-chan transport.Event { return s.out }

// Close ends the subscription and waits for its goroutine. Queued events
// are discarded. It always returns nil.
func (s *subscription) Close() error {
	s.end(nil)
	<-s.done
	return nil
}

// Err returns why the subscription ended: nil after Close,
// transport.ErrClosed after the transport's Close, or the ctx's error.
func (s *subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
