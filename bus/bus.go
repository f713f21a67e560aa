package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

var (
	// ErrClosed is returned by the methods of a closed Bus.
	ErrClosed = errors.New("bus: closed")
	// ErrRunning is returned by a second Run, and by a subscription that
	// would join a topic already being followed.
	ErrRunning = errors.New("bus: already running")
)

// PublishHook runs for every event about to be published, after the
// envelope is built and before it is encoded: it may add attributes (trace
// context, correlation id) and returns a ctx for the publish and a function
// called with its outcome. Tracing uses it for producer spans.
type PublishHook func(ctx context.Context, topic string, e *envelope.Envelope) (context.Context, func(transport.Position, error))

// Bus publishes typed events and delivers them to subscribed handlers.
// Create it with New; register handlers with Subscribe and Handle; start
// delivery with Run; stop it with Close or by ending Run's ctx.
type Bus struct {
	tr  transport.Transport
	cfg config
	log *slog.Logger
	dec envelope.Decoder
	src envelope.Option // WithSource(cfg.source), made once
	// holder is the bus's id in its durable consumers' leases: its
	// subscriptions share them (each follows its own topics).
	holder string
	parts  *partitionsCache // topic -> agreed partition count

	mu        sync.Mutex
	groups    map[string]*group
	order     []*group
	upcasters map[string]map[int]Upcaster
	closed    bool
	running   bool
	stopping  bool // Run is waiting for its subscriptions to end
	runCtx    context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	runErr    chan error
	started   chan struct{} // closed when Run starts
	done      chan struct{} // closed when Run returns
	result    error         // Run's result, set before done closes
	lastErr   error         // the followers' last error, for Ready; guarded by mu
}

