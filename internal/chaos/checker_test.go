package chaos

import (
	"testing"

	"github.com/durabus/durabus/replay"
)

// checkerWorld is a data run's history made by hand, for the checker's
// own tests: no Redis, no subscribers, just what they would have recorded.
type checkerWorld struct {
	d     *dataEnv
	final *dataLog
}

func newCheckerWorld(resets bool) *checkerWorld {
	return &checkerWorld{
		d:     &dataEnv{env: &env{h: newHistory()}, rec: newDataRec(), resets: resets},
		final: &dataLog{byK: map[int64]dataEntry{}, epochs: map[string]string{}},
	}
}

// write is event k written at seq of epoch with stream id id; acked says
// whether its publisher was told so (a lost reply leaves it unacknowledged).
func (w *checkerWorld) write(k int64, epoch string, seq uint64, id string, acked bool) {
	w.d.h.attempt(k, "chaos.t1")
	if acked {
		w.d.h.acked(k, epoch, seq, id)
	}
}

func (w *checkerWorld) handle(sub string, k int64, epoch string, seq uint64, id string) {
	w.d.rec.delivered(sub, dataDel{k: k, topic: "chaos.t1", epoch: epoch, seq: seq, id: id})
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
	w := newCheckerWorld(true)
	w.write(1, "a", 1, "1000-0", true)
	w.write(2, "a", 2, "1001-0", true)
	w.write(3, "b", 1, "2000-0", true)
	w.write(4, "b", 2, "2001-0", true)
	w.write(5, "c", 1, "3000-0", false)
	w.write(6, "c", 2, "3001-0", false)
	w.write(7, "c", 3, "3002-0", true)
	w.final.epochs["chaos.t1"] = "c"
	for k, seq := range map[int64]uint64{5: 1, 6: 2, 7: 3} {
		w.final.byK[k] = dataEntry{topic: "chaos.t1", seq: seq, id: "300" + string(rune('0'+seq-1)) + "-0"}
	}
	w.handle(subPlain, 1, "a", 1, "1000-0")
	w.handle(subPlain, 2, "a", 2, "1001-0")
	w.d.rec.lost(subPlain, replay.LossError{Topic: "chaos.t1", Epoch: "a", From: 3, Reason: replay.EpochChanged, Next: "c"}, 0)
	w.handle(subPlain, 5, "c", 1, "3000-0")
	w.handle(subPlain, 6, "c", 2, "3001-0")
	w.handle(subPlain, 7, "c", 3, "3002-0")

	f := w.d.facts(w.final)
	if f.lineage("chaos.t1", "b") == f.lineage("chaos.t1", "c") {
		t.Errorf("epochs b and c joined into one lineage: both hold a seq 1, with other events")
	}
	v := checkData(f, subPlain, lruScenario, true)
	if v.lost != 0 || v.invalid != 0 || v.unexpected != 0 || v.reordered != 0 {
		t.Errorf("lost %d, invalid %d, unexpected %d, reordered %d; want 0 (%v, %v)", v.lost, v.invalid, v.unexpected, v.reordered, v.lostSamples, v.notes)
	}
}

// TestCheckerJoinsANewEpochOverTheOldLog: an epoch made over a log that
// goes on (its meta hash evicted alone) continues its seqs, and the
// subscriber went on in it without a report; the checker joins the two
// (the new epoch's first seq follows the old one's highest), so the log's
// events are neither lost nor reordered.
func TestCheckerJoinsANewEpochOverTheOldLog(t *testing.T) {
	w := newCheckerWorld(true)
	w.write(1, "a", 1, "1000-0", true)
	w.write(2, "a", 2, "1001-0", true)
	w.write(3, "b", 3, "2000-0", true)
	w.write(4, "b", 4, "2001-0", true)
	w.final.epochs["chaos.t1"] = "b"
	w.final.byK[3] = dataEntry{topic: "chaos.t1", seq: 3, id: "2000-0"}
	w.final.byK[4] = dataEntry{topic: "chaos.t1", seq: 4, id: "2001-0"}
	w.handle(subPlain, 1, "a", 1, "1000-0")
	w.handle(subPlain, 2, "a", 2, "1001-0")
	w.handle(subPlain, 3, "b", 3, "2000-0")
	w.handle(subPlain, 4, "b", 4, "2001-0")
	// Another subscriber read the log from its start under the new epoch.
	w.handle(subPattern, 1, "b", 1, "1000-0")

	f := w.d.facts(w.final)
	if f.lineage("chaos.t1", "a") != f.lineage("chaos.t1", "b") {
		t.Errorf("epochs a and b not joined: b was made over a's log")
	}
	for _, sub := range []string{subPlain} {
		v := checkData(f, sub, lruScenario, true)
		if v.lost != 0 || v.invalid != 0 || v.unexpected != 0 || v.reordered != 0 {
			t.Errorf("%s: lost %d, invalid %d, unexpected %d, reordered %d; want 0 (%v, %v)", sub, v.lost, v.invalid, v.unexpected, v.reordered, v.lostSamples, v.notes)
		}
	}
}
