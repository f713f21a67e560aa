// Package memtransport is an in-process transport.Transport with a real
// backlog: per-topic logs with epochs, contiguous sequence numbers and
// Redis-style entry ids, retention by count and age, bounded live fan-out with
// Dropped signals, and consumer checkpoints. Nothing survives the process.
//
// It serves tests, examples and single-process programs. Its test hooks
// (DropFrames, Disconnect, Reconnect, Stall, DeleteTopic) reproduce the
// failures of a networked back end so that the follower's repair paths can
// be tested without Redis.
package memtransport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/durabus/durabus/transport"
)

// Defaults of the options.
const (
	DefaultMaxLen  = 100_000 // entries kept per topic
	DefaultMaxSize = 1 << 20 // bytes of Message.Data
	DefaultBuffer  = 1024    // frames queued per subscription
)

var (
	_ transport.Transport      = (*Transport)(nil)
	_ transport.PartitionStore = (*Transport)(nil)
)

// Option configures New.
type Option func(*Transport) error

// WithMaxLen keeps at most n entries per topic, trimming the oldest on
// publish. Default DefaultMaxLen; n <= 0 keeps every entry.
func WithMaxLen(n int) Option { return func(t *Transport) error { t.maxLen = n; return nil } }

// WithMaxAge trims, on publish, the entries published (by the transport's
// clock) more than d ago. Default 0: no age limit; a negative d is refused.
func WithMaxAge(d time.Duration) Option {
	return func(t *Transport) error {
		if d < 0 {
			return fmt.Errorf("WithMaxAge(%v): negative", d)
		}
		t.maxAge = d
		return nil
	}
}

// WithMaxSize rejects events whose Data is longer than n bytes with
// transport.ErrTooLarge. Default DefaultMaxSize; n <= 0 means no limit.
func WithMaxSize(n int) Option { return func(t *Transport) error { t.maxSize = n; return nil } }

// MaxSize returns the largest encoded event (the whole envelope) that
// Publish accepts, in bytes; 0 means no limit (WithMaxSize).
func (t *Transport) MaxSize() int { return max(t.maxSize, 0) }

// WithBuffer sets how many frames a subscription queues for a receiver
// that falls behind before it drops frames and signals Dropped.
// Default DefaultBuffer; n below 1 is refused.
func WithBuffer(n int) Option {
	return func(t *Transport) error {
		if n < 1 {
			return fmt.Errorf("WithBuffer(%d): want at least 1", n)
		}
		t.buffer = n
		return nil
	}
}

// WithClock replaces time.Now for entry ids and age retention (tests).
func WithClock(now func() time.Time) Option {
	return func(t *Transport) error {
		if now == nil {
			return errors.New("WithClock(nil)")
		}
		t.now = now
		return nil
	}
}

// Transport is the in-process transport. It is safe for concurrent use.
// Close ends its subscriptions; after Close every method returns an error
// wrapping transport.ErrClosed.
type Transport struct {
	maxLen  int
	maxAge  time.Duration
	maxSize int
	buffer  int
	now     func() time.Time

	// mu guards everything below and is held while a publish appends to
	// the log and enqueues its frames, so frame order equals log order.
	mu           sync.Mutex
	closed       bool
	logs         map[string]*topicLog
	subs         map[*subscription]struct{}
	checkpoints  map[string]map[string]transport.Position
	partitions   map[string]int // topic -> recorded partition count
	dropFn       func(topic string, seq uint64) bool
	disconnected bool

	groups groupState // consumer groups' membership (group.go)
	owners ownerState // durable consumers' leases (group.go)
}

type topicLog struct {
	epoch   string
	lastSeq uint64
	lastMs  int64
	lastN   uint64
	entries []entry
}

type entry struct {
	pos  transport.Position
	ms   int64     // millisecond part of pos.ID, for age retention
	time time.Time // Message.Time, for Seek
	data []byte
}

