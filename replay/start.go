package replay

import (
	"time"

	"github.com/durabus/durabus/transport"
)

type startKind uint8

const (
	startNew startKind = iota
	startBeginning
	startSince
	startAfter
)

// Start says where a follower begins on a topic for which its consumer has
// no saved checkpoint. The zero Start is NewOnly.
type Start struct {
	kind startKind
	t    time.Time
	pos  transport.Position
}

// NewOnly starts after the last event published before the follower
// subscribed: only new events are delivered. It is the default.
func NewOnly() Start { return Start{kind: startNew} }

// Beginning starts at the oldest event the backlog still holds. Events
// trimmed before the follower started are not reported as lost.
func Beginning() Start { return Start{kind: startBeginning} }

// Since starts at the first event whose publish time is at or after t.
func Since(t time.Time) Start { return Start{kind: startSince, t: t} }

// After starts right after pos, for example a position saved by the caller.
// When pos belongs to another epoch of the topic's log, the events between
// pos and the reset are reported as lost.
func After(pos transport.Position) Start { return Start{kind: startAfter, pos: pos} }

// String describes s, for logs.
func (s Start) String() string {
	switch s.kind {
	case startBeginning:
		return "beginning"
	case startSince:
		return "since " + s.t.UTC().Format(time.RFC3339Nano)
	case startAfter:
		return "after " + s.pos.String()
	}
	return "new"
}
