package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/durabus/durabus/transport"
)

// record is the JSON line that tail --json, replay and dead list --json
// print for one event: where it sits, and the envelope as stored.
type record struct {
	Topic    string          `json:"topic"`
	Epoch    string          `json:"epoch"`
	Seq      uint64          `json:"seq"`
	StreamID string          `json:"streamid"`
	Replayed bool            `json:"replayed,omitempty"`
	Event    json.RawMessage `json:"event"`
}

func newRecord(topic string, pos transport.Position, event []byte) record {
	return record{Topic: topic, Epoch: pos.Epoch, Seq: pos.Seq, StreamID: pos.ID, Event: event}
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// pointKind says what a --since or --until value means.
type pointKind uint8

const (
	pointNew pointKind = iota
	pointBeginning
	pointTime
	pointSeq
	pointPos
)

// point is a parsed --since or --until value.
type point struct {
	kind pointKind
	t    time.Time
	seq  uint64
	pos  transport.Position
}

const pointForms = "new, beginning, a duration ago like 10m, +30s from now, an RFC 3339 time, a seq number or a position epoch:seq:id"

// parsePoint reads new, beginning (or all), now, a duration ago ("10m"), a
// duration from now ("+30s"), an RFC 3339 time, a seq number, or a position
// "epoch:seq:id".
func parsePoint(flagName, s string, now time.Time) (point, error) {
	switch s {
	case "new":
		return point{kind: pointNew}, nil
	case "beginning", "all":
		return point{kind: pointBeginning}, nil
	case "now":
		return point{kind: pointTime, t: now}, nil
	}
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		if d, err := time.ParseDuration(rest); err == nil && d >= 0 {
			return point{kind: pointTime, t: now.Add(d)}, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return point{kind: pointTime, t: now.Add(-d)}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return point{kind: pointTime, t: t}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil && n > 0 {
		return point{kind: pointSeq, seq: n}, nil
	}
	if p, err := transport.ParsePosition(s); err == nil && !p.IsZero() {
		return point{kind: pointPos, pos: p}, nil
	}
	return point{}, usagef("--%s %q: want %s", flagName, s, pointForms)
}

// untilPoint parses an --until value: a time or a position, not new or
// beginning. The zero point with ok false means no limit.
func untilPoint(s string, now time.Time) (p point, ok bool, err error) {
	if s == "" {
		return point{}, false, nil
	}
	p, err = parsePoint("until", s, now)
	if err != nil {
		return point{}, false, err
	}
	if p.kind == pointNew || p.kind == pointBeginning {
		return point{}, false, usagef("--until %q: want a time, a duration or a position", s)
	}
	return p, true, nil
}

// past reports whether an event at pos with time t lies after the --until
// point u.
func (u point) past(pos transport.Position, t time.Time) bool {
	switch u.kind {
	case pointTime:
		return t.After(u.t)
	case pointSeq:
		return pos.Seq > u.seq
	case pointPos:
		return pos.Epoch == u.pos.Epoch && pos.Seq > u.pos.Seq
	}
	return false
}

// reached reports whether the event at pos is the last one before the
// --until point u (for positions: nothing after it is wanted).
func (u point) reached(pos transport.Position) bool {
	switch u.kind {
	case pointSeq:
		return pos.Seq >= u.seq
	case pointPos:
		return pos.Epoch == u.pos.Epoch && pos.Seq >= u.pos.Seq
	}
	return false
}

// formatTime prints t for humans: UTC, milliseconds.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// humanEvent is the one-line form of an event in tail: its position is
// epoch:seq, so that events of two epochs (a log reset) never look alike.
func humanEvent(topic string, pos transport.Position, t time.Time, typ string, version int, id string, data []byte) string {
	v := ""
	if version > 1 {
		v = fmt.Sprintf(" v%d", version)
	}
	return fmt.Sprintf("%s  %s  %s:%d  %s%s  %s  %s", formatTime(t), topic, pos.Epoch, pos.Seq, typ, v, id, data)
}
