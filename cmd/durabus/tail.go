package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

type tailOpts struct {
	since, until string
}

func init() {
	register(&command{
		name:    "tail",
		args:    "PATTERN",
		summary: "follow a topic or a glob of topics live, with replay",
		help: `Prints the events of the topics matching PATTERN (a topic name or a glob
such as "orders.*") as they are published, one per line: time, topic,
epoch:seq (the seq within the log's epoch: after a reset seqs start again
at 1 in a new epoch), type (and version when above 1), event id and data. With --json each line is
an object {topic, epoch, seq, streamid, replayed, event}.

--since starts in the backlog: "beginning", a duration ago such as 10m, an
RFC 3339 time, a seq number N (from seq N on) or a position epoch:seq:id
(after that event, as checkpoints are kept); the last two for a single
topic. Default: new events only. The tail repairs gaps and
reconnects on its own; lost events (trimmed from the backlog) are reported
on stderr.

--until stops it: at a time (a duration ago, +30s from now, RFC 3339;
events published after it are not printed) or after a seq or position of a
single topic. With a time in the past the tail works as replay does: it
prints the backlog from --since up to that time and ends at the heads of
the topics as of its start. Ctrl-C ends it cleanly.`,
		flags: func(fs *flag.FlagSet) any {
			o := &tailOpts{}
			fs.StringVar(&o.since, "since", "new", "where to start: `WHEN` is new, beginning, 10m, RFC 3339, seq or epoch:seq:id")
			fs.StringVar(&o.until, "until", "", "stop at `WHEN`: a time (10m ago, +30s, RFC 3339), a seq or epoch:seq:id")
			return o
		},
		run: runTail,
	})
}

