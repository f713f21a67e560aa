package redistransport

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/durabus/durabus/transport"
)

// Defaults of the options, in one place. The zero configuration (New with no
// options) uses all of them.
const (
	// DefaultNamespace prefixes every key and channel.
	DefaultNamespace = "durabus"
	// DefaultMaxLen is the number of entries kept per topic (approximately:
	// trimming uses MAXLEN ~, which removes whole stream nodes).
	DefaultMaxLen = 1_000_000
	// DefaultMaxSize is the largest Message.Data accepted, in bytes.
	DefaultMaxSize = 1 << 20
	// DefaultProbeInterval is the silence on a Pub/Sub connection after which
	// a PING is sent on it.
	DefaultProbeInterval = 5 * time.Second
	// DefaultProbeTimeout is how long the answer to that PING may take
	// before the connection is declared stalled and rebuilt.
	DefaultProbeTimeout = 2 * time.Second
	// DefaultBufferSize is the number of events a subscription queues for a
	// receiver that falls behind, before it drops frames.
	DefaultBufferSize = 4096
	// DefaultSeekSkew is how far, by Redis's clock, before the requested
	// time Seek starts its scan: the most a publisher's clock may be ahead
	// of Redis's for Seek to be exact (see WithSeekSkew).
	DefaultSeekSkew = time.Second
)

// maxSizeLimit is Redis's proto-max-bulk-len default (512 MiB).
const maxSizeLimit = 512 << 20

// Option configures New. Invalid values are reported by New, all at once,
// in an error wrapping transport.ErrInvalidOption.
type Option func(*config)

type config struct {
	namespace     string
	maxLen        int64
	maxAge        time.Duration
	maxSize       int
	idemWindow    time.Duration
	probeInterval time.Duration
	probeTimeout  time.Duration
	bufferSize    int
	sharded       bool
	seekSkew      time.Duration
	logger        *slog.Logger
}

func defaultConfig() config {
	return config{
		namespace:     DefaultNamespace,
		maxLen:        DefaultMaxLen,
		maxSize:       DefaultMaxSize,
		probeInterval: DefaultProbeInterval,
		probeTimeout:  DefaultProbeTimeout,
		bufferSize:    DefaultBufferSize,
		seekSkew:      DefaultSeekSkew,
	}
}

// WithNamespace sets the prefix of every key and channel (see the package
// doc for the layout). It must be a valid topic name. Default
// DefaultNamespace. Changing it on live data is a migration: the old keys are
// not read.
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithMaxLen keeps about n entries per topic (XADD MAXLEN ~ n). Default
// DefaultMaxLen; 0 means no count limit (then set WithMaxAge, or memory grows
// without bound).
func WithMaxLen(n int64) Option { return func(c *config) { c.maxLen = n } }

// WithMaxAge trims, on publish, the entries whose stream id (Redis's clock)
// is older than d (XTRIM MINID ~). Default 0: no age limit. At least 1 ms.
func WithMaxAge(d time.Duration) Option { return func(c *config) { c.maxAge = d } }

// WithMaxSize rejects events whose Data is longer than n bytes with
// transport.ErrTooLarge, before anything is sent. Default DefaultMaxSize;
// at most 512 MiB (Redis's bulk string limit).
func WithMaxSize(n int) Option { return func(c *config) { c.maxSize = n } }

// WithIdempotency turns on the idempotency window: publishing a Message
// whose non-empty ID was already published to the same topic less than d ago
// writes nothing and returns the first position (within one PublishBatch
// too: a repeated ID is written once). It costs one key
// ns:{T}:idem:<id> per event for d (about 150 bytes each). Default 0: off.
// At least 1 ms.
func WithIdempotency(d time.Duration) Option { return func(c *config) { c.idemWindow = d } }

// WithProbe sets the liveness probe of subscriptions: after interval of
// silence a PING is sent on the Pub/Sub connection; without an answer within
// timeout the subscription signals Stalled and rebuilds the connection.
// Defaults DefaultProbeInterval and DefaultProbeTimeout.
func WithProbe(interval, timeout time.Duration) Option {
	return func(c *config) { c.probeInterval, c.probeTimeout = interval, timeout }
}

// WithBufferSize sets how many events a subscription queues for a receiver
// that falls behind, before it drops frames (and signals Dropped). Default
// DefaultBufferSize.
func WithBufferSize(n int) Option { return func(c *config) { c.bufferSize = n } }

// WithShardedPubSub makes live frames use sharded Pub/Sub (SPUBLISH /
// SSUBSCRIBE, Redis 7.0 or newer), which scales on Redis Cluster because a
// frame goes only to the shard that owns its topic. SubscribePattern is then
// unavailable. Every publisher and subscriber of a namespace must agree.
// Default false.
func WithShardedPubSub(on bool) Option { return func(c *config) { c.sharded = on } }

// WithSeekSkew sets how far before the requested time t Seek (and so a
// replay Since(t)) starts scanning, by stream id, i.e. by Redis's clock. It
// is the allowance for publishers whose clocks are AHEAD of Redis's:
//
//   - Seek(t) is exact (the first event, in log order, whose envelope time
//     is at or after t) when no publisher's clock was more than d ahead of
//     Redis's when it published.
//   - A publisher clock behind Redis's needs no allowance, whatever the lag:
//     its events have later stream ids than their envelope times, and the
//     scan reads on until it finds one at or after t.
//   - An event whose publisher clock was more than d ahead can be missed:
//     when its stream id is before t-d, Seek returns a position after it.
//
// The cost is the scan: Seek decodes the envelope time of every event from
// t-d to the one it returns (about d's worth of events when t is recent, as
// for a follower that starts from now). Default DefaultSeekSkew; 0 trusts
// publisher clocks never to be ahead of Redis's.
func WithSeekSkew(d time.Duration) Option { return func(c *config) { c.seekSkew = d } }

// WithLogger sets the logger for junk backlog entries, connection trouble
// and New's warning about a maxmemory-policy that evicts keys (each said
// once, at warn level). Default: slog.Default(), so that such trouble is
// never invisible; pass a logger with slog.DiscardHandler to silence it.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("redistransport: %w: "+format, append([]any{transport.ErrInvalidOption}, args...)...))
	}
	if err := transport.ValidateTopic(c.namespace); err != nil {
		bad("namespace %q: %v", c.namespace, err)
	}
	if c.maxLen < 0 {
		bad("WithMaxLen(%d): want 0 (no limit) or more", c.maxLen)
	}
	if c.maxAge < 0 || 0 < c.maxAge && c.maxAge < time.Millisecond {
		bad("WithMaxAge(%v): want 0 (no limit) or at least 1ms", c.maxAge)
	}
	if c.maxSize <= 0 || c.maxSize > maxSizeLimit {
		bad("WithMaxSize(%d): want 1 to %d bytes", c.maxSize, maxSizeLimit)
	}
	if c.idemWindow < 0 || 0 < c.idemWindow && c.idemWindow < time.Millisecond {
		bad("WithIdempotency(%v): want 0 (off) or at least 1ms", c.idemWindow)
	}
	if c.probeInterval < time.Millisecond || c.probeTimeout < time.Millisecond {
		bad("WithProbe(%v, %v): both must be at least 1ms", c.probeInterval, c.probeTimeout)
	}
	if c.bufferSize < 1 {
		bad("WithBufferSize(%d): want at least 1", c.bufferSize)
	}
	if c.seekSkew < 0 {
		bad("WithSeekSkew(%v): want 0 or more", c.seekSkew)
	}
	return errors.Join(errs...)
}
