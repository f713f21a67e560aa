package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/durabus/durabus/transport"
)

// ErrAlreadyRunning is returned by a second call of Follower.Run.
var ErrAlreadyRunning = errors.New("replay: follower already running")

// Handler handles one event. It is called for the events of one topic one
// at a time, in order. An error (or a panic, turned into a *PanicError) is
// reported through WithOnError and the call is retried with backoff until it
// succeeds or the follower stops: nothing is skipped by default. Use the
// middleware package's Retry and DeadLetter to bound that.
type Handler func(ctx context.Context, d Delivery) error

// Delivery is an event handed to a Handler.
type Delivery struct {
	transport.Delivery
	// Replayed is true when the event was read from the backlog rather than
	// received live.
	Replayed bool
	// Prepared is what the WithPrepare function returned for this event,
	// or nil when it was not run (it runs on backlog pages read ahead).
	Prepared any
	// Attempt counts the handler calls for this event in this follower:
	// 1 for the first. A restart, or a takeover by another process,
	// counts from 1 again.
	Attempt int
}

// DefaultNackDelay is how soon an event is delivered again after its
// handler returned Nack(err, 0).
const DefaultNackDelay = 10 * time.Millisecond

// NackError is a handler's request to have its event delivered again soon,
// after After, instead of after the follower's backoff (which grows to
// seconds while a handler keeps failing). The follower does not report it
// as a handler error (it counts it in Stats.Nacks) and does not grow its
// backoff for it. The topic waits meanwhile: order is kept.
type NackError struct {
	Err   error
	After time.Duration
}

// Nack returns a *NackError: return it from a handler to have the event
// delivered again after the given delay (DefaultNackDelay when 0). err
// says why; it may be nil.
func Nack(err error, after time.Duration) error {
	if after <= 0 {
		after = DefaultNackDelay
	}
	return &NackError{Err: err, After: after}
}

func (e *NackError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("replay: nack: deliver again in %v", e.After)
	}
	return fmt.Sprintf("replay: nack: deliver again in %v: %v", e.After, e.Err)
}

// Unwrap returns the reason given.
func (e *NackError) Unwrap() error { return e.Err }

