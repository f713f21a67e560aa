package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cenkalti/backoff/v4"

	"github.com/durabus/durabus/transport"
)

// worker follows one topic: it owns the topic's cursor and runs its handler
// calls one at a time.
type worker struct {
	f     *Follower
	topic string
	start Start
	// fromSaved is set when start is the consumer's saved checkpoint; a
	// durable worker without one saves its resolved start at once.
	fromSaved bool
	inbox     *inbox
	check     chan struct{} // a head check is due
	repair    chan struct{}
	// catching is set while the worker reads the backlog (and before its
	// first catch-up): live frames queued meanwhile are likely duplicates,
	// so the dispatcher does not prepare them.
	catching atomic.Bool
	// initial workers count towards the follower's readiness.
	initial bool

	// Owned by the worker's goroutine.
	cursor     transport.Position
	epochReset bool               // cursor was reset by a new epoch: seq 1 is expected next
	lastHead   transport.Position // head seen at the previous head check
	avgSize    int                // average event size of the last backlog page
	// atMarker is set while the cursor's ID is that of a rollback marker
	// (its Seq the event's before it): reads go on after the marker, and
	// live frames at the cursor's seq are duplicates.
	atMarker bool
	// rolled are the RolledBack ranges reported (the last few), so that a
	// marker names only what was not reported yet.
	rolled []transport.Rollback
	// suspects are live frames of another epoch than the cursor's whose
	// entries could not be found or ruled out yet (see suspect).
	suspects []suspect

	mu    sync.Mutex // guards shown and head, read by Stats
	shown transport.Position
	head  transport.Position
}

// needRepair asks the worker to read the backlog after its cursor. It never
// blocks.
func (w *worker) needRepair() {
	select {
	case w.repair <- struct{}{}:
	default:
	}
}

func (w *worker) run(ctx, hctx context.Context) {
	ok := w.resolveStart(ctx)
	if w.initial {
		w.f.initDone()
	}
	if !ok {
		return
	}
	if w.catchUp(ctx, hctx, transport.Position{}) == stopping {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.inbox.ready:
			for {
				d, ok := w.inbox.pop()
				if !ok {
					break
				}
				if !w.live(ctx, hctx, d) {
					return
				}
			}
		case <-w.repair:
			if w.catchUp(ctx, hctx, transport.Position{}) == stopping {
				return
			}
		case <-w.check:
			if !w.checkHead(ctx, hctx) {
				return
			}
		}
	}
}

// dueHeadCheck asks the worker for a head check. It never blocks.
func (w *worker) dueHeadCheck() {
	select {
	case w.check <- struct{}{}:
	default:
	}
}

// resolveStart sets the cursor from the start position.
func (w *worker) resolveStart(ctx context.Context) bool {
	bo := w.f.newBackoff()
	for {
		var err error
		switch w.start.kind {
		case startBeginning:
			w.cursor, err = w.beginning(ctx)
		case startAfter:
			w.cursor = w.start.pos
			// A durable consumer that saved a zero start (its topic had no
			// log yet) owns the topic's first epoch from seq 1.
			w.epochReset = w.fromSaved && w.cursor.IsZero()
		case startSince:
			w.cursor, err = w.f.seeker.Seek(ctx, w.topic, w.start.t)
		default:
			w.cursor, err = w.newOnly(ctx)
		}
		if errors.Is(err, transport.ErrUnknownTopic) {
			// Nothing published yet: everything that comes is new.
			w.cursor, err = transport.Position{}, nil
		}
		if err == nil {
			w.show()
			if w.f.cp != nil && !w.fromSaved {
				return w.saveStart(ctx)
			}
			return true
		}
		if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
			return false
		}
		w.f.report(fmt.Errorf("replay: topic %q: start %v: %w", w.topic, w.start, err))
		if !sleep(ctx, bo.NextBackOff()) {
			return false
		}
	}
}

// beginning returns the cursor of a Beginning start: for a durable
// consumer, just before the oldest event held, in its epoch (so that what
// is trimmed after its start is reported, also after a restart); the zero
// Position otherwise, or when the topic has no log yet.
func (w *worker) beginning(ctx context.Context) (transport.Position, error) {
	if w.f.cp == nil {
		return transport.Position{}, nil
	}
	page, err := w.f.tr.Range(ctx, w.topic, transport.Position{}, 1)
	if err != nil || len(page.Events) == 0 {
		return transport.Position{Epoch: page.Epoch}, err
	}
	// With the stream id just before the first entry: a saved start that
	// a new epoch over the same log (its meta hash remade) must be told
	// from a new log by, as a cursor is (sameLog).
	first := page.Events[0].Position
	id, _ := predID(first.ID)
	return transport.Position{Epoch: page.Epoch, Seq: first.Seq - 1, ID: id}, nil
}

