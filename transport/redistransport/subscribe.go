package redistransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// Reconnect backoff of a subscription (newBackoff): from minBackoff,
// doubling, capped, with jitter.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = time.Second
	// subscribeTimeout bounds the wait for subscribe confirmations when the
	// caller's ctx has no deadline.
	subscribeTimeout = 10 * time.Second
	// handoff is the capacity of the Events channel; the subscription's
	// queue (WithBufferSize) is behind it.
	handoff = 16
)

// Subscribe starts live delivery of topics and returns once Redis has
// confirmed every subscription. The subscription runs its own receive loop
// on a dedicated Pub/Sub connection (one per topic with WithShardedPubSub);
// see subscription for the signals it emits.
func (t *Transport) Subscribe(ctx context.Context, topics ...string) (transport.Subscription, error) {
	if len(topics) == 0 {
		return nil, fmt.Errorf("redistransport: subscribe: no topics")
	}
	seen := make(map[string]bool, len(topics))
	var chans []string
	for _, topic := range topics {
		if err := transport.ValidateTopic(topic); err != nil {
			return nil, fmt.Errorf("redistransport: subscribe: %w", err)
		}
		if !seen[topic] {
			seen[topic] = true
			chans = append(chans, t.channel(topic))
		}
	}
	if t.cfg.sharded {
		groups := make([][]string, len(chans))
		for i, ch := range chans {
			groups[i] = []string{ch}
		}
		return t.subscribe(ctx, "ssubscribe", groups)
	}
	return t.subscribe(ctx, "subscribe", [][]string{chans})
}

// Features narrows what the transport offers (transport.FeaturesOf): with
// WithShardedPubSub there are no pattern subscriptions.
func (t *Transport) Features() transport.Features {
	return transport.Features{Patterns: !t.cfg.sharded, Seek: true, Topics: true, Checkpoints: true, Ownership: true, Partitions: true}
}

// SubscribePattern is Subscribe for glob patterns over topic names, with
// PSUBSCRIBE on ns:{<pattern>}. It is not offered with WithShardedPubSub
// (Features; a call gets an error wrapping transport.ErrInvalidOption).
func (t *Transport) SubscribePattern(ctx context.Context, patterns ...string) (transport.Subscription, error) {
	if t.cfg.sharded {
		return nil, fmt.Errorf("redistransport: subscribe pattern: %w: sharded Pub/Sub (WithShardedPubSub) has no patterns", transport.ErrInvalidOption)
	}
	if len(patterns) == 0 {
		return nil, fmt.Errorf("redistransport: subscribe pattern: no patterns")
	}
	seen := make(map[string]bool, len(patterns))
	var chans []string
	for _, p := range patterns {
		if err := transport.ValidatePattern(p); err != nil {
			return nil, fmt.Errorf("redistransport: subscribe pattern: %w", err)
		}
		if !seen[p] {
			seen[p] = true
			chans = append(chans, t.channel(p))
		}
	}
	return t.subscribe(ctx, "psubscribe", [][]string{chans})
}

func (t *Transport) subscribe(ctx context.Context, kind string, groups [][]string) (transport.Subscription, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errClosed(kind)
	}
	t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &subscription{
		t:      t,
		out:    make(chan transport.Event, handoff),
		queue:  make([]transport.Event, t.cfg.bufferSize),
		drops:  make(map[string][]dropRange),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	s.rctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, chans := range groups {
		r := &reader{s: s, kind: kind, chans: chans}
		if err := r.start(ctx); err != nil {
			s.cancel()
			for _, r := range s.readers {
				_ = r.ps.Close()
			}
			return nil, wrapErr(kind, "", err)
		}
		s.readers = append(s.readers, r)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		s.cancel()
		for _, r := range s.readers {
			_ = r.ps.Close()
		}
		return nil, errClosed(kind)
	}
	t.subs[s] = struct{}{}
	t.mu.Unlock()

	s.wg.Add(2 + len(s.readers))
	go s.dispatch()
	for _, r := range s.readers {
		go r.run()
	}
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			s.shutdown(ctx.Err())
		case <-s.done:
		}
	}()
	return s, nil
}

