package replay

import (
	"sync/atomic"

	"github.com/durabus/durabus/transport"
)

type counters struct {
	delivered, replayed, duplicates, gaps, repairs, headRepairs atomic.Uint64
	lost, lossReports, reconnects, malformed, overflows         atomic.Uint64
	handlerErrors, checkpoints                                  atomic.Uint64
	nacks                                                       atomic.Uint64
}

// Stats is a snapshot of a follower's counters and cursors.
type Stats struct {
	// Delivered counts handler calls that succeeded; Replayed those of them
	// whose event came from the backlog.
	Delivered, Replayed uint64
	// Duplicates counts events dropped because the cursor was already past
	// them (the same event live and from the backlog, or a stale frame).
	Duplicates uint64
	// Gaps counts live frames that revealed a hole (or a new epoch);
	// Repairs counts completed backlog reads; HeadRepairs the repairs that
	// the head check started.
	Gaps, Repairs, HeadRepairs uint64
	// Lost counts events reported lost with a known range; LossReports
	// counts *LossError reports (including those of unknown size).
	Lost, LossReports uint64
	// Reconnects counts re-established live connections.
	Reconnects uint64
	// Malformed counts skipped frames that could not be parsed; Overflows
	// live frames dropped because a topic's inbox was full (then repaired).
	Malformed, Overflows uint64
	// HandlerErrors counts failed handler calls (each retried); Nacks the
	// calls that returned Nack (delivered again soon, not counted as
	// failures).
	HandlerErrors, Nacks uint64
	// Checkpoints counts checkpoint saves of a durable consumer.
	Checkpoints uint64
	// Connected is true while the live subscription is up.
	Connected bool
	// Topics has one entry per followed topic, sorted by name.
	Topics []TopicStats
}

// TopicStats is a topic's cursor and head: the head seen at the last head
// check, or the cursor when that is further.
type TopicStats struct {
	Topic  string
	Cursor transport.Position
	Head   transport.Position
	// Lag is Head.Seq − Cursor.Seq when both are in one epoch, else 0.
	Lag uint64
}

// Stats returns a snapshot of the follower's counters and cursors.
func (f *Follower) Stats() Stats {
	s := Stats{
		Delivered:     f.c.delivered.Load(),
		Replayed:      f.c.replayed.Load(),
		Duplicates:    f.c.duplicates.Load(),
		Gaps:          f.c.gaps.Load(),
		Repairs:       f.c.repairs.Load(),
		HeadRepairs:   f.c.headRepairs.Load(),
		Lost:          f.c.lost.Load(),
		LossReports:   f.c.lossReports.Load(),
		Reconnects:    f.c.reconnects.Load(),
		Malformed:     f.c.malformed.Load(),
		Overflows:     f.c.overflows.Load(),
		HandlerErrors: f.c.handlerErrors.Load(),
		Nacks:         f.c.nacks.Load(),
		Checkpoints:   f.c.checkpoints.Load(),
		Connected:     f.connected.Load(),
	}
	f.mu.Lock()
	for _, t := range sortedTopics(f.workers) {
		w := f.workers[t]
		w.mu.Lock()
		ts := TopicStats{Topic: t, Cursor: w.shown, Head: w.head}
		w.mu.Unlock()
		if ts.Head.Epoch == "" || ts.Head.Epoch == ts.Cursor.Epoch && ts.Head.Seq < ts.Cursor.Seq {
			ts.Head = ts.Cursor // the head check ran before the latest events
		}
		if ts.Head.Epoch == ts.Cursor.Epoch && ts.Head.Seq > ts.Cursor.Seq {
			ts.Lag = ts.Head.Seq - ts.Cursor.Seq
		}
		s.Topics = append(s.Topics, ts)
	}
	f.mu.Unlock()
	return s
}
