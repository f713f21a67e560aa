package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// ErrInvalidOption is wrapped by every error about an invalid option.
var ErrInvalidOption = errors.New("bus: invalid option")

// Option configures a Bus.
type Option func(*config)

type config struct {
	source      string
	consumer    string
	group       string
	routes      map[string]string
	mw          []Middleware
	hooks       []PublishHook
	onError     func(error)
	onLoss      func(*replay.LossError)
	logger      *slog.Logger
	maxSize     int
	maxSizeSet  bool // WithMaxEventSize was given
	followerOps []replay.Option
	partitions  map[string]int // topic -> N (WithPartitions)
	errs        []error
}

func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// WithSource names the publishing service in every envelope's source
// attribute. Default "durabus".
func WithSource(source string) Option {
	return func(c *config) {
		if source == "" {
			c.invalid("empty source")
		}
		c.source = source
	}
}

// WithConsumer makes every subscription of the bus durable under the stable
// name consumer: per-topic checkpoints are saved after handlers succeed and
// win over StartAt when the process restarts. Each subscription keeps its
// own checkpoints: a topic subscription under the name itself, a pattern
// subscription under "<consumer>@<pattern>". Default: not durable.
func WithConsumer(name string) Option {
	return func(c *config) {
		if err := replay.ValidateConsumer(name); err != nil {
			c.invalid("%v", err)
		}
		c.consumer = name
	}
}

// WithGroup makes the bus a member of the consumer group name: the
// processes whose buses have one group name share the work of each
// subscription. The topics of a subscription (the partitions of a
// partitioned topic, see WithPartitions; the topics a pattern matches) are
// spread over the members, each owned by one member at a time, in order,
// with its checkpoint "<name>/<key>@<topic>" (key: the subscription's
// topic or pattern) fenced by its lease: every event is handled by the
// group at least once. A member that leaves (Close, Shutdown,
// Subscription.Stop) hands its topics over at once; one that dies is
// replaced when its lease lapses (replay.DefaultGroupLease, or the TTL of
// replay.WithLease in WithFollowerOptions). See docs/groups.md.
//
// A topic that is not partitioned is one unit of work: one member handles
// it, the others stand by. WithGroup excludes WithConsumer, and needs a
// transport that keeps group membership (transport.GroupStore), leases
// and checkpoints.
func WithGroup(name string) Option {
	return func(c *config) {
		if err := replay.ValidateConsumer(name + "/x@y"); err != nil || name == "" {
			c.invalid("group name %q: want 1 to 396 printable ASCII bytes without spaces", name)
		}
		c.group = name
	}
}

// WithRoute sends events of eventType to topic instead of the topic named
// after the type, for publishing and subscribing alike. Types routed to one
// topic share its order. On a subscribed topic, events of a type this bus
// routes there but has no handler for are skipped without a report; other
// unknown types are reported as ErrUnknownType.
func WithRoute(eventType, topic string) Option {
	return func(c *config) {
		if err := transport.ValidateTopic(topic); err != nil {
			c.invalid("route of %q: %v", eventType, err)
		}
		if c.routes == nil {
			c.routes = make(map[string]string)
		}
		c.routes[eventType] = topic
	}
}

// WithMiddleware wraps every handler of the bus; mw[0] is the outermost.
// Subscription middleware (Use) sits inside it.
func WithMiddleware(mw ...Middleware) Option {
	return func(c *config) { c.mw = append(c.mw, mw...) }
}

// WithPublishHook adds a hook run for every published event, in the order
// added (see PublishHook).
func WithPublishHook(h PublishHook) Option {
	return func(c *config) { c.hooks = append(c.hooks, h) }
}

// WithOnError sets the callback for events set aside (a *DeliveryError:
// undecodable, unknown type, no upcaster), failed handler calls (retried)
// and transport trouble. Default: logged only.
func WithOnError(f func(error)) Option { return func(c *config) { c.onError = f } }

// WithOnLoss sets the callback for events the backlog no longer held when a
// subscription needed them. Losses are also logged at error level.
func WithOnLoss(f func(*replay.LossError)) Option { return func(c *config) { c.onLoss = f } }

