package replay

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/durabus/durabus/transport"
)

// ErrInvalidOption is wrapped by every error about an invalid option.
var ErrInvalidOption = errors.New("replay: invalid option")

// Defaults of the follower's options.
const (
	DefaultPageSize           = 1024
	DefaultInboxSize          = 256
	DefaultHeadCheck          = 2 * time.Second
	DefaultBackoffInitial     = 50 * time.Millisecond
	DefaultBackoffMax         = 5 * time.Second
	DefaultBackoffMultiplier  = 2.0
	DefaultCheckpointEvery    = 100
	DefaultCheckpointInterval = time.Second
	DefaultDrainTimeout       = 10 * time.Second
)

// Option configures a Follower.
type Option func(*config)

type config struct {
	topics       []string
	pattern      string
	exclude      func(topic string) bool
	start        Start
	consumer     string
	leaseTTL     time.Duration
	standbyPoll  time.Duration // how often a standby claims at most (0: leaseTTL/3)
	holder       string
	cpEvery      int
	cpInterval   time.Duration
	pageSize     int
	prepare      func(transport.Delivery) any
	inboxSize    int
	headCheck    time.Duration
	boInitial    time.Duration
	boMax        time.Duration
	boMultiplier float64
	drainTimeout time.Duration
	onLoss       func(*LossError)
	onError      func(error)
	onReconnect  func(reason string)
	logger       *slog.Logger
	errs         []error
}

func defaultConfig() config {
	return config{
		cpEvery:      DefaultCheckpointEvery,
		cpInterval:   DefaultCheckpointInterval,
		pageSize:     DefaultPageSize,
		inboxSize:    DefaultInboxSize,
		headCheck:    DefaultHeadCheck,
		boInitial:    DefaultBackoffInitial,
		boMax:        DefaultBackoffMax,
		boMultiplier: DefaultBackoffMultiplier,
		drainTimeout: DefaultDrainTimeout,
		leaseTTL:     DefaultLeaseTTL,
	}
}

func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
}

// WithTopics follows the named topics. A follower follows either topics or
// one pattern.
func WithTopics(topics ...string) Option {
	return func(c *config) {
		for _, t := range topics {
			if err := transport.ValidateTopic(t); err != nil {
				c.invalid("topic: %v", err)
			}
		}
		c.topics = append(c.topics, topics...)
	}
}

// WithPattern follows every topic whose name matches the glob pattern: the
// known ones from the start, and new ones from their first event.
func WithPattern(pattern string) Option {
	return func(c *config) {
		if err := transport.ValidatePattern(pattern); err != nil {
			c.invalid("pattern: %v", err)
		}
		c.pattern = pattern
	}
}

// WithExclude leaves out the topics for which f returns true, among those
// a pattern matches. Default: none left out.
func WithExclude(f func(topic string) bool) Option { return func(c *config) { c.exclude = f } }

// WithStart sets where to begin on topics without a saved checkpoint.
// Default NewOnly.
func WithStart(s Start) Option { return func(c *config) { c.start = s } }

// WithConsumer makes the follower durable under the stable name consumer:
// its saved checkpoints win over WithStart, and it saves a checkpoint per
// topic after handlers succeed, batched (see WithCheckpointEvery) and
// flushed when Run returns. Default: not durable.
//
// The name is stored (as ns:consumer:<name> on Redis) and must never change
// once checkpoints exist: 1 to 400 bytes of printable ASCII without spaces.
//
// A durable consumer exists in the back end from its first moment: before
// the follower is Ready it saves its resolved start position on every
// topic, so that nothing published afterwards is skipped by a crash or a
// restart. On a transport that implements transport.Owner (Redis does) it
// has one owner at a time: a second process with the same name waits as a
// standby until the first one's lease lapses (see Run and WithLease). To
// share a service's events between its replicas, use a consumer group.
func WithConsumer(name string) Option {
	return func(c *config) {
		if err := ValidateConsumer(name); err != nil {
			c.invalid("%v", err)
		}
		c.consumer = name
	}
}

// ValidateConsumer checks a durable consumer name: 1 to 400 bytes of
// printable ASCII without spaces.
func ValidateConsumer(name string) error {
	if name == "" || len(name) > 400 {
		return fmt.Errorf("consumer name %q: want 1 to 400 bytes", name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return fmt.Errorf("consumer name %q: byte %d is not printable ASCII (or is a space)", name, i)
		}
	}
	return nil
}

// WithLease sets the lease of a durable consumer on a transport that
// implements transport.Owner: renewed every ttl/3, and handling stops a
// tenth of ttl before it would lapse unrenewed (by this process's monotonic
// clock). A standby takes over within about ttl of the owner's crash.
// Default 10 s; at least 300 ms.
func WithLease(ttl time.Duration) Option {
	return func(c *config) {
		if ttl < 300*time.Millisecond {
			c.invalid("lease %v: want at least 300ms", ttl)
		}
		c.leaseTTL = ttl
	}
}

