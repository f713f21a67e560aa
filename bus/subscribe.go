package bus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// group is one followed topic or pattern: one follower, one cursor per
// topic, and the handlers of the event types routed to it.
type group struct {
	key      string
	pattern  bool
	start    replay.Start
	startSet bool
	typed    map[string]Handler // event type → handler
	catchAll Handler            // Handle's handler
	follower runner
	sub      *Subscription // the handle every registration on key shares
	// stop ends the follower's Run (set while running); stopped is set by
	// Subscription.Stop; done closes when the follower has returned, or
	// at once when the group is stopped before it ran.
	stop    context.CancelFunc
	stopped bool
	done    chan struct{}
	// failed is why the group could not start (its partition count
	// disagrees with the back end's); set before done closes.
	failed error
}

// runner is what a subscription runs: a *replay.Follower, or with
// WithGroup a *replay.Group member.
type runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	Stats() replay.Stats
}

// Subscribe registers h for the events of type T, on the topic of T's type
// (see WithRoute and OnTopic). T's EventType must have a value receiver.
// Each event's payload is decoded into a new T, after upcasting older
// versions (see Bus.Upcast). The message, with its envelope and position,
// is reachable through MessageFrom(ctx).
//
// Subscribe before Run, or while running for a topic not yet followed.
// The returned Subscription is shared by every registration on the topic:
// they have one cursor.
func Subscribe[T Event](b *Bus, h func(ctx context.Context, e *T) error, opts ...SubscribeOption) (*Subscription, error) {
	var zero T
	typ := zero.EventType()
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler for %q", ErrInvalidOption, typ)
	}
	want := versionOf(zero)
	dec := envelope.NewDataDecoder[T]()
	sc := subConfig{}
	for _, o := range opts {
		o(&sc)
	}
	topic := sc.topic
	if topic == "" {
		topic = b.TopicOf(typ)
		if err := typeAsTopic(typ, topic); err != nil {
			return nil, err
		}
	}
	typed := HandlerFunc(func(ctx context.Context, m *Message) error {
		data := m.Data
		switch {
		case m.Version > want:
			return &DeliveryError{Topic: m.Topic, Position: m.Position, Type: m.Type, ID: m.ID,
				Err: fmt.Errorf("%w: version %d, handler knows %d", ErrNewerVersion, m.Version, want)}
		case m.Version < want:
			var err error
			if data, err = b.upcast(m, want); err != nil {
				return err
			}
		}
		v := new(T)
		if err := dec.Unmarshal(data, v); err != nil {
			return &DeliveryError{Topic: m.Topic, Position: m.Position, Type: m.Type, ID: m.ID,
				Err: fmt.Errorf("%w: payload into %T: %v", ErrUndecodable, v, err)}
		}
		return h(ctx, v)
	})
	return b.add(topic, false, typ, Chain(typed, sc.mw...), sc)
}

// Handle registers h for every event on the topics matching pattern (a
// topic name or a glob such as "user.*.notifications"), whatever its type.
// Given a topic name that also has typed subscriptions, h gets the types
// they do not take (one subscription, one cursor). A glob is a subscription
// of its own, with its own cursor per topic: it gets every event of the
// matching topics, including those typed subscriptions also get, except
// dead-letter topics (T.dead) unless the glob ends in ".dead".
func (b *Bus) Handle(pattern string, h Handler, opts ...SubscribeOption) (*Subscription, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler for %q", ErrInvalidOption, pattern)
	}
	sc := subConfig{}
	for _, o := range opts {
		o(&sc)
	}
	isPattern := transport.IsPattern(pattern)
	if isPattern {
		if err := transport.ValidatePattern(pattern); err != nil {
			return nil, fmt.Errorf("bus: %w", err)
		}
		if f := transport.FeaturesOf(b.tr); !f.Patterns || !f.Topics {
			return nil, fmt.Errorf("bus: pattern %q: the transport %T offers no pattern subscriptions (transport.PatternSubscriber, transport.TopicLister): %w", pattern, b.tr, errors.ErrUnsupported)
		}
	}
	return b.add(pattern, isPattern, "", Chain(h, sc.mw...), sc)
}

