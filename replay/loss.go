package replay

import (
	"errors"
	"fmt"
)

// ErrLoss is matched by every *LossError (errors.Is).
var ErrLoss = errors.New("replay: events lost")

// LossReason says why events could not be delivered.
type LossReason string

const (
	// Trimmed: the backlog's retention removed the events before the
	// follower could read them.
	Trimmed LossReason = "trimmed from backlog"
	// EpochChanged: the topic's log was deleted or reset (for example by
	// eviction or a failover to a replica that lacked it); what followed the
	// cursor in the old log cannot be known. To is zero: the end is unknown.
	// When the follower goes on in a new log, Next names its epoch, and the
	// report stands for everything published after seq From-1 of Epoch and
	// before the first event of that log, including the events of any log
	// that came and went unseen in between (under allkeys-* eviction a log
	// can live and vanish between two reads). When Next was made over the
	// old log before it vanished, its seqs go on from the old log's: the
	// loss then ends at the seq before the new log's first event.
	//
	// A live frame whose entry is gone with its log is reported on its own,
	// as From = To = its seq of its epoch.
	EpochChanged LossReason = "log reset (new epoch)"
	// Missing: a live frame arrived whose predecessors the backlog did not
	// hold (only possible when Redis lost writes, e.g. on a failover).
	Missing LossReason = "missing from backlog"
	// RolledBack: Redis lost acknowledged writes (a crash with appendfsync
	// everysec, a failover to a lagging replica) and handed their seqs out
	// again in the same epoch. From..To are the seqs whose first events were
	// delivered but are gone from Redis; the events that now carry those
	// seqs are delivered next.
	RolledBack LossReason = "rolled back by Redis (seqs reused)"
	// CheckpointLost: a durable consumer's saved position on the topic
	// vanished (evicted under a maxmemory policy, or deleted by hand) while
	// its record says it had one. What it had not handled yet cannot be
	// told from what it had: From and To are zero, and the topic is followed
	// again from the oldest event its backlog holds (at-least-once: events
	// handled before are delivered again).
	CheckpointLost LossReason = "durable consumer's checkpoint vanished"
)

// LossError reports events that can no longer be delivered: seq From to To
// (inclusive) of Topic in Epoch. To is zero when the end is unknown.
type LossError struct {
	Topic    string
	Epoch    string
	From, To uint64
	Reason   LossReason
	// Next, for EpochChanged, is the epoch of the log followed from now on:
	// the loss runs from From in Epoch up to Next's first event. It is empty
	// for the other reasons.
	Next string
}

func (e *LossError) Error() string {
	if e.From == 0 && e.To == 0 {
		return fmt.Sprintf("replay: topic %q: events may be lost, range unknown: %s", e.Topic, e.Reason)
	}
	if e.To == 0 && e.Next != "" {
		return fmt.Sprintf("replay: topic %q: events from seq %d of epoch %s up to epoch %s lost: %s", e.Topic, e.From, e.Epoch, e.Next, e.Reason)
	}
	if e.To == 0 {
		return fmt.Sprintf("replay: topic %q: events from seq %d of epoch %s lost: %s", e.Topic, e.From, e.Epoch, e.Reason)
	}
	return fmt.Sprintf("replay: topic %q: %d event(s) lost, seq %d..%d of epoch %s: %s", e.Topic, e.Count(), e.From, e.To, e.Epoch, e.Reason)
}

// Count returns the number of lost events, or 0 when unknown.
func (e *LossError) Count() uint64 {
	if e.To == 0 || e.To < e.From {
		return 0
	}
	return e.To - e.From + 1
}

// Is makes errors.Is(err, ErrLoss) true.
func (e *LossError) Is(target error) bool { return target == ErrLoss }