// subscription is a live subscription: readers (one per Pub/Sub
// connection) parse frames into a bounded queue, and dispatch moves the
// queue into the Events channel. Readers never block: when the queue is full
// a frame is dropped and its seq remembered per topic; the Dropped signal
// for the range is queued as soon as there is room, and always before the
// next frame of that topic.
//
// Signals: Reconnected when Redis confirms a subscription on a new
// connection (go-redis reconnects by itself after a connection error, and
// the subscription retries with backoff from 10 ms to 1 s until it is
// closed); Stalled when a PING sent after the probe interval of silence got
// no answer within the probe timeout, after which the connection is closed
// and rebuilt (Reconnected follows); Malformed for a message that is not a
// durabus frame.
type subscription struct {
	t       *Transport
	readers []*reader
	out     chan transport.Event
	rctx    context.Context // for Redis calls; cancelled at shutdown
	cancel  context.CancelFunc

	mu      sync.Mutex
	queue   []transport.Event // ring buffer
	head, n int
	drops   map[string][]dropRange
	err     error
	ended   bool

	notify chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

type dropRange struct {
	epoch    string
	from, to uint64
}

// Events returns the channel of frames and signals; see transport.Subscription.
// At most WithBufferSize+17 events are held for a slow receiver.
func (s *subscription) Events() <-chan transport.Event { return s.out }

// Close ends the subscription and waits for its goroutines. Safe to call
// more than once and from any goroutine.
func (s *subscription) Close() error {
	s.shutdown(nil)
	s.wg.Wait()
	return nil
}

// Err says why the events channel was closed: nil after Close,
// transport.ErrClosed when the transport closed, or the ctx's error.
func (s *subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// shutdown starts the end of the subscription; it does not wait.
func (s *subscription) shutdown(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.err = true, err
	close(s.done)
	s.mu.Unlock()
	s.cancel()
	for _, r := range s.readers {
		r.close()
	}
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
}

func (s *subscription) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// sleep waits d or until shutdown; false means shutdown.
func (s *subscription) sleep(d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-s.done:
		return false
	}
}

// enqueueLocked adds ev when there is room.
func (s *subscription) enqueueLocked(ev transport.Event) bool {
	if s.n == len(s.queue) {
		return false
	}
	s.queue[(s.head+s.n)%len(s.queue)] = ev
	s.n++
	return true
}

func (s *subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// signal queues a signal, or counts it lost when the queue is full (the
// frames around it will be dropped and signalled anyway).
func (s *subscription) signal(ev transport.Event) {
	s.mu.Lock()
	ok := s.enqueueLocked(ev)
	s.mu.Unlock()
	if ok {
		s.wake()
	}
}

// frame queues a frame, after any pending Dropped of its topic.
func (s *subscription) frame(d transport.Delivery) {
	s.mu.Lock()
	topic := d.Topic
	if rs := s.drops[topic]; len(rs) > 0 {
		for len(rs) > 0 && s.enqueueLocked(dropped(topic, rs[0])) {
			rs = rs[1:]
		}
		if len(rs) > 0 {
			s.drops[topic] = addDrop(rs, d.Position)
			s.mu.Unlock()
			s.t.stats.dropped.Add(1)
			s.wake()
			return
		}
		delete(s.drops, topic)
	}
	if !s.enqueueLocked(transport.Event{Kind: transport.Frame, Delivery: d}) {
		s.drops[topic] = addDrop(nil, d.Position)
		s.mu.Unlock()
		s.t.stats.dropped.Add(1)
		return
	}
	s.mu.Unlock()
	s.wake()
}

func dropped(topic string, r dropRange) transport.Event {
	return transport.Event{Kind: transport.Dropped, Topic: topic, Epoch: r.epoch, From: r.from, To: r.to}
}

func addDrop(rs []dropRange, p transport.Position) []dropRange {
	if n := len(rs); n > 0 && rs[n-1].epoch == p.Epoch {
		rs[n-1].from = min(rs[n-1].from, p.Seq)
		rs[n-1].to = max(rs[n-1].to, p.Seq)
		return rs
	}
	return append(rs, dropRange{epoch: p.Epoch, from: p.Seq, to: p.Seq})
}

// pop takes the oldest queued event, and queues pending Dropped signals
// into the room it made.
func (s *subscription) pop() (transport.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return transport.Event{}, false
	}
	ev := s.queue[s.head]
	s.queue[s.head] = transport.Event{}
	s.head = (s.head + 1) % len(s.queue)
	s.n--
	for topic, rs := range s.drops {
		for len(rs) > 0 && s.enqueueLocked(dropped(topic, rs[0])) {
			rs = rs[1:]
		}
		if len(rs) == 0 {
			delete(s.drops, topic)
		} else {
			s.drops[topic] = rs
			break
		}
	}
	return ev, true
}

// dispatch moves queued events into the Events channel, and closes it at
// the end.
func (s *subscription) dispatch() {
	defer s.wg.Done()
	defer close(s.out)
	for {
		ev, ok := s.pop()
		if !ok {
			select {
			case <-s.notify:
				continue
			case <-s.done:
				return
			}
		}
		select {
		case s.out <- ev:
		case <-s.done:
			return
		}
	}
}

// reader owns one Pub/Sub connection of a subscription.
type reader struct {
	s     *subscription
	kind  string // subscribe, psubscribe or ssubscribe
	chans []string

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
}

func (r *reader) newPubSub(ctx context.Context) (*redis.PubSub, error) {
	rdb := r.s.t.rdb
	var ps *redis.PubSub
	var err error
	switch r.kind {
	case "psubscribe":
		ps = rdb.PSubscribe(ctx)
		err = ps.PSubscribe(ctx, r.chans...)
	case "ssubscribe":
		ps = rdb.SSubscribe(ctx)
		err = ps.SSubscribe(ctx, r.chans...)
	default:
		ps = rdb.Subscribe(ctx)
		err = ps.Subscribe(ctx, r.chans...)
	}
	if err != nil {
		_ = ps.Close()
		return nil, err
	}
	return ps, nil
}

// start subscribes and waits for every confirmation (ctx bounds the wait;
// subscribeTimeout when ctx has no deadline).
func (r *reader) start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, subscribeTimeout)
		defer cancel()
	}
	ps, err := r.newPubSub(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	want := make(map[string]bool, len(r.chans))
	for _, ch := range r.chans {
		want[ch] = true
	}
	for len(want) > 0 {
		msg, err := ps.Receive(ctx)
		if err != nil {
			_ = ps.Close()
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for the subscribe confirmation: %w", ctx.Err())
			}
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			delete(want, m.Channel)
		case *redis.Message:
			r.handle(m)
		}
	}
	if !stop() {
		_ = ps.Close()
		return fmt.Errorf("waiting for the subscribe confirmation: %w", ctx.Err())
	}
	r.ps = ps
	return nil
}