func (b *Bus) add(key string, pattern bool, typ string, h Handler, sc subConfig) (*Subscription, error) {
	if !pattern {
		if err := transport.ValidateTopic(key); err != nil {
			return nil, fmt.Errorf("bus: %w", err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.stopping {
		return nil, fmt.Errorf("%w: Run is returning", ErrClosed)
	}
	g := b.groups[key]
	if g != nil && g.follower != nil {
		return nil, fmt.Errorf("%w: %q is already being followed; subscribe its handlers before Run", ErrRunning, key)
	}
	if g == nil {
		g = &group{key: key, pattern: pattern, typed: make(map[string]Handler), done: make(chan struct{})}
		g.sub = &Subscription{b: b, g: g}
		b.groups[key] = g
		b.order = append(b.order, g)
	}
	if sc.startSet {
		if g.startSet && g.start != sc.start {
			return nil, fmt.Errorf("%w: %q subscribed with start %v and %v; one topic has one cursor", ErrInvalidOption, key, g.start, sc.start)
		}
		g.start, g.startSet = sc.start, true
	}
	if typ == "" {
		if g.catchAll != nil {
			return nil, fmt.Errorf("%w: %q has a handler already", ErrInvalidOption, key)
		}
		g.catchAll = h
	} else {
		if g.typed[typ] != nil {
			return nil, fmt.Errorf("%w: type %q on %q has a handler already", ErrInvalidOption, typ, key)
		}
		g.typed[typ] = h
	}
	if b.running {
		if err := b.startLocked(g); err != nil {
			return nil, err
		}
	}
	return g.sub, nil
}

// Run delivers events to the registered handlers until ctx ends or Close is
// called, then waits for the handlers in flight and saves the checkpoints of
// a durable consumer. It returns nil after a normal stop and an error when
// the transport failed for good (for example it was closed).
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return ErrClosed
	case b.running:
		b.mu.Unlock()
		return ErrRunning
	}
	b.running = true
	b.runCtx, b.cancel = context.WithCancel(ctx)
	var err error
	for _, g := range b.order {
		if err = b.startLocked(g); err != nil {
			break
		}
	}
	close(b.started)
	b.mu.Unlock()
	if err != nil {
		b.cancel()
	}

	select {
	case <-b.runCtx.Done():
	case err = <-b.runErr:
		b.cancel()
	}
	// From here no subscription starts (add refuses), so no wg.Add
	// races the Wait.
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
	b.wg.Wait()
	if err == nil {
		select { // a subscription that failed while the others stopped
		case err = <-b.runErr:
		default:
		}
	}
	b.result = err
	close(b.done)
	return err
}

// Ready waits until Run has started and every subscription is live with
// its start position resolved: from then on, every event published is
// delivered (with the default NewOnly start, events published before may
// not be). It returns ctx's error if ctx ends first, ErrClosed if the bus
// closes first. An error of ctx also carries the subscriptions' last
// error, if any (such as "cannot reach Redis at …").
func (b *Bus) Ready(ctx context.Context) error {
	select {
	case <-b.started:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return b.notReady(ctx)
	}
	select { // closed before Run: started and done are both closed
	case <-b.done:
		return ErrClosed
	default:
	}
	b.mu.Lock()
	groups := make([]*group, 0, len(b.order))
	for _, g := range b.order {
		if g.follower != nil {
			groups = append(groups, g)
		}
	}
	b.mu.Unlock()
	for _, g := range groups {
		select {
		case <-g.follower.Ready():
		case <-g.done: // stopped, or failed to start
			b.mu.Lock()
			failed := g.failed
			b.mu.Unlock()
			if failed != nil {
				return failed
			}
		case <-b.done:
			return ErrClosed
		case <-ctx.Done():
			return b.notReady(ctx)
		}
	}
	return nil
}

// notReady is Ready's error when ctx ended first: ctx's, with the
// followers' last error when there is one, else with what the transport
// can tell about it (an optional Explain(error) error method).
func (b *Bus) notReady(ctx context.Context) error {
	b.mu.Lock()
	last := b.lastErr
	b.mu.Unlock()
	if last != nil {
		return fmt.Errorf("bus: not ready: %w (last error: %v)", ctx.Err(), last)
	}
	if x, ok := b.tr.(interface{ Explain(error) error }); ok {
		return x.Explain(ctx.Err())
	}
	return ctx.Err()
}

// startLocked starts g's follower; b.mu is held and the bus is running.
func (b *Bus) startLocked(g *group) error {
	opts := append([]replay.Option{
		replay.WithStart(g.start),
		replay.WithLogger(b.log),
		replay.WithOnError(b.followerError),
		replay.WithOnLoss(b.lost),
		replay.WithPrepare(b.prepare),
	}, b.cfg.followerOps...)
	if g.pattern {
		opts = append(opts, replay.WithPattern(g.key), replay.WithExclude(deadUnlessAsked(g.key)))
	} else {
		opts = append(opts, replay.WithTopics(b.followed(g.key)...))
	}
	var f runner
	var err error
	if b.cfg.group != "" {
		opts = append(opts, replay.WithLeaseHolder(b.holder))
		f, err = replay.NewGroup(b.tr, b.cfg.group+"/"+g.key, b.handlerOf(g), opts...)
	} else {
		if b.cfg.consumer != "" {
			opts = append(opts, replay.WithConsumer(b.consumerFor(g.key, g.pattern)), replay.WithLeaseHolder(b.holder))
		}
		f, err = replay.New(b.tr, b.handlerOf(g), opts...)
	}
	if err != nil {
		return fmt.Errorf("bus: subscription %q: %w", g.key, err)
	}
	g.follower = f
	ctx, stop := context.WithCancel(b.runCtx)
	g.stop = stop
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.ended(g)
		if !g.pattern {
			if err := b.agree(ctx, g.key); err != nil {
				if errors.Is(err, ErrPartitionCount) {
					b.mu.Lock()
					g.failed = err
					b.mu.Unlock()
					b.log.Error("durabus: bus: subscription not started", "topic", g.key, "err", err)
					select {
					case b.runErr <- fmt.Errorf("bus: subscription %q: %w", g.key, err):
					default:
					}
				}
				return
			}
		}
		if err := f.Run(ctx); err != nil {
			select {
			case b.runErr <- fmt.Errorf("bus: subscription %q: %w", g.key, err):
			default:
			}
		}
	}()
	return nil
}