// saveStart saves the resolved start position of a durable consumer's
// topic before any event is handled, so that nothing published after it
// can be skipped: not by a crash before the first checkpoint, nor by a
// restart. It retries until the save succeeds or the follower stops.
func (w *worker) saveStart(ctx context.Context) bool {
	bo := w.f.newBackoff()
	for {
		err := w.f.saveCheckpoints(ctx, map[string]transport.Position{w.topic: w.cursor})
		if err == nil {
			w.f.c.checkpoints.Add(1)
			return true
		}
		if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) || errors.Is(err, transport.ErrFenced) {
			return false
		}
		w.f.report(fmt.Errorf("replay: topic %q: save the start position of consumer %q: %w", w.topic, w.f.cfg.consumer, err))
		if !sleep(ctx, bo.NextBackOff()) {
			return false
		}
	}
}

// newOnly returns the cursor of a NewOnly start: the head, read after the
// subscription was confirmed (so everything published after Ready is
// delivered) — or, when events were published between the subscription
// and that read (a busy machine, a Redis restart), the position before
// the first of them, found by their publish time.
func (w *worker) newOnly(ctx context.Context) (transport.Position, error) {
	head, err := w.f.tr.Head(ctx, w.topic)
	if err != nil {
		return head, err
	}
	if w.f.seeker == nil {
		return head, nil
	}
	at, err := w.f.seeker.Seek(ctx, w.topic, w.f.subscribedAt)
	if err != nil || at.Epoch != head.Epoch || at.Seq >= head.Seq {
		return head, nil
	}
	return at, nil
}

// catchUp delivers everything the backlog holds after the cursor. The
// event at live, the frame that revealed a gap, is delivered as live rather
// than replayed when the backlog yields it. Its outcome says whether it
// got to the end of the log.
//
// While a full page is handled, the next one is read ahead from its last
// event; it is used only when the cursor ends up at that event, so the
// pages are those reads from the cursor would give, only read earlier.
func (w *worker) catchUp(ctx, hctx context.Context, live transport.Position) caught {
	w.catching.Store(true)
	defer w.catching.Store(false)
	bo := w.f.newBackoff()
	var ahead *pageAhead
	defer func() { ahead.wait() }()
	for {
		page, prepared, count, ok := ahead.take(w.cursor)
		var err error
		if !ok {
			count = w.pageCount()
			page, err = w.f.tr.Range(ctx, w.topic, w.cursor, count)
		}
		ahead = nil
		if errors.Is(err, transport.ErrUnknownTopic) {
			if _, err := w.f.tr.Head(ctx, w.topic); err != nil {
				w.vanished(err, live)
			}
			return unreadable
		}
		if err != nil {
			if !w.readFailed(ctx, bo, err) {
				return stopping
			}
			continue
		}
		if page.Epoch != "" && w.cursor.Epoch != "" && page.Epoch != w.cursor.Epoch {
			next, ok, err := w.sameLog(ctx, page.Epoch, count)
			if errors.Is(err, transport.ErrUnknownTopic) || errors.Is(err, errChurn) {
				return unreadable // the meta hash is being remade: look again at the next frame or check
			}
			if err != nil {
				if !w.readFailed(ctx, bo, err) {
					return stopping
				}
				continue
			}
			if ok {
				// A new epoch over the same log (its meta hash was lost
				// and remade): nothing was lost, go on after the cursor.
				w.f.log.Warn("durabus: topic's epoch changed but its log goes on", "topic", w.topic, "old", w.cursor.Epoch, "new", next.Epoch)
				w.cursor.Epoch = next.Epoch
				page, prepared = next, nil
			} else {
				// The log itself was reset: what followed the cursor is
				// gone, to the old log's end (unknown: it may have grown
				// past the last head seen) and through any log that came
				// and went before the new one. The page read before
				// sameLog looked may be of the cursor's own log under a
				// new epoch, replaced since (sameLog then judged another
				// log): delivering it would hand the cursor's entries
				// over again. So the new log is read again from its
				// start, now that the cursor's log is known to be gone,
				// and the loss is reported only with that page in hand:
				// when the read fails, the cursor stays, and the next
				// read judges the log then there.
				fresh, err := w.f.tr.Range(ctx, w.topic, transport.Position{}, count)
				if errors.Is(err, transport.ErrUnknownTopic) {
					return unreadable // gone again: the next frame or head check looks again
				}
				if err != nil {
					if !w.readFailed(ctx, bo, err) {
						return stopping
					}
					continue
				}
				if len(fresh.Events) == 0 {
					// Evicted between the read's existence check and
					// its XRANGE: no log to follow yet. The cursor
					// stays, and the next frame or head check judges
					// the log there then.
					return unreadable
				}
				if fresh.Epoch == w.cursor.Epoch {
					// The topic is in the cursor's epoch again: the
					// page judged was not of the topic as it is now
					// (read ahead before the cursor reached its epoch).
					// Nothing was reset: read on from the cursor.
					continue
				}
				w.f.lost(&LossError{Topic: w.topic, Epoch: w.cursor.Epoch, From: w.cursor.Seq + 1, Reason: EpochChanged, Next: fresh.Epoch})
				w.startOver(fresh)
				page, prepared = fresh, nil
			}
		}
		w.notePage(page)
		if n := len(page.Events); n == count {
			last := page.Events[n-1].Position
			if last.Epoch == "" {
				last.Epoch = page.Epoch
			}
			ahead = w.readAhead(ctx, last, w.pageCount())
		}
		for i, d := range page.Events {
			if d.Position.Epoch == "" {
				d.Position.Epoch = page.Epoch
			}
			if d.Rollback != nil {
				w.marker(d, true)
				continue
			}
			replayed := d.Position.Seq != live.Seq || d.Position.Epoch != live.Epoch
			var prep any
			if i < len(prepared) {
				prep = prepared[i]
			}
			if !w.ordered(ctx, hctx, Delivery{Delivery: d, Replayed: replayed, Prepared: prep}) {
				return stopping
			}
		}
		if len(page.Events) < count {
			w.f.c.repairs.Add(1)
			return caughtUp
		}
	}
}

