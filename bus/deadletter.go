package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// DeadSuffix is appended to a topic's name to form its dead-letter topic:
// the dead letters of "orders" go to "orders.dead".
const DeadSuffix = ".dead"

// Extension attributes that a dead letter carries besides the original
// envelope (see NewDeadLetter). The names never change once data exists.
const (
	// ExtDeadError holds the text of the last error, at most
	// MaxDeadErrorLen bytes.
	ExtDeadError = "deaderror"
	// ExtDeadAttempts holds the number of handler calls made, in decimal.
	ExtDeadAttempts = "deadattempts"
	// ExtDeadTopic holds the topic the event was delivered from.
	ExtDeadTopic = "deadtopic"
	// ExtDeadEpoch and ExtDeadSeq hold the event's position in that topic.
	ExtDeadEpoch = "deadepoch"
	ExtDeadSeq   = "deadseq"
	// ExtDeadTime holds when the event was given up, RFC 3339 UTC.
	ExtDeadTime = "deadtime"
)

// MaxDeadErrorLen bounds the error text kept in ExtDeadError.
const MaxDeadErrorLen = 1024

// RequeueConsumer is the durable consumer name under which Requeue keeps,
// per dead-letter topic, the position of the last dead letter it
// re-published. It never changes once data exists.
const RequeueConsumer = "durabus.requeue"

// ErrRequeueSwallowed is returned by Requeue when the transport's
// idempotency window still remembers the event id and wrote nothing; wait
// for the window to pass or requeue with RequeueNewIDs.
var ErrRequeueSwallowed = errors.New("bus: requeue swallowed by the idempotency window")

// DeadLetterTopic returns the dead-letter topic of topic: topic + DeadSuffix.
func DeadLetterTopic(topic string) string { return topic + DeadSuffix }

// NewDeadLetter returns the dead letter of m: a copy of its envelope — same
// id, type, time, data and trace context — with the Ext* extensions set
// from m's position, cause and attempts (the handler calls made, ≥ 1).
// It does not change m. Middleware DeadLetter publishes it to
// DeadLetterTopic(m.Topic).
func NewDeadLetter(m *Message, cause error, attempts int) *envelope.Envelope {
	e := m.Envelope.Clone()
	if e.Extensions == nil {
		e.Extensions = make(map[string]string, 6)
	}
	text := "unknown error"
	if cause != nil {
		text = cause.Error()
	}
	if len(text) > MaxDeadErrorLen {
		text = strings.ToValidUTF8(text[:MaxDeadErrorLen], "")
	}
	if attempts < 1 {
		attempts = 1
	}
	e.Extensions[ExtDeadError] = text
	e.Extensions[ExtDeadAttempts] = strconv.Itoa(attempts)
	e.Extensions[ExtDeadTopic] = m.Topic
	e.Extensions[ExtDeadEpoch] = m.Position.Epoch
	e.Extensions[ExtDeadSeq] = strconv.FormatUint(m.Position.Seq, 10)
	e.Extensions[ExtDeadTime] = time.Now().UTC().Format(time.RFC3339Nano)
	return e
}

// DeadLetters returns up to limit dead letters of topic (read from the
// backlog of DeadLetterTopic(topic)) that Requeue has not re-published yet,
// oldest first; limit ≤ 0 means 100. Each Message's Topic and Position are
// those in the dead-letter topic; the Ext* extensions say where the event
// came from and why it failed. Entries that cannot be decoded are skipped
// and reported through WithOnError. A topic without dead letters gives an
// empty list and no error. Safe for concurrent use; it works on a bus that
// is not running.
func (b *Bus) DeadLetters(ctx context.Context, topic string, limit int) ([]*Message, error) {
	if limit <= 0 {
		limit = 100
	}
	dead := DeadLetterTopic(topic)
	if err := transport.ValidateTopic(dead); err != nil {
		return nil, fmt.Errorf("bus: dead letters of %q: %w", topic, err)
	}
	after, err := b.requeueCursor(ctx, dead)
	if err != nil {
		return nil, err
	}
	var out []*Message
	for len(out) < limit {
		want := limit - len(out)
		page, err := b.tr.Range(ctx, dead, after, want)
		if errors.Is(err, transport.ErrUnknownTopic) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("bus: dead letters of %q: %w", topic, err)
		}
		for _, d := range page.Events {
			after = d.Position
			m, err := b.decode(replay.Delivery{Delivery: d, Replayed: true})
			if err != nil {
				b.report(err)
				continue
			}
			out = append(out, m)
		}
		if len(page.Events) < want {
			break
		}
	}
	return out, nil
}

// RequeueOption configures Requeue.
type RequeueOption func(*requeueConfig)

type requeueConfig struct {
	limit int
	newID bool
}

