// Package transport defines what the bus needs from a storage and delivery
// back end: durable publish with positions, live frames, backlog reads by
// position and time, topic listing and consumer checkpoints.
//
// A Transport is the back end; the bus and the follower (package replay) sit
// on top of it. Implementations live in sub-packages (memtransport,
// redistransport) and every one of them must pass transporttest.Run.
// Optional abilities (PatternSubscriber, Seeker, TopicLister,
// CheckpointStore, Owner, PartitionStore) are discovered with type assertions, as
// http.Flusher is: FeaturesOf reports them.
package transport

import (
	"context"
	"fmt"
	"time"
)

// Transport stores events in a per-topic backlog and delivers them live.
// It is the core every back end has; the rest (patterns, seeking by time,
// topic listing, checkpoints, ownership) are optional interfaces, see
// FeaturesOf.
//
// Every method is safe for concurrent use. Methods that wait take a ctx and
// return its error when it ends first. After Close every method returns an
// error wrapping ErrClosed.
type Transport interface {
	// Publish appends one encoded event to the backlog of msg.Topic and sends
	// it to live subscribers, atomically: an event that is in the backlog has
	// been sent live, and the other way round. It returns the event's
	// position once the event is durable (as durable as the back end is).
	Publish(ctx context.Context, msg Message) (Position, error)

	// PublishBatch publishes many events, in order per topic, and returns
	// their positions in the order of msgs. Events that are invalid (bad
	// topic, too large) are not written, the valid ones are. When some
	// events could not be written, the error is a *BatchError that lists
	// them (their positions are zero); the positions of the others are still
	// filled in.
	PublishBatch(ctx context.Context, msgs []Message) ([]Position, error)

	// Subscribe starts live delivery of the named topics. It returns only
	// once the back end has confirmed the subscription, so every event
	// published after it returns is either delivered or signalled as missing
	// (a gap in seq, or a Dropped/Reconnected/Stalled signal).
	//
	// ctx bounds both the wait for the confirmation and the life of the
	// subscription: when it ends, the subscription ends.
	Subscribe(ctx context.Context, topics ...string) (Subscription, error)

	// Range returns up to limit events of topic that follow after, in order.
	//
	// When after.Epoch is empty or differs from the topic's current epoch,
	// the read starts at the oldest event held in the current epoch; the
	// caller sees the change in Page.Epoch. A page with fewer than limit
	// events is the end of the backlog at the time of the read. Events
	// trimmed by retention are simply absent: the caller finds the hole by
	// comparing Page.Events[0].Position.Seq with after.Seq.
	// A topic that has never been published to gives an empty Page and
	// ErrUnknownTopic.
	Range(ctx context.Context, topic string, after Position, limit int) (Page, error)

	// Head returns the position of the last event published to topic
	// (Position.ID may be empty). It returns ErrUnknownTopic for a topic
	// that has never been published to or whose log was deleted.
	Head(ctx context.Context, topic string) (Position, error)

	// Close releases the transport's own resources and ends its
	// subscriptions. It never closes a client the caller passed in.
	// Closing a closed transport returns an error wrapping ErrClosed.
	Close() error
}

// The optional abilities. A transport offers each by implementing its
// interface; FeaturesOf tells which a transport offers, and callers assert
// the interface only when it does.

// PatternSubscriber subscribes to glob patterns over topic names.
type PatternSubscriber interface {
	// SubscribePattern is Subscribe for glob patterns over topic names
	// (`*` any run of characters, `?` one character, `[abc]` a class).
	// A topic matched by several patterns of one subscription may be
	// delivered once per pattern (Redis does so); receivers drop the
	// duplicates by seq.
	SubscribePattern(ctx context.Context, patterns ...string) (Subscription, error)
}

// Seeker finds positions by publish time.
type Seeker interface {
	// Seek returns the position just before the first event of topic whose
	// publish time is at or after t, so that Range(ctx, topic, pos, n) starts
	// with that event. When no event is that recent, it returns Head.
	// A back end may narrow the search by its own clock (Redis: the stream
	// id); it is exact when event times follow log order to within its
	// documented skew.
	Seek(ctx context.Context, topic string, t time.Time) (Position, error)
}

// TopicLister lists the known topics.
type TopicLister interface {
	// Topics lists the known topics whose names match the glob pattern
	// ("" or "*" for all), sorted by name.
	Topics(ctx context.Context, pattern string) ([]string, error)
}

// CheckpointStore keeps durable consumers' positions.
type CheckpointStore interface {
	// SaveCheckpoints stores the positions of the named durable consumer,
	// one per topic, replacing earlier ones for those topics.
	SaveCheckpoints(ctx context.Context, consumer string, cps map[string]Position) error

	// LoadCheckpoints returns the saved positions of the named consumer by
	// topic; an empty map when it has none.
	LoadCheckpoints(ctx context.Context, consumer string) (map[string]Position, error)
}

// NoLogError is the ErrUnknownTopic a back end's Head returns when the
// topic has no log (never made, or deleted or evicted), as opposed to a
// topic whose log is there but whose meta data is not (the next publish
// makes it again, over the same log). Meta is what the topic's meta data
// still says, its epoch and seq: zero when it is gone too. A reader whose
// cursor is in a log that is gone knows that what the log held after the
// cursor is lost.
type NoLogError struct {
	Topic string
	Meta  Position
}

func (e *NoLogError) Error() string {
	return fmt.Sprintf("topic %q has no log: %v", e.Topic, ErrUnknownTopic)
}

// Unwrap returns ErrUnknownTopic.
func (e *NoLogError) Unwrap() error { return ErrUnknownTopic }