func runTail(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*tailOpts)
	if len(args) != 1 {
		return usagef("tail: want exactly one PATTERN, got %d arguments", len(args))
	}
	pattern := args[0]
	isPattern := transport.IsPattern(pattern)
	if isPattern {
		if err := transport.ValidatePattern(pattern); err != nil {
			return usagef("tail: %v", err)
		}
	} else if err := transport.ValidateTopic(pattern); err != nil {
		return usagef("tail: %v", err)
	}
	now := time.Now()
	since, err := parsePoint("since", o.since, now)
	if err != nil {
		return err
	}
	until, hasUntil, err := untilPoint(o.until, now)
	if err != nil {
		return err
	}
	if isPattern && (since.kind == pointSeq || since.kind == pointPos || until.kind == pointSeq || until.kind == pointPos) {
		return usagef("tail: a seq or position in --since or --until needs a single topic, not the pattern %q", pattern)
	}
	// An --until in the past makes the tail a replay: it ends at the heads
	// of the topics as of the start. From new events on it has nothing to
	// show.
	pastUntil := hasUntil && until.kind == pointTime && !until.t.After(now)
	if pastUntil && since.kind == pointNew {
		return usagef("tail: --until %s is in the past and the tail starts with new events: nothing to show; add --since (e.g. --since 1h), or use durabus replay", o.until)
	}
	w := &warner{w: e.stderr}
	c, err := connect(ctx, e, bus.WithFollowerOptions(
		replay.WithOnError(w.warn),
		replay.WithOnReconnect(func(reason string) {
			w.note(fmt.Sprintf("live connection back (%s); repairing from the backlog", reason))
		})))
	if err != nil {
		return err
	}
	defer c.Close()

	start, err := startOf(ctx, c.tr, pattern, since)
	if err != nil {
		return err
	}
	var ends map[string]transport.Position // with pastUntil: the topics' heads at the start
	if pastUntil {
		if ends, err = headsOf(ctx, c.tr, pattern, isPattern); err != nil || len(ends) == 0 {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if hasUntil && until.kind == pointTime && !pastUntil {
		stop := time.AfterFunc(time.Until(until.t), cancel)
		defer stop.Stop()
	}
	for m, err := range c.bus.Events(ctx, pattern, bus.StartAt(start)) {
		if err != nil {
			var le *replay.LossError
			if errors.As(err, &le) {
				fmt.Fprintf(e.stderr, "durabus: warning: %v\n", err)
				continue
			}
			if errors.Is(err, context.Canceled) {
				break
			}
			var de *bus.DeliveryError
			if errors.As(err, &de) {
				fmt.Fprintf(e.stderr, "durabus: warning: %v\n", err)
				continue
			}
			return err
		}
		if ends != nil {
			end, ok := ends[m.Topic]
			if !ok {
				continue // a topic made after the start, or done
			}
			if m.Position.Epoch != end.Epoch || m.Position.Seq > end.Seq || until.past(m.Position, m.Time) {
				delete(ends, m.Topic)
			} else {
				if err := printMessage(e, m); err != nil {
					return err
				}
				if m.Position.Seq == end.Seq {
					delete(ends, m.Topic)
				}
			}
			if len(ends) == 0 {
				break
			}
			continue
		}
		if hasUntil && until.past(m.Position, m.Time) {
			if !isPattern {
				break
			}
			continue // other topics may still have earlier events
		}
		if err := printMessage(e, m); err != nil {
			return err
		}
		if hasUntil && until.reached(m.Position) {
			break
		}
	}
	return nil
}

// headsOf returns the head of topic, or of every topic matching the
// pattern, that has a log.
func headsOf(ctx context.Context, tr interface {
	transport.Transport
	transport.TopicLister
}, pattern string, isPattern bool) (map[string]transport.Position, error) {
	topics := []string{pattern}
	if isPattern {
		var err error
		if topics, err = tr.Topics(ctx, pattern); err != nil {
			return nil, err
		}
	}
	heads := make(map[string]transport.Position, len(topics))
	for _, t := range topics {
		h, err := tr.Head(ctx, t)
		if errors.Is(err, transport.ErrUnknownTopic) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if h.Seq > 0 {
			heads[t] = h
		}
	}
	return heads, nil
}

// printMessage prints a delivered message as tail does.
func printMessage(e *env, m *bus.Message) error {
	if e.json {
		data, err := m.Envelope.Encode()
		if err != nil {
			return err
		}
		r := newRecord(m.Topic, m.Position, data)
		r.Replayed = m.Replayed
		return writeJSONLine(e.stdout, r)
	}
	_, err := fmt.Fprintln(e.stdout, humanEvent(m.Topic, m.Position, m.Time, m.Type, m.Version, m.ID, m.Data))
	return err
}

// startOf turns a --since point into a follower start; a seq needs the
// topic's current epoch.
func startOf(ctx context.Context, tr transport.Transport, topic string, p point) (replay.Start, error) {
	switch p.kind {
	case pointBeginning:
		return replay.Beginning(), nil
	case pointTime:
		return replay.Since(p.t), nil
	case pointPos:
		return replay.After(p.pos), nil
	case pointSeq:
		head, err := tr.Head(ctx, topic)
		if errors.Is(err, transport.ErrUnknownTopic) {
			return replay.Start{}, fmt.Errorf("topic %q has no events yet: --since %d needs its log", topic, p.seq)
		}
		if err != nil {
			return replay.Start{}, err
		}
		return replay.After(transport.Position{Epoch: head.Epoch, Seq: p.seq - 1}), nil
	}
	return replay.NewOnly(), nil
}

// warner prints the follower's trouble on stderr, at most one line per
// warnEvery so that a Redis that stays down does not flood the terminal.
type warner struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time
}

const warnEvery = 5 * time.Second

func (w *warner) warn(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.last) < warnEvery {
		return
	}
	w.last = time.Now()
	fmt.Fprintf(w.w, "durabus: warning: %s (retrying)\n", oneLine(err.Error()))
}

func (w *warner) note(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.w, "durabus: %s\n", msg)
}