// RequeueLimit re-publishes at most n dead letters. Default: all of them.
func RequeueLimit(n int) RequeueOption { return func(c *requeueConfig) { c.limit = n } }

// RequeueNewIDs gives every re-published event a new id instead of its
// own. Default: keep the id, so that the Dedupe middleware and traces
// recognise the event and a requeue repeated after a crash is dropped as a
// duplicate by Dedupe. Use it when the transport's idempotency window would
// swallow the same id (ErrRequeueSwallowed).
func RequeueNewIDs() RequeueOption { return func(c *requeueConfig) { c.newID = true } }

// Requeue re-publishes the dead letters of topic that were not requeued
// before, oldest first, each to the topic it came from (its ExtDeadTopic,
// else topic), as its original envelope: the Ext* extensions removed, the
// same id (see RequeueNewIDs), time, data and trace context. It returns
// how many it re-published.
//
// Progress is saved as a checkpoint of the durable consumer RequeueConsumer
// after every re-publish, so a second call continues where the first one
// stopped and DeadLetters no longer lists what was requeued; a crash
// between a publish and its checkpoint requeues that one event twice (with
// the same id, Dedupe drops the second). Undecodable entries are skipped and
// reported through WithOnError. Requeue is not meant to run concurrently
// with itself on one topic.
func (b *Bus) Requeue(ctx context.Context, topic string, opts ...RequeueOption) (int, error) {
	var rc requeueConfig
	for _, o := range opts {
		o(&rc)
	}
	dead := DeadLetterTopic(topic)
	if err := transport.ValidateTopic(dead); err != nil {
		return 0, fmt.Errorf("bus: requeue %q: %w", topic, err)
	}
	n := 0
	for rc.limit <= 0 || n < rc.limit {
		batch := 100
		if rc.limit > 0 && rc.limit-n < batch {
			batch = rc.limit - n
		}
		ms, err := b.DeadLetters(ctx, topic, batch)
		if err != nil {
			return n, err
		}
		if len(ms) == 0 {
			return n, nil
		}
		for _, m := range ms {
			if err := b.requeueOne(ctx, topic, m, rc.newID); err != nil {
				return n, err
			}
			store, err := b.checkpointStore()
			if err != nil {
				return n, err
			}
			if err := store.SaveCheckpoints(ctx, RequeueConsumer, map[string]transport.Position{dead: m.Position}); err != nil {
				return n + 1, fmt.Errorf("bus: requeue %q: save progress: %w", topic, err)
			}
			n++
		}
	}
	return n, nil
}

func (b *Bus) requeueOne(ctx context.Context, topic string, m *Message, newID bool) error {
	e := m.Envelope.Clone()
	dest := e.Extensions[ExtDeadTopic]
	if dest == "" {
		dest = topic
	}
	epoch, seq := e.Extensions[ExtDeadEpoch], e.Extensions[ExtDeadSeq]
	for _, k := range []string{ExtDeadError, ExtDeadAttempts, ExtDeadTopic, ExtDeadEpoch, ExtDeadSeq, ExtDeadTime} {
		delete(e.Extensions, k)
	}
	if len(e.Extensions) == 0 {
		e.Extensions = nil
	} else {
		e.Extensions = maps.Clone(e.Extensions)
	}
	if newID {
		e.ID = envelope.NewID()
	}
	pos, err := b.PublishEnvelope(ctx, dest, e)
	if err != nil {
		return fmt.Errorf("bus: requeue event %s to %q: %w", m.ID, dest, err)
	}
	if s, perr := strconv.ParseUint(seq, 10, 64); perr == nil && !newID && pos.Epoch == epoch && pos.Seq <= s {
		return fmt.Errorf("bus: requeue event %s to %q: %w (it returned the original position %s)", m.ID, dest, ErrRequeueSwallowed, pos)
	}
	return nil
}

func (b *Bus) requeueCursor(ctx context.Context, dead string) (transport.Position, error) {
	store, err := b.checkpointStore()
	if err != nil {
		return transport.Position{}, err
	}
	cps, err := store.LoadCheckpoints(ctx, RequeueConsumer)
	if err != nil {
		return transport.Position{}, fmt.Errorf("bus: load requeue progress of %q: %w", dead, err)
	}
	return cps[dead], nil
}

// checkpointStore is the transport's checkpoint storage, which dead-letter
// progress and durable consumers need.
func (b *Bus) checkpointStore() (transport.CheckpointStore, error) {
	if s, ok := b.tr.(transport.CheckpointStore); ok && transport.FeaturesOf(b.tr).Checkpoints {
		return s, nil
	}
	return nil, fmt.Errorf("bus: the transport %T stores no checkpoints (transport.CheckpointStore): %w", b.tr, errors.ErrUnsupported)
}
