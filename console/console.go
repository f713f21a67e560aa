// Package console is the web console of durabus (the CLI's "durabus serve"):
// a few HTML pages, built with net/http, html/template and embed, that show
// a namespace's topics, durable consumers, dead letters, a live tail over
// Server-Sent Events, and the losses and reconnects its own follower saw.
//
// The console reads everything through a [Source], which the caller
// implements (the CLI implements it with the same code as "durabus stats"
// and "durabus dead"). It works with a read-only Redis user: what the user
// may not read is shown as such on the page, not as a failed page.
//
// It is safe by default: writes (requeue) are refused with 403 unless
// [WithWrites] is given, and with [WithToken] every request must carry the
// token. Requests without a token are accepted only with a loopback Host
// header (no DNS rebinding). Assets are embedded; the page loads nothing
// from the network.
package console

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/durabus/durabus/replay"
)

// Source is where the console reads its data and does its writes. Its
// methods are called concurrently and must be safe for concurrent use.
type Source interface {
	// Snapshot returns the topics and durable consumers now.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// DeadLetters returns up to limit dead letters of topic (the dead
	// letters of "orders" are in "orders.dead") not requeued yet, oldest
	// first.
	DeadLetters(ctx context.Context, topic string, limit int) ([]DeadLetter, error)
	// Requeue re-publishes the oldest limit dead letters of topic (all of
	// them when limit ≤ 0) and returns how many it re-published.
	Requeue(ctx context.Context, topic string, limit int) (int, error)
	// Tail follows the topics matching pattern from start. It yields an
	// event or an error (a *replay.LossError, an undecodable event) and goes
	// on after an error; it ends when ctx ends or the loop breaks.
	Tail(ctx context.Context, pattern string, start Start) iter.Seq2[*Event, error]
}

// Snapshot is the state of a namespace at one moment.
type Snapshot struct {
	Time      time.Time
	Namespace string
	// Redis is the server's address, without credentials.
	Redis  string
	Topics []Topic
	// PatternSubscriptions is PUBSUB NUMPAT: pattern subscribers of the
	// whole server, which the per-topic Subscribers do not count.
	PatternSubscriptions int64
	Consumers            []Consumer
}

// Topic is one topic's state.
type Topic struct {
	Name  string
	Epoch string
	// Head is the last seq handed out.
	Head uint64
	// Backlog is the number of entries in the topic's log.
	Backlog int64
	// Oldest and Newest are the times of the first and last entries of the
	// log; zero when it is empty.
	Oldest, Newest time.Time
	// LastPublish is the last publish time; zero when unknown.
	LastPublish time.Time
	// Subscribers is the number of live subscribers of the topic's channel.
	Subscribers int64
	// MemoryBytes is the log's memory; -1 when unknown.
	MemoryBytes int64
	// Master is the address of the Redis Cluster master that serves the
	// topic's slot; "" on a standalone Redis.
	Master string
}

// Consumer is one durable consumer's checkpoint on one topic.
type Consumer struct {
	Name  string
	Topic string
	// Epoch, Seq and StreamID are the checkpoint: the last event handled.
	Epoch    string
	Seq      uint64
	StreamID string
	// Lag is the topic's head seq minus Seq; -1 when unknown (the log is
	// gone or in another epoch).
	Lag int64
}

// DeadLetter is one dead letter: an event whose handlers failed for good.
type DeadLetter struct {
	// Seq is its seq in the dead-letter topic.
	Seq uint64
	// ID, Type and Time are the event's own.
	ID, Type string
	Time     time.Time
	// DeadAt is when it was given up; zero when unknown.
	DeadAt time.Time
	// From and FromSeq are the topic and seq it was delivered from.
	From    string
	FromSeq string
	// Attempts is the number of handler calls made, as stored.
	Attempts string
	// Error is the last error.
	Error string
	// Envelope is the dead letter's envelope as stored (JSON).
	Envelope []byte
}

// Event is one event seen by a tail.
type Event struct {
	Topic    string
	Epoch    string
	Seq      uint64
	StreamID string
	Time     time.Time
	Type     string
	ID       string
	Replayed bool
	// Data is the event's payload (JSON).
	Data []byte
}

// Start is where a tail begins: the zero Start is new events only.
type Start struct {
	// Beginning starts at the oldest event held.
	Beginning bool
	// Since starts at the first event at or after this time, unless zero.
	Since time.Time
}

// Option configures a Console.
type Option func(*Console)

// WithWrites allows requeueing dead letters. Default: writes are refused
// with 403.
func WithWrites() Option { return func(c *Console) { c.allowWrite = true } }

// WithToken requires token on every request: as "Authorization: Bearer",
// as the cookie the console sets after "?token=…" was opened once, or as
// the query parameter itself. Default: no token, and only requests with a
// loopback Host header are served.
func WithToken(token string) Option { return func(c *Console) { c.token = token } }

// WithLogger logs failed requests and the follower's trouble. Default:
// silent.
func WithLogger(l *slog.Logger) Option { return func(c *Console) { c.log = l } }

// WithSampleEvery sets how often the console samples the topics for their
// rate chart. Default 2 s.
func WithSampleEvery(d time.Duration) Option { return func(c *Console) { c.sampleEvery = d } }