// ended is called when g's follower has returned: a group that was
// stopped is forgotten (its key may be subscribed again).
func (b *Bus) ended(g *group) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g.stop()
	if g.stopped {
		b.forgetLocked(g)
	}
	close(g.done)
}

// forgetLocked removes g from the bus; b.mu is held.
func (b *Bus) forgetLocked(g *group) {
	if b.groups[g.key] == g {
		delete(b.groups, g.key)
	}
	for i, o := range b.order {
		if o == g {
			b.order = append(b.order[:i:i], b.order[i+1:]...)
			break
		}
	}
}

// handlerOf returns the follower handler of g: decode, route by type
// through the middleware, and set aside what cannot be delivered.
func (b *Bus) handlerOf(g *group) replay.Handler {
	route := HandlerFunc(func(ctx context.Context, m *Message) error {
		h := g.typed[m.Type]
		if h == nil {
			h = g.catchAll
		}
		if h == nil && b.cfg.routes[m.Type] == g.key {
			// A type this bus routes here but does not handle: another
			// service's business on a shared topic.
			return nil
		}
		if h == nil {
			return &DeliveryError{Topic: m.Topic, Position: m.Position, Type: m.Type, ID: m.ID, Err: ErrUnknownType}
		}
		return h.Handle(ctx, m)
	})
	h := Chain(route, b.cfg.mw...)
	return func(ctx context.Context, d replay.Delivery) error {
		prepared := d.Prepared
		if prepared == nil { // the follower prepares every event; this is for other callers
			prepared = b.prepare(d.Delivery)
		}
		var e *envelope.Envelope
		var err error
		switch p := prepared.(type) {
		case *envelope.Envelope:
			e = p
		case error:
			err = p
		}
		if err != nil {
			err = undecodable(d, err)
		} else {
			mc := &msgCtx{Context: ctx, m: Message{Envelope: e, Topic: d.Topic, Position: d.Position, Replayed: d.Replayed, Subscription: g.key, Attempt: max(d.Attempt, 1)}}
			err = h.Handle(mc, &mc.m)
		}
		if err == nil {
			return nil
		}
		// Declared here, not above: the pointer errors.As is given
		// escapes, and would cost an allocation per delivered event.
		var de *DeliveryError
		if errors.As(err, &de) {
			b.report(de)
			return nil
		}
		return err
	}
}

// prepare decodes an envelope before its handler calls (see
// replay.WithPrepare): the *envelope.Envelope, or the decoding error. The
// follower runs it once per delivered event, and the Delivery's Data is the
// bus's (transport.Delivery: it belongs to the receiver), so the envelope
// is decoded in place rather than from a copy.
func (b *Bus) prepare(d transport.Delivery) any {
	e, err := b.dec.DecodeOwned(d.Data)
	if err != nil {
		return err
	}
	return e
}

func undecodable(d replay.Delivery, err error) *DeliveryError {
	return &DeliveryError{Topic: d.Topic, Position: d.Position, Err: fmt.Errorf("%w: %w", ErrUndecodable, err)}
}

// msgCtx is the ctx of one handler call: it carries the message as
// WithMessage does, with the message in the same allocation.
type msgCtx struct {
	context.Context
	m Message
}