// HandlerError reports a failed handler call; the call is retried.
type HandlerError struct {
	Topic    string
	Position transport.Position
	Attempt  int
	Err      error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("replay: handler for topic %q seq %d failed (attempt %d): %v", e.Topic, e.Position.Seq, e.Attempt, e.Err)
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// Follower delivers the events of its topics, or of the topics matching its
// pattern, to one Handler: in order per topic, at least once, with every
// unrecoverable loss reported. Create it with New, start it with Run.
// Its methods are safe for concurrent use.
type Follower struct {
	tr transport.Transport
	// The transport's optional abilities this follower uses (nil when it
	// does not need them; New refuses what it needs and they lack).
	patterns transport.PatternSubscriber
	lister   transport.TopicLister
	seeker   transport.Seeker // nil: a NewOnly start is the head
	store    transport.CheckpointStore
	lineage  transport.LineageReader // nil: sameLog goes by seqs alone
	h        Handler
	cfg      config
	log      *slog.Logger
	cp       *checkpointer

	ran       atomic.Bool
	connected atomic.Bool
	c         counters

	// ready is closed once subscribed with every initial topic's start
	// resolved; initPending counts what is still missing (see Ready).
	ready       chan struct{}
	readyOnce   sync.Once
	initPending atomic.Int64

	// subscribedAt is when the first subscription was asked for: the
	// moment NewOnly means, should the head not be readable at once.
	subscribedAt time.Time

	holder string                // this follower's id in its consumer's lease
	lease  atomic.Pointer[lease] // the current term's lease, nil when not owned
	// vanished are the topics whose checkpoint was lost (checkVanished);
	// set before the workers start.
	vanished map[string]bool
	// kept are the cursors of the last term of ownership (see reset).
	kept         map[string]transport.Position
	keptSuspects map[string][]suspect

	mu      sync.Mutex
	workers map[string]*worker
	order   []*worker // in creation order, for the head-check rotation
}

// New returns a Follower of tr that hands events to h. Exactly one of
// WithTopics and WithPattern is required.
func New(tr transport.Transport, h Handler, opts ...Option) (*Follower, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if tr == nil {
		cfg.invalid("nil transport")
	}
	if h == nil {
		cfg.invalid("nil handler")
	}
	if (len(cfg.topics) == 0) == (cfg.pattern == "") {
		cfg.invalid("give either WithTopics or WithPattern")
	}
	var feat transport.Features
	if tr != nil {
		feat = transport.FeaturesOf(tr)
		if cfg.pattern != "" && !(feat.Patterns && feat.Topics) {
			cfg.invalid(fmt.Sprintf("WithPattern: the transport %T offers no pattern subscriptions and topic listing (transport.PatternSubscriber, transport.TopicLister)", tr))
		}
		if cfg.consumer != "" && !feat.Checkpoints {
			cfg.invalid(fmt.Sprintf("WithConsumer: the transport %T stores no checkpoints (transport.CheckpointStore)", tr))
		}
		if cfg.start.kind == startSince && !feat.Seek {
			cfg.invalid(fmt.Sprintf("WithStart(Since): the transport %T cannot seek by time (transport.Seeker)", tr))
		}
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	f := &Follower{tr: tr, h: h, cfg: cfg, log: log, workers: make(map[string]*worker), ready: make(chan struct{})}
	if feat.Patterns {
		f.patterns = tr.(transport.PatternSubscriber)
	}
	if feat.Topics {
		f.lister = tr.(transport.TopicLister)
	}
	if feat.Seek {
		f.seeker = tr.(transport.Seeker)
	}
	if feat.Checkpoints {
		f.store = tr.(transport.CheckpointStore)
	}
	f.lineage, _ = tr.(transport.LineageReader)
	if cfg.consumer != "" {
		f.cp = newCheckpointer(f)
		f.holder = cfg.holder
		if f.holder == "" {
			f.holder = HolderID()
		}
	}
	return f, nil
}

// Run follows until ctx ends, then waits for the handlers in flight (up to
// the drain timeout), saves the last checkpoints of a durable consumer and
// returns nil. It returns an error early only when the transport is closed.
// A Follower runs once.
//
// A durable follower on a transport that implements transport.Owner first
// takes the lease on its consumer: while another process holds it, Run
// waits as a standby (logged once, and reported through WithOnError as a
// *transport.HeldError) and takes over when that lease lapses or is
// released. When it loses the lease itself (not renewed in time, for
// example after the process was paused, or taken over), it stops handling
// before the lease can have lapsed in the back end, and goes back to
// standby.
func (f *Follower) Run(ctx context.Context) error {
	if !f.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	for {
		lost, err := f.runOwned(ctx)
		if !lost || ctx.Err() != nil {
			return err
		}
		f.log.Warn("durabus: lost the lease on the durable consumer; waiting as a standby", "consumer", f.cfg.consumer)
		f.reset()
	}
}

// run is what one term of ownership (runOwned) hands to the functions
// that start and feed its workers.
type run struct {
	// ctx ends the term; hctx is the handlers' ctx, cancelled only after
	// the drain timeout once ctx has ended.
	ctx, hctx context.Context
	// saved holds the checkpoints loaded at the start of the term (nil for
	// a follower that is not durable).
	saved map[string]transport.Position
	// wg counts the term's goroutines, workers included.
	wg *sync.WaitGroup
}

// runOwned is one term of ownership: claim (for a durable follower on an
// Owner), follow, drain, save. lost is true when it ended because the
// lease was lost.
func (f *Follower) runOwned(ctx context.Context) (lost bool, err error) {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var l *lease
	if o, ok := f.tr.(transport.Owner); ok && f.cp != nil {
		if l = f.claim(ctx, o); l == nil {
			return false, nil
		}
		l.stop = stop
		f.lease.Store(l)
	}
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	var wg sync.WaitGroup
	if l != nil {
		wg.Add(1)
		go func() { defer wg.Done(); f.keep(runCtx, l, stop) }()
	}
	var saved map[string]transport.Position
	if f.cp != nil {
		saved = f.loadCheckpoints(runCtx)
		for t, pos := range f.kept {
			if saved != nil && f.keptAhead(runCtx, t, pos, saved) {
				saved[t] = pos
			}
		}
		f.vanished = f.checkVanished(l, saved)
		wg.Add(1)
		go func() { defer wg.Done(); f.cp.run(runCtx) }()
	}

	wg.Add(1)
	go func() { defer wg.Done(); f.headChecks(runCtx) }()
	err = f.follow(&run{ctx: runCtx, hctx: hctx, saved: saved, wg: &wg})

	stop()
	drain := time.AfterFunc(f.cfg.drainTimeout, cancelHandlers)
	wg.Wait()
	drain.Stop()
	if f.cp != nil {
		f.cp.flush(context.WithoutCancel(ctx))
	}
	if l != nil && !l.lost.Load() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointSaveTimeout)
		if err := l.o.ReleaseConsumer(rctx, l.claim); err != nil {
			f.report(fmt.Errorf("replay: release consumer %q: %w", f.cfg.consumer, err))
		}
		cancel()
	}
	return l != nil && l.lost.Load(), err
}

