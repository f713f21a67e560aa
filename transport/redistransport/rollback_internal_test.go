package redistransport

import (
	"testing"

	"github.com/durabus/durabus/transport"
)

// ackStep is one acknowledgement read by a publisher: the reply's position
// and the snapshot of its call (the highest acknowledgement when it was
// sent), and the marker it must yield (nil: none).
type ackStep struct {
	pos  transport.Position
	sent int // index of the step whose state the call saw when sent; -1: none
	want *rollbackMark
}

func pos(epoch string, seq uint64, id string) transport.Position {
	return transport.Position{Epoch: epoch, Seq: seq, ID: id}
}

// runAcks feeds steps to one topic's acks, each with the snapshot taken
// after step sent (so that a call is sent before replies that come later).
func runAcks(t *testing.T, steps []ackStep) {
	t.Helper()
	var a acks
	snaps := make([]ackRef, len(steps))
	for i, s := range steps {
		var sent ackRef
		if s.sent >= 0 {
			sent = snaps[s.sent]
		}
		got := a.ack(s.pos, sent)
		snaps[i] = a.snapshot()
		switch {
		case got == nil && s.want == nil:
		case got == nil || s.want == nil || *got != *s.want:
			t.Fatalf("step %d (%v sent after step %d): marker %+v, want %+v", i, s.pos, s.sent, got, s.want)
		}
	}
}

func TestRollbackDetection(t *testing.T) {
	const e = "e1"
	t.Run("in order, no rollback", func(t *testing.T) {
		runAcks(t, []ackStep{
			{pos(e, 1, "100-0"), -1, nil},
			{pos(e, 2, "100-1"), 0, nil},
			{pos(e, 3, "101-0"), 1, nil},
		})
	})
	t.Run("out-of-order replies do not count", func(t *testing.T) {
		// Four calls sent after seq 1, their replies read 5, 3, 2, 4.
		runAcks(t, []ackStep{
			{pos(e, 1, "100-0"), -1, nil},
			{pos(e, 5, "104-0"), 0, nil},
			{pos(e, 3, "102-0"), 0, nil},
			{pos(e, 2, "101-0"), 0, nil},
			{pos(e, 4, "103-0"), 0, nil},
			{pos(e, 6, "105-0"), 4, nil},
		})
	})
	t.Run("reused seq with a later stream id", func(t *testing.T) {
		runAcks(t, []ackStep{
			{pos(e, 19, "100-0"), -1, nil},
			{pos(e, 20, "101-0"), 0, nil},
			{pos(e, 16, "200-0"), 1, &rollbackMark{epoch: e, from: 16, to: 20, after: "101-0"}},
			// The rest of the same rollback, and a late reply of it: once.
			{pos(e, 17, "200-1"), 2, nil},
			{pos(e, 19, "200-3"), 2, nil},
			{pos(e, 18, "200-2"), 2, nil},
			{pos(e, 21, "201-0"), 5, nil},
		})
	})
	t.Run("stream ids compare as numbers", func(t *testing.T) {
		runAcks(t, []ackStep{
			{pos(e, 5, "99-9"), -1, nil},
			{pos(e, 5, "100-0"), 0, &rollbackMark{epoch: e, from: 5, to: 5, after: "99-9"}},
			{pos(e, 6, "1700000000000-9"), 1, nil},
			{pos(e, 6, "1700000000000-10"), 2, &rollbackMark{epoch: e, from: 6, to: 6, after: "1700000000000-9"}},
			{pos(e, 6, "1700000000000-8"), 2, nil}, // earlier: late
		})
	})
	t.Run("reused seq read after a later call's reply", func(t *testing.T) {
		// Acked up to 20; Redis goes back to 15. Two calls sent after 20
		// get 16 and 21; the reply of 21 is read first.
		runAcks(t, []ackStep{
			{pos(e, 20, "100-0"), -1, nil},
			{pos(e, 21, "200-5"), 0, nil},
			{pos(e, 16, "200-0"), 0, &rollbackMark{epoch: e, from: 16, to: 20, after: "100-0"}},
			{pos(e, 17, "200-1"), 0, nil}, // same rollback, found already
			{pos(e, 22, "201-0"), 3, nil},
		})
	})
	t.Run("another epoch is no rollback", func(t *testing.T) {
		runAcks(t, []ackStep{
			{pos(e, 20, "100-0"), -1, nil},
			{pos("e2", 1, "200-0"), 0, nil},
			{pos(e, 19, "99-0"), 0, nil}, // a late reply of the old epoch
			{pos("e2", 2, "200-1"), 1, nil},
			{pos(e, 5, "300-0"), 0, nil}, // e is not the current epoch
		})
	})
	t.Run("an idempotent duplicate is no rollback", func(t *testing.T) {
		// The reply of a duplicate carries the first write's position.
		runAcks(t, []ackStep{
			{pos(e, 3, "100-0"), -1, nil},
			{pos(e, 4, "101-0"), 0, nil},
			{pos(e, 3, "100-0"), 1, nil},
		})
	})
}

// A marker that could not be written is written with the next
// acknowledgement, merged with a later one of the same epoch.
func TestRollbackMarkPendingMerge(t *testing.T) {
	var a acks
	a.ack(pos("e", 20, "100-0"), ackRef{})
	m := a.ack(pos("e", 16, "200-0"), a.snapshot())
	if m == nil || m.from != 16 || m.to != 20 {
		t.Fatalf("marker %+v", m)
	}
	a.retry(m) // its write failed
	got := a.ack(pos("e", 17, "200-1"), a.snapshot())
	if got == nil || *got != *m {
		t.Fatalf("pending marker %+v, want %+v", got, m)
	}
	a.ack(pos("e", 30, "300-0"), ackRef{})
	a.retry(got)                                     // failed again
	got = a.ack(pos("e", 25, "400-0"), a.snapshot()) // a second rollback
	if want := (rollbackMark{epoch: "e", from: 16, to: 30, after: "100-0"}); got == nil || *got != want {
		t.Fatalf("merged marker %+v, want %+v", got, want)
	}
}