func (c *msgCtx) Value(key any) any {
	if _, ok := key.(messageKey); ok {
		return &c.m
	}
	return c.Context.Value(key)
}

// decode is prepare for the callers that need a Message at once (the
// Events iterator, Requeue): the Delivery's Data is theirs, decoded in
// place.
func (b *Bus) decode(d replay.Delivery) (*Message, error) {
	e, err := b.dec.DecodeOwned(d.Data)
	if err != nil {
		return nil, undecodable(d, err)
	}
	return &Message{Envelope: e, Topic: d.Topic, Position: d.Position, Replayed: d.Replayed}, nil
}

// Close stops Run, waits for the handlers in flight and the final
// checkpoint save, and makes later calls return ErrClosed. It returns the
// error Run returned (nil after a normal stop), for callers that run it in a
// goroutine. It does not close the transport. It is safe to call more than
// once. Close waits for handlers that ignore their ctx for as long as they
// run; Shutdown bounds the wait.
func (b *Bus) Close() error { return b.Shutdown(context.Background()) }

// Shutdown is Close with a bound: it stops Run and waits for the handlers
// in flight and the final checkpoint saves until ctx ends. Handlers still
// running then (they ignore their ctx) are abandoned: Shutdown returns an
// error that wraps ctx's and names their subscriptions, without the final
// checkpoint saves of those subscriptions (their events are delivered
// again after a restart). Their ctxs are cancelled when the drain timeout
// (replay.WithDrainTimeout, 10 s by default) after the stop has passed;
// their goroutines end when they return.
func (b *Bus) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		if b.running {
			b.cancel()
		} else {
			// Run will not start: Ready and Done must not wait for it.
			close(b.started)
			close(b.done)
			for _, g := range b.order {
				if !g.stopped {
					g.stopped = true
					close(g.done)
				}
			}
		}
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return b.result
	case <-ctx.Done():
	}
	b.mu.Lock()
	var busy []string
	for _, g := range b.order {
		select {
		case <-g.done:
		default:
			if g.follower != nil {
				busy = append(busy, strconv.Quote(g.key))
			}
		}
	}
	b.mu.Unlock()
	if len(busy) == 0 { // done between the two looks
		<-b.done
		return b.result
	}
	return fmt.Errorf("bus: shutdown: handlers of subscription %s still running, abandoned: %w", strings.Join(busy, ", "), ctx.Err())
}

// SubscriptionStatus describes one subscription of a running bus.
type SubscriptionStatus struct {
	// Key is the topic or pattern followed.
	Key     string
	Pattern bool
	// Types lists the event types with typed handlers; CatchAll tells
	// whether Handle registered one for the rest.
	Types    []string
	CatchAll bool
	Stats    replay.Stats
	// Group is set for a member of a consumer group (WithGroup): the
	// topics it owns, the group's members and its counters.
	Group *replay.GroupStats
}

// Status lists the subscriptions with their cursors, heads, lag, connected
// state and counters. Before Run the stats are zero.
func (b *Bus) Status() []SubscriptionStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]SubscriptionStatus, 0, len(b.order))
	for _, g := range b.order {
		out = append(out, g.statusLocked())
	}
	return out
}

// statusLocked describes g; the bus's mu is held.
func (g *group) statusLocked() SubscriptionStatus {
	s := SubscriptionStatus{Key: g.key, Pattern: g.pattern, CatchAll: g.catchAll != nil}
	for t := range g.typed {
		s.Types = append(s.Types, t)
	}
	sort.Strings(s.Types)
	if g.follower != nil {
		s.Stats = g.follower.Stats()
		if m, ok := g.follower.(*replay.Group); ok {
			gs := m.GroupStats()
			s.Group = &gs
		}
	}
	return s
}

// consumerFor names the checkpoints of one subscription of a durable bus.
// Each subscription has its own cursor per topic, so each has its own
// checkpoints: a topic subscription uses the consumer name itself, a
// pattern subscription "<consumer>@<pattern>". These names are stored: they
// never change once checkpoints exist.
func (b *Bus) consumerFor(key string, pattern bool) string {
	if pattern {
		return b.cfg.consumer + "@" + key
	}
	return b.cfg.consumer
}

// deadUnlessAsked leaves dead-letter topics out of a pattern subscription
// unless the pattern itself is about them ("*.dead"): "order.*" must not
// receive "order.placed.dead", or a failing handler behind DeadLetter
// would feed on its own dead letters.
func deadUnlessAsked(pattern string) func(topic string) bool {
	if strings.HasSuffix(pattern, DeadSuffix) {
		return nil
	}
	return func(topic string) bool { return strings.HasSuffix(topic, DeadSuffix) }
}