// reset forgets the workers of a term of ownership that ended: the next
// term starts from the checkpoints in the back end.
//
// The cursors it reached are kept: when its checkpoints are behind them
// (not saved yet, or evicted), the next term goes on from the cursors, so
// that this process never hands an entry over twice.
func (f *Follower) reset() {
	f.mu.Lock()
	// Merged, not replaced: a term that ended before it started a topic's
	// worker (a lease lost right after it was claimed) keeps what the
	// terms before it reached on that topic.
	if f.kept == nil {
		f.kept = make(map[string]transport.Position, len(f.workers))
	}
	if f.keptSuspects == nil {
		f.keptSuspects = make(map[string][]suspect)
	}
	for t, w := range f.workers {
		if w.cursor.Epoch != "" {
			f.kept[t] = w.cursor
		}
		if len(w.suspects) > 0 {
			f.keptSuspects[t] = w.suspects
		} else {
			delete(f.keptSuspects, t)
		}
	}
	f.workers = make(map[string]*worker)
	f.order = nil
	f.mu.Unlock()
	f.lease.Store(nil)
	f.cp = newCheckpointer(f)
}

// keptAhead reports whether the cursor pos this process reached on topic
// in an earlier term is ahead of the saved checkpoint: there is none, or
// it is behind in the same epoch, or it is in an epoch that is no longer
// the topic's while pos's is (a save lost with its epoch change), or the
// topic's log went on under a newer epoch that the checkpoint does not
// name either, and still holds pos's entry (its meta hash was remade since
// pos was reached). Going on from pos keeps this process from handing an
// entry over twice: from an older checkpoint, the log's entries up to pos
// would be read again under the newer epoch, as a new log.
func (f *Follower) keptAhead(ctx context.Context, topic string, pos transport.Position, saved map[string]transport.Position) bool {
	cp, ok := saved[topic]
	switch {
	case !ok:
		return true
	case cp.Epoch == pos.Epoch:
		return cp.Seq < pos.Seq
	}
	head, err := f.tr.Head(ctx, topic)
	switch {
	case err != nil:
		return false
	case head.Epoch == pos.Epoch:
		return true
	case cp.Epoch == head.Epoch:
		// Saved in the current epoch, which this process never reached:
		// written by another owner, ahead of pos.
		return false
	}
	before, ok := predID(pos.ID)
	if !ok || pos.Seq == 0 {
		return false
	}
	page, err := f.tr.Range(ctx, topic, transport.Position{Epoch: head.Epoch, Seq: pos.Seq - 1, ID: before}, 1)
	return err == nil && len(page.Events) > 0 && page.Events[0].Position.ID == pos.ID && page.Events[0].Position.Seq == pos.Seq
}

// checkVanished reports the topics that the consumer's record says had a
// saved position but whose checkpoint is gone (evicted, or deleted by
// hand): each is a CheckpointLost loss, and the topic is followed from the
// oldest event its backlog holds.
func (f *Follower) checkVanished(l *lease, saved map[string]transport.Position) map[string]bool {
	if l == nil {
		return nil
	}
	var out map[string]bool
	for _, t := range l.claim.Known {
		if _, ok := saved[t]; ok || !f.takes(t) {
			continue
		}
		if out == nil {
			out = make(map[string]bool)
		}
		out[t] = true
		f.lost(&LossError{Topic: t, Reason: CheckpointLost})
	}
	return out
}