// startOver moves the cursor to just before the first entry of page, the
// start of the log that replaced the cursor's, at once rather than with
// that entry's handling: what the log lost before its first entry (seq 1
// up to it) is reported as Trimmed now, and a durable consumer's
// checkpoint notes the new position, so that a restart, or the next lease
// term, goes on in the new log instead of judging the old one gone again
// and reading the new one from wherever it starts by then. A first entry
// that is a rollback marker reports its own range (marker).
func (w *worker) startOver(page transport.Page) {
	first := page.Events[0]
	epoch := first.Position.Epoch
	if epoch == "" {
		epoch = page.Epoch
	}
	top := first.Position.Seq // a marker's seq is that of the event before it
	if first.Rollback == nil {
		top--
	}
	parts := []transport.Rollback{{From: 1, To: top}}
	if rb := first.Rollback; rb != nil && rb.Epoch == epoch && rb.From <= top && rb.To >= 1 {
		parts = []transport.Rollback{{From: 1, To: rb.From - 1}, {From: rb.To + 1, To: top}}
	}
	for _, p := range parts {
		if p.From >= 1 && p.From <= p.To {
			w.f.lost(&LossError{Topic: w.topic, Epoch: epoch, From: p.From, To: p.To, Reason: Trimmed})
		}
	}
	id, _ := predID(first.Position.ID)
	w.cursor = transport.Position{Epoch: epoch, Seq: top, ID: id}
	w.atMarker = false
	w.epochReset = false
	w.show()
	if w.f.cp != nil {
		w.f.cp.note(w.topic, w.cursor)
	}
}

// caught is how a catch-up ended.
type caught uint8

const (
	caughtUp   caught = iota // delivered up to the end of the log
	unreadable               // no log or meta hash, or it is being remade: look again at the next frame or head check
	stopping                 // the follower is stopping
)

// readFailed reports a failed backlog read and waits before the next
// try; it returns false when the follower is stopping.
func (w *worker) readFailed(ctx context.Context, bo *backoff.ExponentialBackOff, err error) bool {
	if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
		return false
	}
	w.f.report(fmt.Errorf("replay: topic %q: read backlog after seq %d: %w", w.topic, w.cursor.Seq, err))
	return sleep(ctx, bo.NextBackOff())
}

// pageAhead is a backlog page being read ahead by a goroutine of the
// worker's; the worker waits for it before it reads again or returns.
type pageAhead struct {
	from     transport.Position
	count    int // events asked for
	done     chan struct{}
	page     transport.Page
	prepared []any // WithPrepare's results, one per event of page
	err      error
	// taken stops the preparing: once the worker wants the page it gets
	// it at once and prepares the rest itself, so the work splits
	// between the two goroutines as their speeds allow.
	taken atomic.Bool
}

