package chaos

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/durabus/durabus/replay"
)

// pubRecord is one publish attempt: the payload key k is unique per attempt.
type pubRecord struct {
	k     int64
	topic string
	epoch string
	seq   uint64
	id    string // its stream id, when acknowledged
	ok    bool   // acknowledged (Publish/PublishBatch returned its position)
}

// delivery is one handler call of a subscriber.
type delivery struct {
	k     int64
	topic string
	epoch string
	seq   uint64
	inc   int // incarnation of the subscriber process (durable child)
}

// history is the record of one run: what was published, and what each
// subscriber was handed. Safe for concurrent use.
type history struct {
	mu      sync.Mutex
	pubs    map[int64]*pubRecord
	dels    map[string][]delivery // subscriber -> deliveries in order
	losses  map[string][]*replay.LossError
	maxSeen map[string]map[string]uint64 // subscriber -> topic -> highest seq delivered
}

func newHistory() *history {
	return &history{
		pubs:    map[int64]*pubRecord{},
		dels:    map[string][]delivery{},
		losses:  map[string][]*replay.LossError{},
		maxSeen: map[string]map[string]uint64{},
	}
}

func (h *history) attempt(k int64, topic string) {
	h.mu.Lock()
	h.pubs[k] = &pubRecord{k: k, topic: topic}
	h.mu.Unlock()
}

func (h *history) acked(k int64, epoch string, seq uint64, id string) {
	h.mu.Lock()
	p := h.pubs[k]
	p.ok, p.epoch, p.seq, p.id = true, epoch, seq, id
	h.mu.Unlock()
}

func (h *history) delivered(sub string, d delivery) {
	h.mu.Lock()
	h.dels[sub] = append(h.dels[sub], d)
	m := h.maxSeen[sub]
	if m == nil {
		m = map[string]uint64{}
		h.maxSeen[sub] = m
	}
	if d.seq > m[d.topic] {
		m[d.topic] = d.seq
	}
	h.mu.Unlock()
}

func (h *history) lost(sub string, e *replay.LossError) {
	h.mu.Lock()
	h.losses[sub] = append(h.losses[sub], e)
	h.mu.Unlock()
}

// ackedHeads returns the highest acknowledged seq per topic.
func (h *history) ackedHeads() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]uint64{}
	for _, p := range h.pubs {
		if p.ok && p.seq > out[p.topic] {
			out[p.topic] = p.seq
		}
	}
	return out
}

// reached reports whether sub has delivered up to heads on every topic.
func (h *history) reached(sub string, heads map[string]uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for t, s := range heads {
		if h.maxSeen[sub][t] < s {
			return false
		}
	}
	return true
}

// passed reports whether sub has delivered beyond heads on every topic.
func (h *history) passed(sub string, heads map[string]uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range topics {
		if h.maxSeen[sub][t] <= heads[t] {
			return false
		}
	}
	return true
}

// verdict is the checker's count for one subscriber.
type verdict struct {
	sub         string
	delivered   int
	lost        int // acknowledged (or found in the log), never delivered
	unexpected  int // delivered, never attempted, or at another position than acknowledged
	duplicated  int // the same event handed over again
	dupInRun    int // of those, within one process incarnation
	reordered   int // a lower seq after a higher one on a topic, within one incarnation
	losses      int // LossErrors reported
	lossEvents  uint64
	lossExact   bool // reported ranges == never-delivered seqs, exactly
	reconnects  uint64
	recovery    time.Duration
	peakMem     uint64
	memKind     string
	lostSamples []string
}