// takes reports whether the follower follows topic.
func (f *Follower) takes(topic string) bool {
	if f.cfg.pattern != "" {
		return f.follows(topic)
	}
	for _, t := range f.cfg.topics {
		if t == topic {
			return true
		}
	}
	return false
}

// saveCheckpoints stores cps for the durable consumer: under its lease
// when it has one (ErrFenced when lost, which stops this term).
func (f *Follower) saveCheckpoints(ctx context.Context, cps map[string]transport.Position) error {
	l := f.lease.Load()
	if l == nil {
		return f.store.SaveCheckpoints(ctx, f.cfg.consumer, cps)
	}
	err := l.o.SaveClaimed(ctx, l.claim, cps)
	if errors.Is(err, transport.ErrFenced) {
		// A stale write refused: reported every time, also when this
		// follower's clock had already told it the lease was gone (a
		// process paused past its lease flushes on waking).
		f.report(fmt.Errorf("replay: consumer %q: checkpoint write refused: %w: %w", f.cfg.consumer, ErrNotOwner, err))
		if !l.lost.Swap(true) {
			l.stop()
		}
	}
	return err
}

// mayHandle reports whether a handler call may start: always, unless the
// follower's lease on its consumer was lost or is about to lapse.
func (f *Follower) mayHandle() bool {
	l := f.lease.Load()
	if l.valid() {
		return true
	}
	if !l.lost.Swap(true) {
		f.report(fmt.Errorf("replay: consumer %q: lease about to lapse, handling stopped: %w", f.cfg.consumer, ErrNotOwner))
	}
	l.stop()
	return false
}

// follow runs the subscribe / dispatch / resubscribe loop until ctx ends.
func (f *Follower) follow(r *run) error {
	ctx := r.ctx
	bo := f.newBackoff()
	first := true
	for {
		if first {
			f.subscribedAt = time.Now()
		}
		sub, err := f.subscribe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, transport.ErrClosed) {
				return err
			}
			f.report(fmt.Errorf("replay: subscribe: %w", err))
			if !sleep(ctx, bo.NextBackOff()) {
				return nil
			}
			continue
		}
		f.connected.Store(true)
		since := time.Now()
		if first {
			first = false
			f.initPending.Store(1) // held until every initial worker exists
			f.startWorkers(r)
			f.initDone()
		} else {
			f.reconnected(r, "resubscribed")
		}
		f.dispatch(r, sub)
		f.connected.Store(false)
		_ = sub.Close()
		if ctx.Err() != nil {
			return nil
		}
		if err := sub.Err(); errors.Is(err, transport.ErrClosed) {
			return err
		} else if err != nil {
			f.report(fmt.Errorf("replay: subscription ended: %w", err))
		}
		if time.Since(since) > f.cfg.boMax {
			bo.Reset()
		}
		if !sleep(ctx, bo.NextBackOff()) {
			return nil
		}
	}
}

func (f *Follower) subscribe(ctx context.Context) (transport.Subscription, error) {
	if f.cfg.pattern != "" {
		return f.patterns.SubscribePattern(ctx, f.cfg.pattern)
	}
	return f.tr.Subscribe(ctx, f.cfg.topics...)
}

// Consumer returns the durable consumer name (WithConsumer), "" when the
// follower is not durable.
func (f *Follower) Consumer() string { return f.cfg.consumer }

// Owner reports whether a durable follower holds its consumer's lease now
// (it may start handler calls): false for a standby, or one whose lease
// lapsed by its own clock. A follower that is not durable is always the
// owner.
func (f *Follower) Owner() bool {
	if f.cfg.consumer == "" {
		return true
	}
	l := f.lease.Load()
	return l != nil && l.valid()
}