// WithLeaseHolder sets the id under which the follower holds its
// consumer's lease. Followers that share a consumer name and a holder id
// share the lease (they must follow different topics): the bus gives all
// its subscriptions of one consumer name the same id. Default: an id of
// the follower's own (host, pid and a random part).
func WithLeaseHolder(id string) Option {
	return func(c *config) {
		if id == "" {
			c.invalid("empty lease holder id")
		}
		c.holder = id
	}
}

// WithCheckpointEvery saves checkpoints after n handled events or after d,
// whichever comes first. Defaults 100 and 1 s.
func WithCheckpointEvery(n int, d time.Duration) Option {
	return func(c *config) {
		if n < 1 || d <= 0 {
			c.invalid("checkpoint every %d events / %v: both must be positive", n, d)
		}
		c.cpEvery, c.cpInterval = n, d
	}
}

// WithPageSize sets how many events one backlog read fetches at most.
// Fewer are asked for when the topic's events are large, so that a page
// holds about 4 MiB (a worker holds the page it handles and the next one);
// a worker's first read asks for 64 to learn their size. Default 1024.
func WithPageSize(n int) Option {
	return func(c *config) {
		if n < 1 || n > 100_000 {
			c.invalid("page size %d: want 1..100000", n)
		}
		c.pageSize = n
	}
}

// WithPrepare sets a function run on each event before its handler calls,
// its result reaching the handler as Delivery.Prepared (the same value on
// every attempt); a live frame prepared and then found to be a duplicate
// is dropped with its result. It runs off the handler's goroutine when it can:
// on events read from the backlog, by the goroutine that reads the next
// page while the handler works through the current one (until the handler
// wants that page); on live frames that queue behind a busy handler, by the
// goroutine that queues them for their topic. Otherwise it runs on the handler's goroutine just before the
// first call. It suits pure work such as decoding: it must be safe for
// concurrent use and not depend on earlier handler calls. A panic in it
// becomes the event's Prepared value, a *PanicError. Default: none.
//
// It is public because a follower is usable on its own, over raw
// deliveries: the bus decodes envelopes with it, off the handler's
// goroutine, and so can any program that follows topics with package
// replay directly.
func WithPrepare(f func(transport.Delivery) any) Option {
	return func(c *config) { c.prepare = f }
}

// WithInboxSize bounds the live frames queued per topic while its handler
// is busy; beyond it frames are dropped and repaired from the backlog.
// Default 256.
func WithInboxSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.invalid("inbox size %d: must be positive", n)
		}
		c.inboxSize = n
	}
}

// WithHeadCheck sets how often each topic's head seq is compared with the
// cursor, which catches a lost last event within two intervals. With more
// than 500 topics the topics take turns, 500 per interval. Default 2 s.
func WithHeadCheck(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("head check interval %v: must be positive", d)
		}
		c.headCheck = d
	}
}

// WithBackoff sets the exponential backoff (with jitter) between attempts
// to resubscribe, to read the backlog, and to re-run a failing handler.
// It never gives up; it is reset once a subscription stays healthy for
// max. Defaults 50 ms, 5 s, 2.
func WithBackoff(initial, max time.Duration, multiplier float64) Option {
	return func(c *config) {
		if initial <= 0 || max < initial || multiplier < 1 {
			c.invalid("backoff %v..%v ×%v: want 0 < initial ≤ max, multiplier ≥ 1", initial, max, multiplier)
		}
		c.boInitial, c.boMax, c.boMultiplier = initial, max, multiplier
	}
}

// WithDrainTimeout bounds how long Run waits, after its ctx ended, for the
// handlers in flight; their ctx is cancelled then. Default 10 s.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.invalid("drain timeout %v: must not be negative", d)
		}
		c.drainTimeout = d
	}
}

// WithOnLoss sets the callback for unrecoverable losses. It is called from
// the topic's goroutine before delivery goes on. Losses are also counted and
// logged at error level.
func WithOnLoss(f func(*LossError)) Option { return func(c *config) { c.onLoss = f } }

// WithOnError sets the callback for problems that do not stop delivery:
// malformed frames, failed backlog reads (retried), handler errors
// (retried), checkpoint failures. Called from the follower's goroutines.
func WithOnError(f func(error)) Option { return func(c *config) { c.onError = f } }

// WithOnReconnect sets a callback run each time the live connection was
// re-established or is being rebuilt; reason names the signal.
func WithOnReconnect(f func(reason string)) Option { return func(c *config) { c.onReconnect = f } }

// WithLogger sets the logger. Each failure is logged once: losses at error
// level, handler panics at error level with their stack, other trouble at
// warn level. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// withUnit makes a group member's follower of one topic: the topic alone
// (the group's WithTopics and WithPattern dropped), and a standby that asks
// for the lease every poll, so that a released topic is taken at once.
func withUnit(topic string, poll time.Duration) Option {
	return func(c *config) {
		c.topics, c.pattern, c.exclude = []string{topic}, "", nil
		c.standbyPoll = poll
	}
}