// New returns an empty transport. Invalid options are all reported, in an
// error that wraps transport.ErrInvalidOption.
func New(opts ...Option) (*Transport, error) {
	t := &Transport{
		maxLen:      DefaultMaxLen,
		maxSize:     DefaultMaxSize,
		buffer:      DefaultBuffer,
		now:         time.Now,
		logs:        make(map[string]*topicLog),
		subs:        make(map[*subscription]struct{}),
		checkpoints: make(map[string]map[string]transport.Position),
		partitions:  make(map[string]int),
	}
	var errs []error
	for _, o := range opts {
		if err := o(t); err != nil {
			errs = append(errs, fmt.Errorf("memtransport: %w: %w", transport.ErrInvalidOption, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func errClosed(op string) error { return fmt.Errorf("memtransport: %s: %w", op, transport.ErrClosed) }

// check validates msg without touching state.
func (t *Transport) check(msg transport.Message) error {
	if err := transport.ValidateTopic(msg.Topic); err != nil {
		return fmt.Errorf("memtransport: publish: %w", err)
	}
	if t.maxSize > 0 && len(msg.Data) > t.maxSize {
		return fmt.Errorf("memtransport: publish to %q: %d bytes, the limit is %d (WithMaxSize): %w",
			msg.Topic, len(msg.Data), t.maxSize, transport.ErrTooLarge)
	}
	return nil
}

// Publish appends msg to its topic's log and enqueues it for the live
// subscribers; it never waits for a receiver. Message.Time is kept for
// Seek; when it is zero, the transport's clock stands in.
func (t *Transport) Publish(ctx context.Context, msg transport.Message) (transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return transport.Position{}, err
	}
	if err := t.check(msg); err != nil {
		return transport.Position{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return transport.Position{}, errClosed("publish")
	}
	return t.appendLocked(msg), nil
}

// PublishBatch publishes the valid events of msgs in order and lists the
// invalid ones (bad topic, too large) in a *transport.BatchError; the valid
// ones are written even then. The whole batch is appended atomically with
// respect to other publishes.
func (t *Transport) PublishBatch(ctx context.Context, msgs []transport.Message) ([]transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	positions := make([]transport.Position, len(msgs))
	var be *transport.BatchError
	for i, m := range msgs {
		if err := t.check(m); err != nil {
			if be == nil {
				be = &transport.BatchError{Err: err}
			}
			be.Failed = append(be.Failed, i)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("publish batch")
	}
	failed := 0
	for i, m := range msgs {
		if be != nil && failed < len(be.Failed) && be.Failed[failed] == i {
			failed++
			continue
		}
		positions[i] = t.appendLocked(m)
	}
	if be != nil {
		return positions, be
	}
	return positions, nil
}

func (t *Transport) appendLocked(msg transport.Message) transport.Position {
	l := t.logs[msg.Topic]
	if l == nil {
		l = &topicLog{epoch: newEpoch()}
		t.logs[msg.Topic] = l
	}
	now := t.now()
	ms := now.UnixMilli()
	if ms > l.lastMs {
		l.lastMs, l.lastN = ms, 0
	} else {
		l.lastN++ // the clock stood still or went back: ids stay increasing
	}
	l.lastSeq++
	pos := transport.Position{
		Epoch: l.epoch,
		Seq:   l.lastSeq,
		ID:    strconv.FormatInt(l.lastMs, 10) + "-" + strconv.FormatUint(l.lastN, 10),
	}
	at := msg.Time
	if at.IsZero() {
		at = now
	}
	l.entries = append(l.entries, entry{pos: pos, ms: l.lastMs, time: at, data: clone(msg.Data)})
	l.trim(t.maxLen, t.maxAge, now)
	t.fanoutLocked(msg.Topic, pos, msg.Data)
	return pos
}

func (l *topicLog) trim(maxLen int, maxAge time.Duration, now time.Time) {
	n := 0
	if maxLen > 0 && len(l.entries) > maxLen {
		n = len(l.entries) - maxLen
	}
	if maxAge > 0 {
		cut := now.Add(-maxAge).UnixMilli()
		for n < len(l.entries) && l.entries[n].ms < cut {
			n++
		}
	}
	if n == 0 {
		return
	}
	clear(l.entries[:n]) // let the data go
	l.entries = l.entries[n:]
}

// Range returns up to limit events of topic after the given position; see
// transport.Transport. A limit below 1 returns an empty page.
func (t *Transport) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	if err := ctx.Err(); err != nil {
		return transport.Page{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.logLocked("range", topic)
	if err != nil {
		return transport.Page{}, err
	}
	page := transport.Page{Epoch: l.epoch}
	i := 0
	if after.Epoch == l.epoch && len(l.entries) > 0 {
		first := l.entries[0].pos.Seq
		if after.Seq >= first {
			i = int(min(after.Seq-first+1, uint64(len(l.entries))))
		}
	}
	for ; i < len(l.entries) && len(page.Events) < limit; i++ {
		e := l.entries[i]
		page.Events = append(page.Events, transport.Delivery{Topic: topic, Position: e.pos, Data: clone(e.data)})
	}
	return page, nil
}

// Seek returns the position just before the first event in log order whose
// Message.Time is at or after tm, or Head when there is none.
func (t *Transport) Seek(ctx context.Context, topic string, tm time.Time) (transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return transport.Position{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.logLocked("seek", topic)
	if err != nil {
		return transport.Position{}, err
	}
	for i, e := range l.entries {
		if e.time.Before(tm) {
			continue
		}
		if i > 0 {
			return l.entries[i-1].pos, nil
		}
		return transport.Position{Epoch: l.epoch, Seq: e.pos.Seq - 1, ID: prevID(e.pos.ID)}, nil
	}
	return l.headLocked(), nil
}

// Head returns the position of the last event published to topic.
func (t *Transport) Head(ctx context.Context, topic string) (transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return transport.Position{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	l, err := t.logLocked("head", topic)
	if err != nil {
		return transport.Position{}, err
	}
	return l.headLocked(), nil
}

func (l *topicLog) headLocked() transport.Position {
	return transport.Position{
		Epoch: l.epoch,
		Seq:   l.lastSeq,
		ID:    strconv.FormatInt(l.lastMs, 10) + "-" + strconv.FormatUint(l.lastN, 10),
	}
}

func (t *Transport) logLocked(op, topic string) (*topicLog, error) {
	if t.closed {
		return nil, errClosed(op)
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("memtransport: %s: %w", op, err)
	}
	l := t.logs[topic]
	if l == nil {
		return nil, fmt.Errorf("memtransport: %s %q: %w", op, topic, transport.ErrUnknownTopic)
	}
	return l, nil
}

// Topics lists the topics that have a log and match pattern ("" or "*" for
// all), sorted by name.
func (t *Transport) Topics(ctx context.Context, pattern string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if pattern == "" {
		pattern = "*"
	}
	if err := transport.ValidatePattern(pattern); err != nil {
		return nil, fmt.Errorf("memtransport: topics: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("topics")
	}
	var names []string
	for name := range t.logs {
		if transport.Match(pattern, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// SaveCheckpoints stores the positions of consumer, replacing earlier ones
// for the same topics.
func (t *Transport) SaveCheckpoints(ctx context.Context, consumer string, cps map[string]transport.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if consumer == "" {
		return fmt.Errorf("memtransport: save checkpoints: empty consumer name")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errClosed("save checkpoints")
	}
	m := t.checkpoints[consumer]
	if m == nil {
		m = make(map[string]transport.Position, len(cps))
		t.checkpoints[consumer] = m
	}
	for topic, p := range cps {
		m[topic] = p
	}
	return nil
}

// LoadCheckpoints returns a copy of the saved positions of consumer; an
// empty map when it has none.
func (t *Transport) LoadCheckpoints(ctx context.Context, consumer string) (map[string]transport.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("load checkpoints")
	}
	out := make(map[string]transport.Position, len(t.checkpoints[consumer]))
	for topic, p := range t.checkpoints[consumer] {
		out[topic] = p
	}
	return out, nil
}

// Partitions returns the partition count recorded for topic in this
// process, 0 when none is (transport.PartitionStore).
func (t *Transport) Partitions(ctx context.Context, topic string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return 0, fmt.Errorf("memtransport: partitions: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errClosed("partitions")
	}
	return t.partitions[topic], nil
}

// SetPartitions records n as the partition count of topic when the one
// recorded is old (transport.PartitionStore).
func (t *Transport) SetPartitions(ctx context.Context, topic string, old, n int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := transport.ValidatePartitions(topic, n); err != nil {
		return 0, fmt.Errorf("memtransport: set partitions: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, errClosed("set partitions")
	}
	cur := t.partitions[topic]
	if cur != old {
		return cur, nil
	}
	if cur == 0 && t.logs[topic] != nil {
		return 0, fmt.Errorf("memtransport: set partitions of %q: %w", topic, transport.ErrTopicHasEvents)
	}
	t.partitions[topic] = n
	return n, nil
}

// Close ends every subscription (their Err becomes transport.ErrClosed),
// waits for their goroutines, and makes every method return an error
// wrapping transport.ErrClosed, Close included.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return errClosed("close")
	}
	t.closed = true
	subs := make([]*subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.logs, t.checkpoints = nil, nil
	t.mu.Unlock()
	for _, s := range subs {
		s.end(transport.ErrClosed)
	}
	for _, s := range subs {
		<-s.done
	}
	return nil
}

// DeleteTopic is a test hook: it removes topic's log, as if its Redis keys
// were deleted. The next publish starts a new epoch at seq 1. Live
// subscriptions are not affected.
func (t *Transport) DeleteTopic(topic string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.logs, topic)
}

// DropFrames is a test hook that simulates silent Pub/Sub loss: live frames
// for which f returns true are not delivered to any subscription, with no
// Dropped signal; the backlog still holds them. f runs while the transport
// is locked and must not call the transport. nil removes the hook.
func (t *Transport) DropFrames(f func(topic string, seq uint64) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropFn = f
}

// Disconnect is a test hook: until Reconnect, live frames are lost silently
// for every subscription (the backlog still holds them).
func (t *Transport) Disconnect() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disconnected = true
}

// Stall is a test hook: like Disconnect, and every subscription receives a
// Stalled signal.
func (t *Transport) Stall() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disconnected = true
	t.signalLocked(transport.Event{Kind: transport.Stalled, Err: fmt.Errorf("memtransport: stalled by the test hook")})
}

// Reconnect is a test hook: it ends a Disconnect or Stall, and every
// subscription receives a Reconnected signal, queued after the frames it
// already holds.
func (t *Transport) Reconnect() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.disconnected = false
	t.signalLocked(transport.Event{Kind: transport.Reconnected})
}

func (t *Transport) signalLocked(ev transport.Event) {
	for s := range t.subs {
		s.signal(ev)
	}
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand doc)
	return hex.EncodeToString(b[:])
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// prevID returns the stream id just before id, "" when it has none.
func prevID(id string) string {
	sid, ok := transport.ParseStreamID(id)
	if !ok {
		return ""
	}
	prev, ok := sid.Prev()
	if !ok {
		return "0-0"
	}
	return prev.String()
}