// Ready returns a channel that is closed once the follower is subscribed
// and every topic it follows from the start has resolved its start
// position: from then on, every event published is delivered.
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// initDone counts one initial worker (or the startup guard) as started.
func (f *Follower) initDone() {
	if f.initPending.Add(-1) == 0 {
		f.readyOnce.Do(func() { close(f.ready) })
	}
}

// startWorkers starts a worker per followed topic: the named ones, or the
// known topics matching the pattern (and those with a saved checkpoint).
func (f *Follower) startWorkers(r *run) {
	if f.cfg.pattern == "" {
		for _, t := range f.cfg.topics {
			f.worker(r, t, false)
		}
		return
	}
	for t := range r.saved {
		if f.follows(t) {
			f.worker(r, t, false)
		}
	}
	f.discover(r, false)
}

// discover starts workers for the known topics matching the pattern. Topics
// found after the start are followed from their beginning.
func (f *Follower) discover(r *run, late bool) {
	topics, err := f.lister.Topics(r.ctx, f.cfg.pattern)
	if err != nil {
		if r.ctx.Err() == nil {
			f.report(fmt.Errorf("replay: list topics %q: %w", f.cfg.pattern, err))
		}
		return
	}
	for _, t := range topics {
		if f.follows(t) {
			f.worker(r, t, late)
		}
	}
}

// follows reports whether the follower's pattern takes topic.
func (f *Follower) follows(topic string) bool {
	return transport.Match(f.cfg.pattern, topic) && (f.cfg.exclude == nil || !f.cfg.exclude(topic))
}

// worker returns the worker of topic, starting it when new.
func (f *Follower) worker(r *run, topic string, late bool) *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w := f.workers[topic]; w != nil {
		return w
	}
	start := f.cfg.start
	if late {
		start = Beginning()
	}
	fromSaved := false
	if pos, ok := r.saved[topic]; ok {
		start, fromSaved = After(pos), true
	} else if f.vanished[topic] {
		start = Beginning()
	}
	w := &worker{
		f:         f,
		topic:     topic,
		start:     start,
		fromSaved: fromSaved,
		initial:   !late && f.initPending.Load() > 0,
		inbox:     newInbox(f.cfg.inboxSize),
		check:     make(chan struct{}, 1),
		repair:    make(chan struct{}, 1),
	}
	w.suspects = f.keptSuspects[topic]
	w.catching.Store(true) // until its first catch-up ends
	f.workers[topic] = w
	f.order = append(f.order, w)
	if w.initial {
		f.initPending.Add(1)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		w.run(r.ctx, r.hctx)
	}()
	return w
}

func (f *Follower) lookup(topic string) *worker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.workers[topic]
}

func (f *Follower) each(fn func(*worker)) {
	f.mu.Lock()
	ws := make([]*worker, 0, len(f.workers))
	for _, w := range f.workers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	for _, w := range ws {
		fn(w)
	}
}

// relistEvery is how many head-check intervals pass between two listings
// of the topics matching a pattern (which catch a new topic whose first
// frames were all lost).
const relistEvery = 5

// maxHeadChecks bounds the head checks started per interval: with more
// topics than that, they take turns, so a follower of 100 000 topics does
// not send 50 000 reads a second to Redis.
const maxHeadChecks = 500

// headChecks asks the workers, in turns, to compare their topic's head
// with their cursor, every head-check interval.
func (f *Follower) headChecks(ctx context.Context) {
	t := time.NewTicker(f.cfg.headCheck)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		ws := f.order
		f.mu.Unlock()
		for i := 0; i < len(ws) && i < maxHeadChecks; i++ {
			ws[(next+i)%len(ws)].dueHeadCheck()
		}
		if len(ws) > 0 {
			next = (next + maxHeadChecks) % len(ws)
		}
	}
}

// reconnected makes every topic repair from the backlog: whatever was
// published while the connection was down is there.
func (f *Follower) reconnected(r *run, reason string) {
	f.c.reconnects.Add(1)
	f.log.Warn("durabus: live connection re-established, repairing from backlog", "reason", reason)
	if f.cfg.onReconnect != nil {
		f.cfg.onReconnect(reason)
	}
	if f.cfg.pattern != "" {
		f.discover(r, true)
	}
	f.each((*worker).needRepair)
}

