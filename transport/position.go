package transport

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is where an event sits in its topic: the epoch of the topic's log,
// the event's sequence number in that epoch (1, 2, 3, … without holes), and
// the back end's own id for the backlog entry (a Redis stream id such as
// "1700000000000-0").
//
// Positions are comparable with ==; seq order is meaningful only within one
// epoch. The zero Position means "before anything".
type Position struct {
	Epoch string
	Seq   uint64
	ID    string
}

// IsZero reports whether p is the zero Position.
func (p Position) IsZero() bool { return p == Position{} }

// String formats p as "epoch:seq:id", the form ParsePosition reads and the
// one checkpoints are stored in.
func (p Position) String() string {
	return p.Epoch + ":" + strconv.FormatUint(p.Seq, 10) + ":" + p.ID
}

// ParsePosition parses the "epoch:seq:id" form of Position.String.
// The empty string parses as the zero Position.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	epoch, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Position{}, fmt.Errorf("transport: position %q: want epoch:seq:id", s)
	}
	seqText, id, ok := strings.Cut(rest, ":")
	if !ok {
		return Position{}, fmt.Errorf("transport: position %q: want epoch:seq:id", s)
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("transport: position %q: bad seq: %w", s, err)
	}
	if strings.Contains(epoch, ":") || epoch == "" && (seq != 0 || id != "") {
		return Position{}, fmt.Errorf("transport: position %q: bad epoch", s)
	}
	return Position{Epoch: epoch, Seq: seq, ID: id}, nil
}