// WithFollow sets the pattern the console's own follower follows, from new
// events on, to count events and see losses and reconnects. Default "*";
// "" turns the follower off.
func WithFollow(pattern string) Option { return func(c *Console) { c.follow = pattern } }

// ErrWritesOff is the error of a write to a console without WithWrites.
var ErrWritesOff = errors.New("console: writes are off: this console was started without --allow-write; restart it with durabus serve --allow-write to requeue (or use durabus dead requeue TOPIC)")

// Console serves the web console. Create it with New, serve Handler, and
// run Run for the rate samples and the console's own follower. Its methods
// are safe for concurrent use.
type Console struct {
	src         Source
	allowWrite  bool
	token       string
	log         *slog.Logger
	sampleEvery time.Duration
	follow      string
	started     time.Time

	mu       sync.Mutex
	snap     *Snapshot // the last snapshot read, nil before the first
	snapErr  error     // the error of the last read, if it failed
	snapAt   time.Time
	samples  map[string][]sample // per topic, the last minute of head samples
	notices  []Notice            // newest last, at most maxNotices
	counts   noticeCounts
	followed followState
}

// Notice is something the console's followers reported: a loss, a
// reconnect, an error.
type Notice struct {
	Time time.Time
	// Kind is "loss", "reconnect" or "error".
	Kind string
	// Topic is the topic concerned, when known.
	Topic string
	// Lost is the number of events lost, for a loss with a known end.
	Lost    uint64
	Message string
}

type noticeCounts struct {
	losses, lost, reconnects, errors int
}

type followState struct {
	pattern string
	since   time.Time
	events  uint64
	perTop  map[string]uint64
	running bool
	err     string
}

const maxNotices = 500

// New returns a console over src.
func New(src Source, opts ...Option) (*Console, error) {
	if src == nil {
		return nil, errors.New("console: nil Source")
	}
	c := &Console{
		src:         src,
		log:         slog.New(slog.DiscardHandler),
		sampleEvery: 2 * time.Second,
		follow:      "*",
		samples:     map[string][]sample{},
		started:     time.Now(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.sampleEvery <= 0 {
		return nil, fmt.Errorf("console: sample interval %v: want more than 0", c.sampleEvery)
	}
	c.followed.perTop = map[string]uint64{}
	return c, nil
}

// Report records a notice for the "Losses & reconnects" page; the CLI
// passes the reconnects and errors of its bus's followers here.
func (c *Console) Report(n Notice) {
	if n.Time.IsZero() {
		n.Time = time.Now()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch n.Kind {
	case "loss":
		c.counts.losses++
		c.counts.lost += int(n.Lost)
	case "reconnect":
		c.counts.reconnects++
	default:
		c.counts.errors++
	}
	c.notices = append(c.notices, n)
	if len(c.notices) > maxNotices {
		c.notices = append(c.notices[:0], c.notices[len(c.notices)-maxNotices:]...)
	}
}

// reportErr records err from a follower: a loss or an error.
func (c *Console) reportErr(source string, err error) {
	var le *replay.LossError
	if errors.As(err, &le) {
		c.Report(Notice{Kind: "loss", Topic: le.Topic, Lost: le.Count(), Message: source + ": " + le.Error()})
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	c.Report(Notice{Kind: "error", Message: source + ": " + err.Error()})
}

// Run samples the topics for their rates and runs the console's own
// follower until ctx ends. It returns nil then.
func (c *Console) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if c.follow != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.runFollower(ctx)
		}()
	}
	t := time.NewTicker(c.sampleEvery)
	defer t.Stop()
	for {
		c.refresh(ctx)
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// runFollower follows c.follow from new events, counts what it sees and
// records its losses and errors; it restarts after the tail ends early.
func (c *Console) runFollower(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.Lock()
		c.followed.pattern, c.followed.since, c.followed.running, c.followed.err = c.follow, time.Now(), true, ""
		c.mu.Unlock()
		for e, err := range c.src.Tail(ctx, c.follow, Start{}) {
			if err != nil {
				c.reportErr("console follower", err)
				continue
			}
			c.mu.Lock()
			c.followed.events++
			c.followed.perTop[e.Topic]++
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.followed.running = false
		c.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		c.Report(Notice{Kind: "error", Message: "console follower stopped; starting it again in 2s"})
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// refresh reads a snapshot, keeps it and adds its heads to the samples.
func (c *Console) refresh(ctx context.Context) (*Snapshot, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := c.src.Snapshot(rctx)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapAt = now
	if err != nil {
		c.snapErr = err
		return c.snap, err
	}
	c.snap, c.snapErr = s, nil
	c.addSamples(s, now)
	return s, nil
}

// current returns a snapshot at most maxAge old, reading a new one when
// the last is older.
func (c *Console) current(ctx context.Context, maxAge time.Duration) (*Snapshot, error) {
	c.mu.Lock()
	s, err, at := c.snap, c.snapErr, c.snapAt
	c.mu.Unlock()
	if !at.IsZero() && time.Since(at) <= maxAge {
		return s, err
	}
	return c.refresh(ctx)
}