// dispatch routes the subscription's events to the topic workers until the
// subscription ends. It never blocks on a worker.
func (f *Follower) dispatch(r *run, sub transport.Subscription) {
	var relist <-chan time.Time
	if f.cfg.pattern != "" {
		t := time.NewTicker(relistEvery * f.cfg.headCheck)
		defer t.Stop()
		relist = t.C
	}
	events := sub.Events()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-relist:
			f.discover(r, true)
		case ev, ok := <-events:
			if !ok {
				return
			}
			switch ev.Kind {
			case transport.Frame:
				w := f.lookup(ev.Delivery.Topic)
				if w == nil {
					if f.cfg.pattern == "" || !f.follows(ev.Delivery.Topic) {
						continue
					}
					w = f.worker(r, ev.Delivery.Topic, true)
				}
				d := Delivery{Delivery: ev.Delivery}
				if f.cfg.prepare != nil && ev.Delivery.Rollback == nil && !w.catching.Load() && w.inbox.backlogged() {
					// The worker is busy: prepare the frame here, off its
					// goroutine. An idle worker prepares its frames itself
					// (in parallel with other topics' workers), and frames
					// likely to be dropped or duplicates are not prepared.
					d.Prepared = f.prepare(ev.Delivery)
				}
				if !w.inbox.push(d) {
					f.c.overflows.Add(1)
					w.needRepair()
				}
			case transport.Dropped:
				if w := f.lookup(ev.Topic); w != nil {
					w.needRepair()
				} else if ev.Topic == "" {
					f.each((*worker).needRepair)
				}
			case transport.Reconnected:
				f.reconnected(r, "reconnected")
			case transport.Stalled:
				f.log.Warn("durabus: live connection stalled", "err", ev.Err)
				f.each((*worker).needRepair)
			case transport.Malformed:
				f.c.malformed.Add(1)
				f.report(fmt.Errorf("replay: malformed frame on topic %q skipped: %w", ev.Topic, ev.Err))
			}
		}
	}
}

func (f *Follower) loadCheckpoints(ctx context.Context) map[string]transport.Position {
	bo := f.newBackoff()
	for {
		cps, err := f.store.LoadCheckpoints(ctx, f.cfg.consumer)
		if err == nil {
			return cps
		}
		if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
			return nil
		}
		f.report(fmt.Errorf("replay: load checkpoints of consumer %q: %w", f.cfg.consumer, err))
		if !sleep(ctx, bo.NextBackOff()) {
			return nil
		}
	}
}

func (f *Follower) lost(e *LossError) {
	f.c.lossReports.Add(1)
	f.c.lost.Add(e.Count())
	f.log.Error("durabus: events lost", "topic", e.Topic, "epoch", e.Epoch, "from", e.From, "to", e.To, "next", e.Next, "reason", string(e.Reason))
	if f.cfg.onLoss != nil {
		f.cfg.onLoss(e)
	}
}

func (f *Follower) report(err error) {
	if p := (*PanicError)(nil); errors.As(err, &p) {
		f.log.Error("durabus: handler panicked", "err", err, "stack", string(p.Stack))
	} else {
		f.log.Warn("durabus: follower", "err", err)
	}
	f.reportOnly(err)
}

// reportOnly passes err to the WithOnError callback without logging it.
func (f *Follower) reportOnly(err error) {
	if f.cfg.onError != nil {
		f.cfg.onError(err)
	}
}

func (f *Follower) newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = f.cfg.boInitial
	bo.MaxInterval = f.cfg.boMax
	bo.Multiplier = f.cfg.boMultiplier
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// prepare runs the WithPrepare function on d; a panic becomes its result,
// as a *PanicError, which the handler gets as Delivery.Prepared (it must
// not crash the goroutine that reads for every topic).
func (f *Follower) prepare(d transport.Delivery) (v any) {
	defer func() {
		if r := recover(); r != nil {
			v = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return f.cfg.prepare(d)
}

// call runs h, turning a panic into a *PanicError.
func call(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h(ctx, d)
}

// sortedTopics returns the keys of m in order.
func sortedTopics(ws map[string]*worker) []string {
	out := make([]string, 0, len(ws))
	for t := range ws {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