// readAhead starts reading the page after from.
func (w *worker) readAhead(ctx context.Context, from transport.Position, count int) *pageAhead {
	a := &pageAhead{from: from, count: count, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.page, a.err = w.f.tr.Range(ctx, w.topic, from, count)
		if w.f.cfg.prepare != nil && a.err == nil {
			a.prepared = make([]any, len(a.page.Events))
			for i, d := range a.page.Events {
				if a.taken.Load() {
					break
				}
				if d.Rollback != nil {
					continue
				}
				if d.Position.Epoch == "" {
					d.Position.Epoch = a.page.Epoch
				}
				a.prepared[i] = w.f.prepare(d)
			}
		}
	}()
	return a
}

// take waits for the page; ok is false when there is none, when it was read
// after another position than cursor, or when the read failed (the caller
// reads again, and reports what fails then).
func (a *pageAhead) take(cursor transport.Position) (transport.Page, []any, int, bool) {
	if a == nil {
		return transport.Page{}, nil, 0, false
	}
	a.taken.Store(true)
	<-a.done
	if a.err != nil || a.from != cursor {
		return transport.Page{}, nil, 0, false
	}
	return a.page, a.prepared, a.count, true
}

// pageBytes bounds the bytes of one backlog page: a worker reads fewer
// events per page when they are large (see pageCount), so that the page it
// handles and the one it reads ahead hold about 2 × pageBytes, not
// 2 × WithPageSize × the largest event.
const pageBytes = 4 << 20

// firstPage is the size of a worker's first backlog read, before it knows
// how large its topic's events are.
const firstPage = 64

// pageCount is how many events the next backlog read asks for: the page
// size, or fewer when the events of the last page averaged more than
// pageBytes / page size (firstPage before any page was read).
func (w *worker) pageCount() int {
	if w.avgSize <= 0 {
		// Sizes unknown yet: a small first page shows them.
		return min(w.f.cfg.pageSize, firstPage)
	}
	return max(1, min(w.f.cfg.pageSize, pageBytes/w.avgSize))
}

// notePage records the average event size of a page read.
func (w *worker) notePage(p transport.Page) {
	if len(p.Events) == 0 {
		return
	}
	total := 0
	for _, d := range p.Events {
		total += len(d.Data)
	}
	w.avgSize = max(1, total/len(p.Events))
}

func (a *pageAhead) wait() {
	if a != nil {
		a.taken.Store(true) // stop preparing what nobody will take
		<-a.done
	}
}

// sameLog reports whether the log of the new epoch is the cursor's log
// going on (its meta hash was lost and remade, perhaps more than once): its
// lineage record, where the back end keeps one, names the cursor's epoch,
// and it still holds the cursor's entry, at the cursor's seq, or the entry
// after the cursor's stream id carries the next seq. It returns the page of
// the log after the cursor.
//
// Without the record, a new log (the old one was evicted) whose first
// entries are gone too can by chance go on at the seq after the cursor,
// and be taken for the cursor's log: a loss unreported.
func (w *worker) sameLog(ctx context.Context, epoch string, count int) (transport.Page, bool, error) {
	c := w.cursor
	before, ok := predID(c.ID)
	if !ok {
		return transport.Page{}, false, nil
	}
	var lineage []string
	complete := false
	if w.f.lineage != nil {
		var err error
		if lineage, complete, err = w.f.lineage.LogEpochs(ctx, w.topic); err != nil {
			return transport.Page{}, false, err
		}
	}
	var page transport.Page
	for try := 0; ; try++ {
		var err error
		// Seq 0: the read goes by stream id (a back end that reads by seq
		// when the epoch matches reads from the log's start instead).
		page, err = w.f.tr.Range(ctx, w.topic, transport.Position{Epoch: epoch, ID: before}, count+1)
		if err != nil {
			return transport.Page{}, false, err
		}
		if page.Epoch == epoch || try == 3 {
			break
		}
		epoch = page.Epoch // remade again meanwhile: ask the newest
	}
	if page.Epoch != epoch {
		return transport.Page{}, false, errChurn
	}
	if w.f.lineage != nil {
		// The record read again after the page: the same, or the log
		// changed meanwhile (look again later).
		again, whole, err := w.f.lineage.LogEpochs(ctx, w.topic)
		if err != nil {
			return transport.Page{}, false, err
		}
		if whole != complete || !slices.Equal(again, lineage) {
			return transport.Page{}, false, errChurn
		}
		if complete && !slices.Contains(lineage, c.Epoch) {
			return transport.Page{}, false, nil // a log the cursor's epoch never wrote to
		}
	}
	switch {
	case len(page.Events) == 0:
		// The cursor's entry is gone and nothing follows it: a log made
		// anew whose ids are all older (another clock, or a back end whose
		// ids restart) — when its head says so; else look again later.
		if head, err := w.f.tr.Head(ctx, w.topic); err == nil && head.Epoch == epoch && head.ID != "" && idAfter(c.ID, head.ID) {
			return transport.Page{}, false, nil
		}
		return transport.Page{}, false, errChurn
	}
	first := page.Events[0]
	switch {
	case first.Position.ID == c.ID && first.Position.Seq == c.Seq:
		page.Events = page.Events[1:]
		return page, true, nil
	case first.Rollback == nil && first.Position.Seq == c.Seq+1 && idAfter(first.Position.ID, c.ID):
		if len(page.Events) > count {
			page.Events = page.Events[:count]
		}
		return page, true, nil
	}
	return transport.Page{}, false, nil
}