// New returns a Bus on tr. The bus never closes tr.
func New(tr transport.Transport, opts ...Option) (*Bus, error) {
	cfg := config{source: envelope.DefaultSource, maxSize: envelope.DefaultMaxSize}
	for _, o := range opts {
		o(&cfg)
	}
	if tr == nil {
		cfg.invalid("nil transport")
	} else if cfg.consumer != "" && !transport.FeaturesOf(tr).Checkpoints {
		cfg.invalid(fmt.Sprintf("WithConsumer: the transport %T stores no checkpoints (transport.CheckpointStore)", tr))
	}
	if cfg.group != "" && cfg.consumer != "" {
		cfg.invalid("WithGroup and WithConsumer: a group member's checkpoints are named after the group")
	}
	if _, ok := tr.(transport.GroupStore); tr != nil && cfg.group != "" && (!ok || !transport.FeaturesOf(tr).Ownership || !transport.FeaturesOf(tr).Checkpoints) {
		cfg.invalid(fmt.Sprintf("WithGroup: the transport %T keeps no group membership, leases or checkpoints (transport.GroupStore, transport.Owner, transport.CheckpointStore)", tr))
	}
	if tr != nil && len(cfg.partitions) > 0 && !transport.FeaturesOf(tr).Partitions {
		cfg.invalid(fmt.Sprintf("WithPartitions: the transport %T records no partition counts (transport.PartitionStore), so its processes could not agree on them", tr))
	}
	if tr != nil && len(cfg.followerOps) > 0 {
		// The follower options are checked now, not at Run. The consumer
		// name is the bus's (each subscription gets its own from it).
		probe, err := replay.New(tr, func(context.Context, replay.Delivery) error { return nil },
			append([]replay.Option{replay.WithTopics("probe")}, cfg.followerOps...)...)
		switch {
		case err != nil:
			cfg.errs = append(cfg.errs, fmt.Errorf("follower options: %w", err))
		case probe.Consumer() != "":
			cfg.invalid(fmt.Sprintf("replay.WithConsumer(%q) in WithFollowerOptions: name the consumer with bus.WithConsumer, which gives each subscription its own checkpoints", probe.Consumer()))
		}
	}
	if l, ok := tr.(interface{ MaxSize() int }); ok && l.MaxSize() > 0 {
		switch {
		case cfg.maxSizeSet && cfg.maxSize > l.MaxSize():
			cfg.invalid("max event size %d: the transport accepts at most %d bytes (its WithMaxSize)", cfg.maxSize, l.MaxSize())
		case !cfg.maxSizeSet:
			cfg.maxSize = min(cfg.maxSize, l.MaxSize())
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	return &Bus{
		tr:        tr,
		cfg:       cfg,
		log:       log,
		dec:       envelope.Decoder{MaxSize: cfg.maxSize},
		src:       envelope.WithSource(cfg.source),
		holder:    replay.HolderID(),
		parts:     newPartitionsCache(tr),
		groups:    make(map[string]*group),
		upcasters: make(map[string]map[int]Upcaster),
		runErr:    make(chan error, 1),
		started:   make(chan struct{}),
		done:      make(chan struct{}),
	}, nil
}

// TopicOf returns the topic that events of eventType go to.
func (b *Bus) TopicOf(eventType string) string {
	if t, ok := b.cfg.routes[eventType]; ok {
		return t
	}
	return eventType
}

// Publish publishes ev and returns its position once it is durable. On a
// partitioned topic (WithPartitions) the event goes to the partition of its
// key (WithKey, Keyed), and the position is in that partition's topic
// (Position has no topic: see transport.PartitionOf).
func (b *Bus) Publish(ctx context.Context, ev Event, opts ...PublishOption) (transport.Position, error) {
	var pc pubConfig
	for _, o := range opts {
		o(&pc)
	}
	e, err := b.envelope(ev, &pc)
	if err != nil {
		return transport.Position{}, err
	}
	topic := pc.topic
	if topic == "" {
		topic = b.TopicOf(e.Type)
		if err := typeAsTopic(e.Type, topic); err != nil {
			return transport.Position{}, err
		}
	}
	return b.PublishEnvelope(ctx, topic, e)
}

// typeAsTopic says, when the topic of an event type is the type name
// itself (no route) and that name is not a valid topic, that the type is
// being used as the topic.
func typeAsTopic(typ, topic string) error {
	if topic != typ {
		return nil
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return fmt.Errorf("bus: event type %q is used as its topic (no WithRoute or ToTopic for it), and is not a valid topic name: %w", typ, err)
	}
	return nil
}

// PublishEnvelope publishes an envelope as it is to topic: for tools that
// forward or re-publish events (the CLI, dead-letter requeue). On a
// partitioned topic it goes to the partition of its ExtPartitionKey
// extension.
func (b *Bus) PublishEnvelope(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
	if b.isClosed() {
		return transport.Position{}, ErrClosed
	}
	topic, err := b.route(ctx, topic, e)
	if err != nil {
		return transport.Position{}, err
	}
	ctx, done := b.runHooks(ctx, topic, e)
	msg, err := b.message(topic, e)
	if err != nil {
		done(transport.Position{}, err)
		return transport.Position{}, err
	}
	pos, err := b.tr.Publish(ctx, msg)
	done(pos, err)
	return pos, err
}

// PublishBatch publishes events in one round trip per batch (one script call
// per topic on Redis) and returns their positions in order. When some could
// not be written the error is a *transport.BatchError naming them.
func (b *Bus) PublishBatch(ctx context.Context, events []Event, opts ...PublishOption) ([]transport.Position, error) {
	if b.isClosed() {
		return nil, ErrClosed
	}
	var pc pubConfig
	for _, o := range opts {
		o(&pc)
	}
	msgs := make([]transport.Message, len(events))
	dones := make([]func(transport.Position, error), 0, len(events))
	refuse := func(err error) ([]transport.Position, error) {
		// Every hook started ends, with the error: the batch is not sent.
		for _, done := range dones {
			done(transport.Position{}, err)
		}
		return nil, err
	}
	for i, ev := range events {
		e, err := b.envelope(ev, &pc)
		if err != nil {
			return refuse(fmt.Errorf("bus: batch event %d: %w", i, err))
		}
		topic := pc.topic
		if topic == "" {
			topic = b.TopicOf(e.Type)
			if err := typeAsTopic(e.Type, topic); err != nil {
				return refuse(fmt.Errorf("bus: batch event %d: %w", i, err))
			}
		}
		if topic, err = b.route(ctx, topic, e); err != nil {
			return refuse(fmt.Errorf("bus: batch event %d: %w", i, err))
		}
		_, done := b.runHooks(ctx, topic, e)
		dones = append(dones, done)
		if msgs[i], err = b.message(topic, e); err != nil {
			return refuse(fmt.Errorf("bus: batch event %d: %w", i, err))
		}
	}
	pos, err := b.tr.PublishBatch(ctx, msgs)
	var be *transport.BatchError
	failed := map[int]bool{}
	if errors.As(err, &be) {
		for _, i := range be.Failed {
			failed[i] = true
		}
	}
	for i, done := range dones {
		switch {
		case failed[i] || err != nil && be == nil:
			done(transport.Position{}, err)
		case i < len(pos):
			done(pos[i], nil)
		}
	}
	return pos, err
}

func (b *Bus) envelope(ev Event, pc *pubConfig) (*envelope.Envelope, error) {
	if ev == nil {
		return nil, errors.New("bus: publish of a nil event")
	}
	var buf [4]envelope.Option // no allocation for the common case
	opts := append(buf[:0], b.src)
	if v := versionOf(ev); v != 1 { // 1 is the envelope's default
		opts = append(opts, envelope.WithVersion(v))
	}
	key := pc.key
	if k, ok := ev.(Keyed); ok && !pc.keySet {
		key = k.PartitionKey()
	}
	if key != "" {
		opts = append(opts, envelope.WithExtension(ExtPartitionKey, key))
	}
	opts = append(opts, pc.envOpts...)
	e, err := envelope.New(ev.EventType(), ev, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: event %q: %w", ev.EventType(), err)
	}
	return e, nil
}

func (b *Bus) runHooks(ctx context.Context, topic string, e *envelope.Envelope) (context.Context, func(transport.Position, error)) {
	if len(b.cfg.hooks) == 0 {
		return ctx, func(transport.Position, error) {}
	}
	dones := make([]func(transport.Position, error), 0, len(b.cfg.hooks))
	for _, h := range b.cfg.hooks {
		var done func(transport.Position, error)
		ctx, done = h(ctx, topic, e)
		if done != nil {
			dones = append(dones, done)
		}
	}
	return ctx, func(p transport.Position, err error) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](p, err)
		}
	}
}