// LineageReader is implemented by a back end whose logs record the epochs
// that wrote to them. A follower uses it to tell a log that goes on under
// a new epoch (its meta data was lost and made again) from a new log that
// happens to continue the cursor's seqs.
type LineageReader interface {
	// LogEpochs returns the epochs that wrote to topic's current log since
	// it was made, with complete true. complete is false when the log
	// carries no full record (an older version made it, or the back end
	// could not write one): the caller cannot tell then. A topic without a
	// log gives ErrUnknownTopic.
	LogEpochs(ctx context.Context, topic string) (epochs []string, complete bool, err error)
}

// Features says which optional abilities a transport offers.
type Features struct {
	Patterns    bool // PatternSubscriber
	Seek        bool // Seeker
	Topics      bool // TopicLister
	Checkpoints bool // CheckpointStore
	Ownership   bool // Owner
	Partitions  bool // PartitionStore
}

// FeatureNarrower is implemented by a transport whose configuration turns
// off an ability its type has (Redis with sharded Pub/Sub has no pattern
// subscriptions): FeaturesOf keeps only what Features reports.
type FeatureNarrower interface {
	Features() Features
}

// FeaturesOf reports the optional abilities tr offers: the interfaces its
// type implements, narrowed by its FeatureNarrower method when it has one.
func FeaturesOf(tr Transport) Features {
	_, p := tr.(PatternSubscriber)
	_, s := tr.(Seeker)
	_, t := tr.(TopicLister)
	_, c := tr.(CheckpointStore)
	_, o := tr.(Owner)
	_, ps := tr.(PartitionStore)
	f := Features{Patterns: p, Seek: s, Topics: t, Checkpoints: c, Ownership: o, Partitions: ps}
	if n, ok := tr.(FeatureNarrower); ok {
		m := n.Features()
		f = Features{Patterns: p && m.Patterns, Seek: s && m.Seek, Topics: t && m.Topics,
			Checkpoints: c && m.Checkpoints, Ownership: o && m.Ownership, Partitions: ps && m.Partitions}
	}
	return f
}

// Message is one event to publish.
type Message struct {
	// Topic is the destination; see ValidateTopic.
	Topic string
	// ID is the event's unique id (the envelope id), used by idempotent
	// publishing to recognise a re-publish.
	ID string
	// Time is the event's publish time (the envelope's time attribute).
	// A transport may keep it beside the event for Seek; one that does not
	// reads it back from Data.
	Time time.Time
	// Data is the encoded envelope. The transport does not modify it and
	// does not keep a reference to it after Publish returns.
	Data []byte
}

// Delivery is one event read from a topic, live or from the backlog.
type Delivery struct {
	Topic    string
	Position Position
	// Data is the encoded envelope. It belongs to the receiver.
	Data []byte
	// Rollback, when set, makes this Delivery a marker found in the
	// backlog rather than an event: Data is nil, Position.ID is the
	// marker's place in the log and Position.Seq the topic's last seq when
	// the marker was written. Range returns markers in log order; a live
	// Frame may carry one too (a publisher sends it when it writes it).
	Rollback *Rollback
}

// Rollback is a marker a publisher writes into a topic's log when the back
// end handed out again seqs that the publisher had already seen
// acknowledged in the same epoch (a crash that lost writes, a failover to a
// lagging replica): the events first acknowledged at seqs From..To
// (inclusive) of Epoch are gone, and the events that now carry those seqs
// are others. Receivers report the part of that range they had not
// already reported.
type Rollback struct {
	Epoch    string
	From, To uint64
}

// Page is the result of Range.
type Page struct {
	// Epoch is the topic's current epoch at the time of the read.
	Epoch string
	// Events are in backlog order with contiguous or increasing seq.
	Events []Delivery
}

// Subscription is a live subscription to topics or patterns.
//
// Its events channel is closed when the subscription ends, by Close, by the
// ctx given to Subscribe, or by the transport closing; Err then says why.
type Subscription interface {
	// Events returns the channel of frames and signals. It is buffered and
	// bounded: when the receiver falls behind, frames are dropped and a
	// Dropped signal names them, the reader never blocks.
	Events() <-chan Event
	// Close ends the subscription and waits for its goroutines. It is safe
	// to call more than once and from any goroutine.
	Close() error
	// Err returns why the events channel was closed: nil after Close,
	// ErrClosed when the transport closed, or the ctx's error.
	Err() error
}

// EventKind says what an Event carries.
type EventKind uint8

const (
	// Frame is a live event: Event.Delivery is set.
	Frame EventKind = iota + 1
	// Dropped says that frames of Event.Topic with seq From..To
	// (inclusive, within Event.Epoch) were not delivered because the
	// receiver was too slow. From and To are zero when unknown.
	Dropped
	// Reconnected says that the connection was re-established: anything
	// published meanwhile may be missing, so the receiver must check the
	// backlog. Event.Topic is empty (all topics).
	Reconnected
	// Stalled says that the connection stopped answering and is being
	// rebuilt. Reconnected follows once it is.
	Stalled
	// Malformed says that a frame that could not be parsed was skipped;
	// Event.Err says why and Event.Topic names its topic when known.
	Malformed
)

// String returns the kind's name.
func (k EventKind) String() string {
	switch k {
	case Frame:
		return "frame"
	case Dropped:
		return "dropped"
	case Reconnected:
		return "reconnected"
	case Stalled:
		return "stalled"
	case Malformed:
		return "malformed"
	}
	return "unknown"
}

// Event is one item of a Subscription: a live frame or a signal.
type Event struct {
	Kind EventKind
	// Delivery is the frame, for Kind == Frame.
	Delivery Delivery
	// Topic is the topic a signal concerns, when it concerns one.
	Topic string
	// Epoch, From and To give the dropped range, for Kind == Dropped.
	Epoch    string
	From, To uint64
	// Err details a Malformed or Stalled signal.
	Err error
}