// marker handles a rollback marker, read from the backlog (inLog) or
// received live: the part of its range not reported yet is reported, and
// the cursor moves past it when that skips nothing.
func (w *worker) marker(d transport.Delivery, inLog bool) {
	rb := d.Rollback
	w.rolledBack(rb.Epoch, rb.From, rb.To, true)
	c := w.cursor
	// The cursor moves past the marker only when it is at the event just
	// before it; otherwise (a live marker ahead of the cursor) the events
	// in between are still to be read.
	if c.Epoch == "" && inLog || c.Epoch != "" && c.Epoch == d.Position.Epoch && c.Seq == d.Position.Seq && !idAfter(c.ID, d.Position.ID) {
		if c.Epoch == "" {
			c = transport.Position{Epoch: d.Position.Epoch, Seq: d.Position.Seq}
			w.epochReset = false
		}
		c.ID = d.Position.ID
		w.cursor = c
		w.atMarker = true
	}
}

// rolledBack reports seqs from..to of epoch as RolledBack. A rollback the
// worker saw itself is always reported; one named by a marker only for
// the part not reported yet (the worker, or another publisher's marker,
// may have reported the same rollback).
func (w *worker) rolledBack(epoch string, from, to uint64, marker bool) {
	if from > to {
		return
	}
	parts := []transport.Rollback{{Epoch: epoch, From: from, To: to}}
	for _, r := range w.rolled {
		if !marker || r.Epoch != epoch {
			continue
		}
		var next []transport.Rollback
		for _, p := range parts {
			if r.To < p.From || r.From > p.To {
				next = append(next, p)
				continue
			}
			if p.From < r.From {
				next = append(next, transport.Rollback{Epoch: epoch, From: p.From, To: r.From - 1})
			}
			if p.To > r.To {
				next = append(next, transport.Rollback{Epoch: epoch, From: r.To + 1, To: p.To})
			}
		}
		parts = next
	}
	for _, p := range parts {
		w.f.lost(&LossError{Topic: w.topic, Epoch: epoch, From: p.From, To: p.To, Reason: RolledBack})
	}
	w.rolled = append(w.rolled, transport.Rollback{Epoch: epoch, From: from, To: to})
	if len(w.rolled) > 16 {
		w.rolled = w.rolled[1:]
	}
}