func (b *Bus) message(topic string, e *envelope.Envelope) (transport.Message, error) {
	if err := transport.ValidateTopic(topic); err != nil {
		return transport.Message{}, fmt.Errorf("bus: %w", err)
	}
	data, err := e.Encode()
	if err != nil {
		return transport.Message{}, fmt.Errorf("bus: event %q: %w", e.Type, err)
	}
	if len(data) > b.cfg.maxSize {
		return transport.Message{}, fmt.Errorf("bus: event %q: envelope of %d bytes: %w (limit %d, on the whole encoded envelope: WithMaxEventSize)", e.Type, len(data), transport.ErrTooLarge, b.cfg.maxSize)
	}
	return transport.Message{Topic: topic, ID: e.ID, Time: e.Time, Data: data}, nil
}

// Upcaster turns the payload of one version of an event type into the next
// version's.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// Upcast registers fn to turn version from of eventType into version
// from+1. Delivery to a typed handler applies the chain from the event's
// version up to the handler type's EventVersion. Register before Run.
func (b *Bus) Upcast(eventType string, from int, fn Upcaster) error {
	if from < 1 || fn == nil {
		return fmt.Errorf("%w: upcaster of %q from version %d", ErrInvalidOption, eventType, from)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.upcasters[eventType]
	if m == nil {
		m = make(map[int]Upcaster)
		b.upcasters[eventType] = m
	}
	if _, dup := m[from]; dup {
		return fmt.Errorf("%w: upcaster of %q from version %d registered twice", ErrInvalidOption, eventType, from)
	}
	m[from] = fn
	return nil
}

func (b *Bus) upcast(m *Message, to int) (json.RawMessage, error) {
	// The chain gets a copy: an upcaster that edits its input in place
	// must not change the message that retries and dead letters see.
	data := append(json.RawMessage(nil), m.Data...)
	b.mu.Lock()
	chain := b.upcasters[m.Type]
	b.mu.Unlock()
	for v := m.Version; v < to; v++ {
		fn := chain[v]
		if fn == nil {
			return nil, &DeliveryError{Topic: m.Topic, Position: m.Position, Type: m.Type, Err: fmt.Errorf("%w: from version %d to %d", ErrNoUpcaster, v, v+1)}
		}
		var err error
		if data, err = fn(data); err != nil {
			return nil, &DeliveryError{Topic: m.Topic, Position: m.Position, Type: m.Type, Err: fmt.Errorf("upcast from version %d: %w", v, err)}
		}
	}
	return data, nil
}

func (b *Bus) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *Bus) report(err error) {
	b.log.Warn("durabus: bus", "err", err)
	if b.cfg.onError != nil {
		b.cfg.onError(err)
	}
}

// followerError passes a follower's error to WithOnError; the follower
// has logged it already (once).
func (b *Bus) followerError(err error) {
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
	if b.cfg.onError != nil {
		b.cfg.onError(err)
	}
}

func (b *Bus) lost(e *replay.LossError) {
	if b.cfg.onLoss != nil {
		b.cfg.onLoss(e)
	}
}