// WithLogger sets the logger of the bus and its followers. Each failure is
// logged once: losses at error level, handler panics at error level with
// their stack, other trouble (handler errors, reconnects, undecodable
// events) at warn level. Default: slog.Default(), so that a loss or a
// panic is never invisible; pass a logger with a discarding handler to
// silence it.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxEventSize bounds the size of an encoded event — the whole JSON
// envelope with its attributes, not only the payload — on publish and on
// delivery. Default envelope.DefaultMaxSize (1 MiB), or the transport's
// limit when that is lower. New refuses a size above the transport's limit
// (a transport's MaxSize() int method), which would refuse such events.
func WithMaxEventSize(n int) Option {
	return func(c *config) {
		if n < 256 {
			c.invalid("max event size %d: want at least 256 bytes", n)
		}
		c.maxSize, c.maxSizeSet = n, true
	}
}

// WithFollowerOptions passes options to every subscription's follower:
// backoff, head check interval, page size, inbox size, checkpoint batching
// (see package replay).
func WithFollowerOptions(opts ...replay.Option) Option {
	return func(c *config) { c.followerOps = append(c.followerOps, opts...) }
}

// WithPartitions gives topic n partitions (1 to
// transport.MaxPartitions): its events go to n topics of their own,
// "<topic>:p0" … (transport.PartitionTopic), by the hash of their key (see
// WithKey and Keyed); order is kept per partition, hence per key. Give
// the same option to every bus that publishes or subscribes to topic: n is
// recorded in the back end by the first of them, and a bus with another
// count, or with none, gets an error wrapping ErrPartitionCount rather
// than splitting the topic. topic is a topic name: an event type's own
// name unless WithRoute sends it elsewhere. The transport must record
// partition counts (transport.PartitionStore). Default: not partitioned.
// See docs/groups.md for how to choose n.
func WithPartitions(topic string, n int) Option {
	return func(c *config) {
		if err := transport.ValidatePartitions(topic, n); err != nil {
			c.invalid("WithPartitions(%q, %d): %v", topic, n, err)
		}
		if c.partitions == nil {
			c.partitions = make(map[string]int)
		}
		c.partitions[topic] = n
	}
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subConfig)

type subConfig struct {
	start    replay.Start
	startSet bool
	topic    string
	mw       []Middleware
}

// StartAt sets where the subscription begins when its consumer has no saved
// checkpoint. Default NewOnly.
func StartAt(s replay.Start) SubscribeOption {
	return func(c *subConfig) { c.start, c.startSet = s, true }
}

// OnTopic subscribes on topic instead of the topic of the event type.
func OnTopic(topic string) SubscribeOption { return func(c *subConfig) { c.topic = topic } }

// Use wraps this subscription's handler; it sits inside the bus's
// middleware.
func Use(mw ...Middleware) SubscribeOption {
	return func(c *subConfig) { c.mw = append(c.mw, mw...) }
}

// NewOnly starts with the events published after the subscription started.
func NewOnly() replay.Start { return replay.NewOnly() }

// Beginning starts at the oldest event the backlog holds.
func Beginning() replay.Start { return replay.Beginning() }

// Since starts at the first event published at or after t.
func Since(t time.Time) replay.Start { return replay.Since(t) }

// After starts right after pos.
func After(pos transport.Position) replay.Start { return replay.After(pos) }

// PublishOption configures one Publish call.
type PublishOption func(*pubConfig)

type pubConfig struct {
	topic   string
	key     string
	keySet  bool
	envOpts []envelope.Option
}

// ToTopic publishes to topic instead of the event type's topic.
func ToTopic(topic string) PublishOption { return func(c *pubConfig) { c.topic = topic } }

// WithKey sets the event's partition key, which picks its partition on a
// partitioned topic (see WithPartitions): events with one key keep their
// order. It wins over the event's own PartitionKey method (Keyed); an
// empty key makes the event unkeyed. The key travels in the envelope's
// "partitionkey" extension (ExtPartitionKey), on any topic. Default: the
// event's PartitionKey, else none.
func WithKey(key string) PublishOption {
	return func(c *pubConfig) { c.key, c.keySet = key, true }
}

// WithEnvelope sets envelope attributes: id, time, extensions such as a
// correlation id, trace context.
func WithEnvelope(opts ...envelope.Option) PublishOption {
	return func(c *pubConfig) { c.envOpts = append(c.envOpts, opts...) }
}