// live handles a live frame.
func (w *worker) live(ctx, hctx context.Context, d Delivery) bool {
	if d.Rollback != nil {
		w.marker(d.Delivery, false)
		return true
	}
	c, p := w.cursor, d.Position
	sameEpoch := c.Epoch != "" && p.Epoch == c.Epoch
	// forgedAtCursor: two frames claim the cursor's seq, and the one
	// delivered has the later stream id: it may not be in the log (a forged
	// frame with the next seq).
	forgedAtCursor := !w.atMarker && sameEpoch && p.Seq == c.Seq && c.ID != "" && p.ID != "" && idAfter(c.ID, p.ID)
	// isDuplicate: at or before the cursor, and not written after it.
	isDuplicate := sameEpoch && p.Seq <= c.Seq && !idAfter(p.ID, c.ID)
	isNext := sameEpoch && p.Seq == c.Seq+1
	switch {
	case forgedAtCursor:
		return w.conflict(ctx, hctx, d.Delivery) // ask the log
	case isDuplicate:
		w.f.c.duplicates.Add(1)
		return true
	case isNext:
		return w.deliver(ctx, hctx, d)
	}
	// A gap, a new epoch, or a first event: the backlog has what led to it.
	w.f.c.gaps.Add(1)
	if w.catchUp(ctx, hctx, d.Position) == stopping {
		return false
	}
	c = w.cursor
	switch {
	case d.Position.Epoch != c.Epoch && (c.ID == "" || idAfter(d.Position.ID, c.ID)):
		// A frame of another epoch, written after everything delivered:
		// either its entry is in the log (the meta hash is being remade:
		// a repair delivers it) or its log was reset (evicted, deleted)
		// before it could be read, and the event is gone.
		w.suspect(ctx, d.Position, 0)
		return true
	case d.Position.Epoch != c.Epoch:
		// A frame of an epoch the backlog no longer has, from before the
		// cursor: stale.
		w.f.c.duplicates.Add(1)
		return true
	case d.Position.Seq <= c.Seq:
		w.f.c.duplicates.Add(1)
		return true
	}
	// The backlog, read after the frame arrived, does not hold it. The
	// publish script writes the log before it publishes, so this frame was
	// not made by it (a forged or buggy PUBLISH on the channel) or Redis
	// lost the write since. Either way the log is the record: delivering
	// the frame would move the cursor past seqs the log may still fill
	// with real events. Skip it; the head check repairs whatever comes.
	if head, err := w.f.tr.Head(ctx, w.topic); err == nil && head.Epoch == d.Position.Epoch && idAfter(head.ID, d.Position.ID) &&
		w.inLog(ctx, d.Position.ID) == entryGone {
		// The log went on past the frame's stream id without its entry:
		// Redis lost it (evicted with its log, which was made anew).
		w.f.lost(&LossError{Topic: w.topic, Epoch: d.Position.Epoch, From: d.Position.Seq, To: d.Position.Seq, Reason: Missing})
		return true
	}
	w.f.c.malformed.Add(1)
	w.f.report(fmt.Errorf("replay: topic %q: live frame claiming seq %d of epoch %s is not in the backlog (which ends at seq %d): skipped",
		w.topic, d.Position.Seq, d.Position.Epoch, c.Seq))
	return true
}

// errChurn says that a topic's meta hash was remade during every read.
var errChurn = errors.New("replay: the topic's epoch changed during every read")

// suspect is a live frame whose entry may be lost.
type suspect struct {
	pos   transport.Position
	tries int
}

// maxSuspects bounds a worker's suspects; maxSuspectTries the head checks
// a suspect waits for the log to be readable before it is reported.
const (
	maxSuspects     = 4096
	maxSuspectTries = 5
)

// suspect decides about a live frame of another epoch, written after
// everything delivered: when its entry is in the log (the meta hash is
// being remade) a repair delivers it; when the log went on without it
// (its log was reset before it could be read), it is reported lost; when
// the log cannot be read consistently (keys being evicted and remade), it
// waits for the next head checks, and is reported after maxSuspectTries.
func (w *worker) suspect(ctx context.Context, pos transport.Position, tries int) {
	switch w.inLog(ctx, pos.ID) {
	case entryHeld:
		w.needRepair()
		return
	case entryGone:
		w.f.lost(&LossError{Topic: w.topic, Epoch: pos.Epoch, From: pos.Seq, To: pos.Seq, Reason: EpochChanged})
		return
	}
	if tries >= maxSuspectTries || len(w.suspects) >= maxSuspects {
		w.f.lost(&LossError{Topic: w.topic, Epoch: pos.Epoch, From: pos.Seq, To: pos.Seq, Reason: EpochChanged})
		return
	}
	w.suspects = append(w.suspects, suspect{pos: pos, tries: tries + 1})
}

// recheck looks again at the suspects, after a head check.
func (w *worker) recheck(ctx context.Context) {
	old := w.suspects
	w.suspects = nil
	for _, s := range old {
		c := w.cursor
		if c.Epoch == s.pos.Epoch && c.Seq >= s.pos.Seq || c.ID == s.pos.ID || idAfter(c.ID, s.pos.ID) && c.Epoch == s.pos.Epoch {
			continue // delivered since
		}
		w.suspect(ctx, s.pos, s.tries)
	}
}

type entryState uint8

const (
	entryUnknown entryState = iota // the log could not be read consistently
	entryHeld
	entryGone
)