func (r *reader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.ps != nil {
		_ = r.ps.Close()
	}
}

// replace closes the current Pub/Sub and installs ps; false when the
// subscription ended meanwhile.
func (r *reader) replace(ps *redis.PubSub) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ps != nil {
		_ = r.ps.Close()
	}
	r.ps = ps
	if r.closed {
		if ps != nil {
			_ = ps.Close()
		}
		return false
	}
	return true
}

type readerState uint8

const (
	healthy    readerState = iota
	probing                // PING sent, waiting for any answer
	confirming             // connection rebuilt, waiting for the confirmation
)

// run is the receive loop. It reads with ReceiveTimeout and keeps its own
// watchdog because of what go-redis does not do (checked against go-redis
// v9.23.0; docs/operations.md lists it):
//
//   - PubSub.Channel() and ReceiveMessage drop subscription messages, so a
//     server-pushed sunsubscribe (a sharded channel's slot migrated, or its
//     master demoted by a failover) would go unseen: ReceiveTimeout hands
//     it over, and run rebuilds the connection;
//   - a PubSub read with ReceiveTimeout has no liveness check (go-redis
//     pings only inside Channel()): the probe PING;
//   - ClusterClient routes a new Pub/Sub connection by its cached slot map
//     (the master of the first channel's slot) and refreshes that map only
//     lazily, so a resubscription after a migration or a failover can go
//     to the old owner, which answers MOVED; go-redis neither follows a
//     MOVED on a Pub/Sub connection nor counts it as a bad connection:
//     run asks for a reload of the map and rebuilds, and a rebuilt
//     connection must confirm within the probe timeout or is rebuilt again
//     (which also covers go-redis before v9.20, whose sharded PubSub
//     reconnected to a random node);
//   - ClusterClient does not reload that map when a node stops answering
//     (only after MOVED or ASK, or once a minute), so after a forced
//     failover it goes on dialling the dead master: run, like every read
//     and publish of the transport, asks for a reload (refreshSlots).
func (r *reader) run() {
	s := r.s
	defer s.wg.Done()
	cfg := &s.t.cfg
	ps := r.ps
	state := healthy
	var deadline time.Time
	bo := newBackoff()
	stalled := false
	var buf []transport.Delivery
	for !s.isDone() {
		timeout := cfg.probeInterval
		if state != healthy {
			timeout = max(time.Until(deadline), time.Millisecond)
		}
		msg, err := ps.ReceiveTimeout(s.rctx, timeout)
		if s.isDone() {
			return
		}
		if err != nil {
			if isTimeout(err) {
				if state == healthy {
					if err := ps.Ping(s.rctx, "durabus"); err != nil && !isTimeout(err) {
						if !s.sleep(bo.NextBackOff()) {
							return
						}
						continue
					}
					state, deadline = probing, time.Now().Add(cfg.probeTimeout)
					continue
				}
				if !stalled {
					stalled = true
					s.t.stats.stalls.Add(1)
					s.signal(transport.Event{Kind: transport.Stalled,
						Err: fmt.Errorf("redistransport: no answer on the Pub/Sub connection within %v of a PING; rebuilding it", cfg.probeTimeout)})
				}
				ps = r.rebuild(bo)
				if ps == nil {
					return
				}
				state, deadline = confirming, time.Now().Add(cfg.probeTimeout)
				continue
			}
			if isMoved(err) {
				// A subscribe sent to a node that does not own the
				// channel's slot (a stale slot map, see run): the
				// connection stays open with nothing subscribed. Ask
				// for a fresh map (go-redis v9.23.0 reloads it in the
				// background) and rebuild after the backoff.
				s.t.log.Debug("redistransport: Pub/Sub subscribe redirected; rebuilding", "err", err)
				s.t.refreshSlots(err)
				ps = r.rebuild(bo)
				if ps == nil {
					return
				}
				state, deadline = confirming, time.Now().Add(cfg.probeTimeout)
				continue
			}
			// A connection error: go-redis reconnects and resubscribes on
			// the next call (on a cluster, to the node its cached slot
			// map names: maybe a dead one until the map is refreshed);
			// the confirmation shows it worked.
			s.t.log.Debug("redistransport: Pub/Sub receive failed", "err", err)
			s.t.refreshSlots(err)
			if !s.sleep(bo.NextBackOff()) {
				return
			}
			continue
		}
		bo.Reset()
		if state == probing {
			state = healthy
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "psubscribe", "ssubscribe":
				if m.Count == 1 {
					// The first confirmation on a new connection.
					state, stalled = healthy, false
					s.t.stats.reconnects.Add(1)
					s.signal(transport.Event{Kind: transport.Reconnected})
				}
			default:
				// The server ended a subscription: a sharded channel's
				// slot migrated, or its master was demoted by a failover
				// (Redis 7.0 pushes sunsubscribe in both cases; go-redis
				// v9.23.0 neither resubscribes nor, in Channel(), passes
				// it on): rebuild the connection.
				ps = r.rebuild(bo)
				if ps == nil {
					return
				}
				state, deadline = confirming, time.Now().Add(cfg.probeTimeout)
			}
		case *redis.Message:
			buf = r.handleInto(m, buf[:0])
		}
	}
}