// check compares the deliveries of sub with the publishes. inLog maps the
// keys found in the backlog after the run to their seq: a publish that
// failed on the client may still have been written (its reply was lost);
// then it must be delivered like an acknowledged one.
func (h *history) check(sub string, inLog map[int64]logEntry) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := verdict{sub: sub, lossExact: true}
	dels := h.dels[sub]
	v.delivered = len(dels)
	seen := map[int64]int{}
	type incTopic struct {
		inc   int
		topic string
	}
	last := map[incTopic]uint64{}
	seenInInc := map[incTopic]map[int64]bool{}
	for _, d := range dels {
		p := h.pubs[d.k]
		le, logged := inLog[d.k]
		switch {
		case p == nil:
			v.unexpected++
		case p.ok && (p.seq != d.seq || p.epoch != d.epoch || p.topic != d.topic):
			v.unexpected++
		case !p.ok && (!logged || le.seq != d.seq):
			v.unexpected++
		}
		seen[d.k]++
		key := incTopic{d.inc, d.topic}
		if seenInInc[key] == nil {
			seenInInc[key] = map[int64]bool{}
		}
		if seen[d.k] > 1 {
			v.duplicated++
			if seenInInc[key][d.k] {
				v.dupInRun++
			}
		} else if d.seq <= last[key] {
			v.reordered++
		}
		seenInInc[key][d.k] = true
		if d.seq > last[key] {
			last[key] = d.seq
		}
	}
	// Never delivered: acknowledged, or written despite a failed call.
	missing := map[string]map[uint64]bool{}
	for k, p := range h.pubs {
		if seen[k] > 0 {
			continue
		}
		le, logged := inLog[k]
		if !p.ok && !logged {
			continue
		}
		v.lost++
		seq := p.seq
		if !p.ok {
			seq = le.seq
		}
		if missing[p.topic] == nil {
			missing[p.topic] = map[uint64]bool{}
		}
		missing[p.topic][seq] = true
		if len(v.lostSamples) < 5 {
			v.lostSamples = append(v.lostSamples, fmt.Sprintf("%s seq %d (k %d, acked %v)", p.topic, seq, k, p.ok))
		}
	}
	// Reported ranges versus the true ones.
	reported := map[string]map[uint64]bool{}
	for _, l := range h.losses[sub] {
		v.losses++
		v.lossEvents += l.Count()
		if l.To == 0 {
			v.lossExact = false
			continue
		}
		if reported[l.Topic] == nil {
			reported[l.Topic] = map[uint64]bool{}
		}
		for s := l.From; s <= l.To; s++ {
			reported[l.Topic][s] = true
		}
	}
	for t, m := range missing {
		for s := range m {
			if !reported[t][s] {
				v.lossExact = false
			}
		}
	}
	for t, m := range reported {
		for s := range m {
			if !missing[t][s] {
				v.lossExact = false
			}
		}
	}
	return v
}

type logEntry struct {
	topic string
	seq   uint64
}

// runReport is the table of one run.
type runReport struct {
	scenario  string
	duration  time.Duration
	published int // acknowledged
	failed    int // calls that returned an error
	written   int // of the failed, found in the log all the same (data faults: or handled)
	logDups   int // keys written twice to the log
	faults    int
	rows      []verdict
	notes     []string
}

func (r *runReport) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s: %s, %d faults, acknowledged %d, failed %d (of which written %d), log duplicates %d\n",
		r.scenario, r.duration.Round(100*time.Millisecond), r.faults, r.published, r.failed, r.written, r.logDups)
	fmt.Fprintf(&b, "%-9s %9s %5s %10s %10s %9s %6s %10s %10s %12s\n",
		"sub", "delivered", "lost", "unexpected", "duplicated", "reordered", "losses", "reconnects", "recovery", "peak mem")
	for _, v := range r.rows {
		fmt.Fprintf(&b, "%-9s %9d %5d %10d %10s %9d %6s %10d %10s %12s\n",
			v.sub, v.delivered, v.lost, v.unexpected, fmt.Sprintf("%d/%d", v.dupInRun, v.duplicated), v.reordered,
			lossCell(v), v.reconnects, v.recovery.Round(10*time.Millisecond), fmt.Sprintf("%.1f MiB %s", float64(v.peakMem)/(1<<20), v.memKind))
	}
	for _, n := range r.notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	return b.String()
}

func lossCell(v verdict) string {
	if v.losses == 0 {
		return "0"
	}
	exact := "exact"
	if !v.lossExact {
		exact = "INEXACT"
	}
	return fmt.Sprintf("%d:%d %s", v.losses, v.lossEvents, exact)
}

// summary renders one line per scenario and subscriber, for the docs.
func summary(reports []*runReport) string {
	var b strings.Builder
	b.WriteString("| fault | run | acked | failed (written) | subscriber | delivered | lost | unexpected | duplicated (in run/all) | reordered | LossErrors (events) | reconnects | max recovery | peak mem |\n")
	b.WriteString("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n")
	for _, r := range reports {
		for i, v := range r.rows {
			name, run, acked, failed := "", "", "", ""
			if i == 0 {
				name, run = r.scenario, r.duration.Round(time.Second).String()
				acked = fmt.Sprint(r.published)
				failed = fmt.Sprintf("%d (%d)", r.failed, r.written)
			}
			loss := "0"
			if v.losses > 0 {
				loss = fmt.Sprintf("%d (%d, exact: %v)", v.losses, v.lossEvents, v.lossExact)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %d | %d | %d/%d | %d | %s | %d | %s | %.0f MiB %s |\n",
				name, run, acked, failed, v.sub, v.delivered, v.lost, v.unexpected, v.dupInRun, v.duplicated, v.reordered,
				loss, v.reconnects, v.recovery.Round(10*time.Millisecond), float64(v.peakMem)/(1<<20), v.memKind)
		}
	}
	return b.String()
}