// inLog says whether the topic's log holds the entry with stream id id.
func (w *worker) inLog(ctx context.Context, id string) entryState {
	before, ok := predID(id)
	if !ok {
		return entryUnknown
	}
	for range 3 {
		head, err := w.f.tr.Head(ctx, w.topic)
		if err != nil {
			return entryUnknown
		}
		page, err := w.f.tr.Range(ctx, w.topic, transport.Position{Epoch: head.Epoch, ID: before}, 1)
		if err != nil {
			return entryUnknown
		}
		if page.Epoch != head.Epoch {
			continue // remade meanwhile
		}
		if len(page.Events) > 0 && page.Events[0].Position.ID == id {
			return entryHeld
		}
		return entryGone
	}
	return entryUnknown
}

// conflict checks the cursor's event against the log. When the log holds
// another event at the cursor's seq, the delivered one was not logged (a
// forged frame): that is reported, and the cursor steps back so that the
// logged event is delivered.
func (w *worker) conflict(ctx, hctx context.Context, d transport.Delivery) bool {
	c := w.cursor
	before, ok := predID(d.Position.ID)
	if !ok {
		w.f.c.duplicates.Add(1)
		return true
	}
	at := transport.Position{Epoch: c.Epoch, Seq: c.Seq - 1, ID: before}
	page, err := w.f.tr.Range(ctx, w.topic, at, 1)
	if err != nil || page.Epoch != c.Epoch || len(page.Events) == 0 || page.Events[0].Position.Seq != c.Seq ||
		page.Events[0].Position.ID == c.ID {
		w.f.c.duplicates.Add(1)
		return true
	}
	w.f.c.malformed.Add(1)
	w.f.report(fmt.Errorf("replay: topic %q: the event delivered at seq %d (stream id %s) is not in the backlog, which holds %s there: delivering that one",
		w.topic, c.Seq, c.ID, page.Events[0].Position.ID))
	w.cursor = at
	return w.catchUp(ctx, hctx, transport.Position{}) != stopping
}

// ordered delivers d after checking it against the cursor: duplicates are
// dropped, and a hole before d is reported as lost.
func (w *worker) ordered(ctx, hctx context.Context, d Delivery) bool {
	c := w.cursor
	seq := d.Position.Seq
	switch {
	case c.Epoch == "":
		if w.epochReset && seq > 1 {
			w.f.lost(&LossError{Topic: w.topic, Epoch: d.Position.Epoch, From: 1, To: seq - 1, Reason: Trimmed})
		}
		w.epochReset = false
	case d.Position.Epoch != c.Epoch:
		w.f.c.duplicates.Add(1)
		return true
	case seq <= c.Seq && idAfter(d.Position.ID, c.ID):
		// A newer entry with an old seq: Redis lost writes and reused seqs.
		w.rolledBack(c.Epoch, seq, c.Seq, false)
	case seq <= c.Seq:
		w.f.c.duplicates.Add(1)
		return true
	case seq > c.Seq+1:
		reason := Trimmed
		if !d.Replayed {
			reason = Missing
		}
		w.f.lost(&LossError{Topic: w.topic, Epoch: c.Epoch, From: c.Seq + 1, To: seq - 1, Reason: reason})
	}
	return w.deliver(ctx, hctx, d)
}

// deliver runs the handler until it succeeds, then advances the cursor.
// Once the follower is stopping it starts no new handler call.
func (w *worker) deliver(ctx, hctx context.Context, d Delivery) bool {
	if ctx.Err() != nil || !w.f.mayHandle() {
		return false
	}
	if d.Prepared == nil && w.f.cfg.prepare != nil {
		// Not prepared ahead: prepare it now, once for all attempts.
		d.Prepared = w.f.prepare(d.Delivery)
	}
	var bo *backoff.ExponentialBackOff
	for attempt := 1; ; attempt++ {
		d.Attempt = attempt
		err := call(hctx, w.f.h, d)
		if err == nil {
			break
		}
		if hctx.Err() != nil && errors.Is(err, hctx.Err()) {
			return false // stopped during the call: not a failure
		}
		if nack := (*NackError)(nil); errors.As(err, &nack) {
			w.f.c.nacks.Add(1)
			if hctx.Err() != nil || !sleep(ctx, nack.After) || !w.f.mayHandle() {
				return false
			}
			continue
		}
		w.f.c.handlerErrors.Add(1)
		w.f.report(&HandlerError{Topic: w.topic, Position: d.Position, Attempt: attempt, Err: err})
		if bo == nil {
			bo = w.f.newBackoff()
		}
		if hctx.Err() != nil || !sleep(ctx, bo.NextBackOff()) {
			return false
		}
	}
	w.cursor = d.Position
	w.atMarker = false
	if d.Replayed {
		w.f.c.replayed.Add(1)
	}
	w.f.c.delivered.Add(1)
	w.show()
	if w.f.cp != nil {
		w.f.cp.note(w.topic, d.Position)
	}
	return true
}