// rebuild replaces the Pub/Sub connection, retrying with backoff until it
// can send the subscribe command; nil when the subscription ended.
func (r *reader) rebuild(bo *backoff.ExponentialBackOff) *redis.PubSub {
	s := r.s
	if !r.replace(nil) {
		return nil
	}
	for {
		if !s.sleep(bo.NextBackOff()) {
			return nil
		}
		ps, err := r.newPubSub(s.rctx)
		if err == nil {
			if !r.replace(ps) {
				return nil
			}
			return ps
		}
		s.t.log.Debug("redistransport: rebuilding the Pub/Sub connection failed", "err", err)
		if s.isDone() {
			return nil
		}
	}
}

func (r *reader) handle(m *redis.Message) { r.handleInto(m, nil) }

func (r *reader) handleInto(m *redis.Message, buf []transport.Delivery) []transport.Delivery {
	s := r.s
	topic, ok := s.t.topicOf(m.Channel)
	if !ok {
		s.t.stats.malformed.Add(1)
		s.signal(transport.Event{Kind: transport.Malformed,
			Err: fmt.Errorf("redistransport: message on channel %q, not a topic channel of namespace %q", m.Channel, s.t.cfg.namespace)})
		return buf
	}
	buf, err := parseFrame(topic, m.Payload, buf)
	for _, d := range buf {
		s.frame(d)
	}
	if err != nil {
		s.t.stats.malformed.Add(1)
		s.signal(transport.Event{Kind: transport.Malformed, Topic: topic,
			Err: fmt.Errorf("%w (%d bytes on channel %q)", err, len(m.Payload), m.Channel)})
	}
	return buf
}

// newBackoff returns a subscription's reconnect backoff: from minBackoff,
// doubling, capped at maxBackoff, with ±20 % jitter so that the
// subscriptions of many processes cut off together do not re-dial in step.
// It never gives up: the subscription ends only when it is closed.
func newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = minBackoff
	bo.MaxInterval = maxBackoff
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.2
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// isMoved reports whether err is a MOVED redirection reply.
func isMoved(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "MOVED ")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
