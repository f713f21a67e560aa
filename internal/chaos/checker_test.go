package chaos

import (
	"testing"

	"github.com/durabus/durabus/replay"
)

// The checker's own tests: a data run's history made by hand (no Redis, no
// subscribers, just what they would have recorded), on topic chaos.t1.

const checkerTopic = "chaos.t1"

// checkerWorld is such a history: what was written, acknowledged, handled
// and reported, and the final log.
type checkerWorld struct {
	d       *dataEnv
	final   *dataLog
	written map[int64]dataDel // k -> where it was written (epoch, seq, stream id)
}

func newCheckerWorld() *checkerWorld {
	return &checkerWorld{
		d:       &dataEnv{env: &env{h: newHistory()}, rec: newDataRec(), resets: true},
		final:   &dataLog{byK: map[int64]dataEntry{}, epochs: map[string]string{}},
		written: map[int64]dataDel{},
	}
}

// write is event k written at seq of epoch with stream id id; acked says
// whether its publisher was told so (a lost reply leaves it unacknowledged).
func (w *checkerWorld) write(k int64, epoch string, seq uint64, id string, acked bool) {
	w.written[k] = dataDel{k: k, topic: checkerTopic, epoch: epoch, seq: seq, id: id}
	w.d.h.attempt(k, checkerTopic)
	if acked {
		w.d.h.acked(k, epoch, seq, id)
	}
}

// keep makes the events ks the final log, read under epoch.
func (w *checkerWorld) keep(epoch string, ks ...int64) {
	w.final.epochs[checkerTopic] = epoch
	for _, k := range ks {
		e := w.written[k]
		w.final.byK[k] = dataEntry{topic: checkerTopic, seq: e.seq, id: e.id}
	}
}

// handle records sub handling the entries of events ks, read under epoch.
func (w *checkerWorld) handle(sub, epoch string, ks ...int64) {
	for _, k := range ks {
		dl := w.written[k]
		dl.epoch = epoch
		w.d.rec.delivered(sub, dl)
	}
}

// check runs the checker on sub and fails on anything but a clean verdict.
func (w *checkerWorld) check(t *testing.T, f *dataFacts, sub string) {
	t.Helper()
	v := checkData(f, sub, lruScenario, true)
	if v.lost != 0 || v.invalid != 0 || v.unexpected != 0 || v.reordered != 0 || v.dupInRun != 0 {
		t.Errorf("%s: lost %d, invalid %d, unexpected %d, reordered %d, twice %d; want 0 (%v, %v)",
			sub, v.lost, v.invalid, v.unexpected, v.reordered, v.dupInRun, v.lostSamples, v.notes)
	}
}

// TestCheckerTellsANewLogWhoseFirstEventsWereNotAcknowledged is the
// history of the allkeys-lru failure of 2026-12-02: a log of two events
// (epoch b) vanished with its meta hash before anyone read it, and the
// next log (epoch c) began with two events whose publish replies were lost.
// The subscriber reported the loss from its old log (epoch a) up to the
// log it went on with (c), and handled c from seq 1. The checker used to
// join b and c into one lineage (c's first acknowledged seq, 3, follows
// b's highest) and so counted b's events as lost and unreported; c's seq 1
// is another event than b's, so they are two logs.
func TestCheckerTellsANewLogWhoseFirstEventsWereNotAcknowledged(t *testing.T) {
	w := newCheckerWorld()
	w.write(1, "a", 1, "1000-0", true)
	w.write(2, "a", 2, "1001-0", true)
	w.write(3, "b", 1, "2000-0", true)
	w.write(4, "b", 2, "2001-0", true)
	w.write(5, "c", 1, "3000-0", false)
	w.write(6, "c", 2, "3001-0", false)
	w.write(7, "c", 3, "3002-0", true)
	w.keep("c", 5, 6, 7)
	w.handle(subPlain, "a", 1, 2)
	w.d.rec.lost(subPlain, replay.LossError{Topic: checkerTopic, Epoch: "a", From: 3, Reason: replay.EpochChanged, Next: "c"}, 0)
	w.handle(subPlain, "c", 5, 6, 7)

	f := w.d.facts(w.final)
	if f.lineage(checkerTopic, "b") == f.lineage(checkerTopic, "c") {
		t.Errorf("epochs b and c joined into one lineage: both hold a seq 1, with other events")
	}
	w.check(t, f, subPlain)
}

// TestCheckerJoinsANewEpochOverTheOldLog: an epoch (b) made over a log
// that goes on (its meta hash evicted alone) continues its seqs, and the
// subscriber went on in it without a report; the checker joins the two by
// the seq rule (b's first acknowledged seq follows a's highest), so the
// log's events are neither lost nor reordered. Another subscriber read the
// log under b before a's entries were trimmed, handing over a's seq 2 as
// b's; its publish reply was lost, so nothing but the seq rule joins the
// two: the same event at the same seq, which must not count as a conflict.
func TestCheckerJoinsANewEpochOverTheOldLog(t *testing.T) {
	w := newCheckerWorld()
	w.write(1, "a", 1, "1000-0", true)
	w.write(2, "a", 2, "1001-0", false)
	w.write(3, "b", 3, "2000-0", true)
	w.write(4, "b", 4, "2001-0", true)
	w.keep("b", 3, 4) // a's entries trimmed since: no join by the final log
	w.handle(subPlain, "a", 1, 2)
	w.handle(subPlain, "b", 3, 4)
	w.handle(subPattern, "b", 2, 3, 4)

	f := w.d.facts(w.final)
	if f.lineage(checkerTopic, "a") != f.lineage(checkerTopic, "b") {
		t.Errorf("epochs a and b not joined: b was made over a's log")
	}
	w.check(t, f, subPlain)
}

// TestCheckerJoinsEpochsOnlyAtTheSameEntry: an event written twice, into
// two logs (its publish reply lost, the retry written again after the
// first log and the idempotency key were evicted), is not a sign that the
// two logs are one, even at the same seq: an entry read under a new epoch
// keeps its stream id. The copy handed over is at another position than
// acknowledged, which the checker counts as unexpected.
func TestCheckerJoinsEpochsOnlyAtTheSameEntry(t *testing.T) {
	w := newCheckerWorld()
	w.write(1, "b", 1, "2000-0", false) // the first write, reply lost
	w.handle(subPlain, "b", 1)
	w.write(1, "c", 1, "3000-0", true) // the retry, into the next log

	f := w.d.facts(w.final)
	if f.lineage(checkerTopic, "b") == f.lineage(checkerTopic, "c") {
		t.Errorf("epochs b and c joined by one event written into each")
	}
	if v := checkData(f, subPlain, lruScenario, true); v.unexpected != 1 {
		t.Errorf("unexpected %d, want 1 (the copy handed over is not at the acknowledged position)", v.unexpected)
	}
}