// checkHead compares the topic's head with the cursor. A head seen at the
// previous check that the cursor has still not reached while nothing is
// queued means a lost frame: repair.
func (w *worker) checkHead(ctx, hctx context.Context) bool {
	if len(w.suspects) > 0 {
		defer w.recheck(ctx)
	}
	head, err := w.f.tr.Head(ctx, w.topic)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
			return false
		}
		if !errors.Is(err, transport.ErrUnknownTopic) {
			w.f.report(fmt.Errorf("replay: topic %q: head check: %w", w.topic, err))
		}
		w.vanished(err, transport.Position{})
		return true
	}
	w.mu.Lock()
	w.head = head
	w.mu.Unlock()
	prev := w.lastHead
	w.lastHead = head
	behind := false
	switch {
	case w.cursor.Epoch != "" && head.Epoch != w.cursor.Epoch:
		behind = true
	case head.Epoch == w.cursor.Epoch && head.Seq < w.cursor.Seq && w.inbox.len() == 0:
		// Redis lost the last writes. Events written since may hold the
		// lost seqs already, after the cursor's stream id: deliver them
		// (which reports the seqs they reuse), then report what is still
		// missing and follow from the head.
		if w.catchUp(ctx, hctx, transport.Position{}) == stopping {
			return false
		}
		if w.cursor.Epoch != head.Epoch || w.cursor.Seq <= head.Seq {
			return true
		}
		if now, err := w.f.tr.Head(ctx, w.topic); err != nil || now != head {
			return true // moved on meanwhile (events may hold the seqs now): the next check looks again
		}
		w.rolledBack(head.Epoch, head.Seq+1, w.cursor.Seq, false)
		w.cursor = head
		w.atMarker = false
		w.show()
		return true
	case w.inbox.len() > 0:
	case prev.Epoch == head.Epoch && (w.cursor.Epoch == "" && prev.Seq > 0 || w.cursor.Epoch == head.Epoch && w.cursor.Seq < prev.Seq):
		behind = true
	}
	if !behind {
		return true
	}
	w.f.c.headRepairs.Add(1)
	return w.catchUp(ctx, hctx, transport.Position{}) != stopping
}

// vanished handles a head read's error: when it says the log the cursor is
// in is gone (deleted or evicted), what the log held after the cursor is
// lost, and is reported now rather than when the topic's next event
// reveals it (which may never come). The range is exact when the meta hash
// stayed (its seq; Trimmed), else it runs to the highest seq known of the
// epoch (the last head check, the live frame that led here; EpochChanged).
// The cursor moves to the range's end and keeps its stream id: a log made
// again in the epoch has later ids, so it is read from its first entry,
// which goes on at the seq after the range; and when a new epoch is made
// over that log later, sameLog still finds the entry after the cursor's id
// at the next seq (without an id it could not look, and would report the
// new log's events, still there, as lost).
func (w *worker) vanished(err error, live transport.Position) {
	var gone *transport.NoLogError
	c := w.cursor
	if c.Epoch == "" || !errors.As(err, &gone) {
		return
	}
	reason, top := EpochChanged, c.Seq
	if m := gone.Meta; m.Epoch == c.Epoch {
		reason, top = Trimmed, m.Seq
	} else {
		for _, p := range []transport.Position{w.lastHead, live} {
			if p.Epoch == c.Epoch {
				top = max(top, p.Seq)
			}
		}
	}
	if top <= c.Seq {
		return
	}
	w.f.lost(&LossError{Topic: w.topic, Epoch: c.Epoch, From: c.Seq + 1, To: top, Reason: reason})
	w.cursor = transport.Position{Epoch: c.Epoch, Seq: top, ID: c.ID}
	w.atMarker = false
	w.show()
}

// show publishes the cursor for Stats.
func (w *worker) show() {
	w.mu.Lock()
	w.shown = w.cursor
	w.mu.Unlock()
}

// idAfter reports whether backlog id a is after b (transport.IDAfter).
func idAfter(a, b string) bool { return transport.IDAfter(a, b) }

// predID returns the backlog id just before id, so that a read after it
// starts at id.
func predID(id string) (string, bool) {
	sid, ok := transport.ParseStreamID(id)
	if !ok {
		return "", false
	}
	prev, ok := sid.Prev()
	return prev.String(), ok
}
