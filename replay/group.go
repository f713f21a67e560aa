package replay

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/transport"
)

// Defaults of a Group.
const (
	// DefaultGroupLease is the lease of each topic a group member owns,
	// and how long a member stays in the group without a heartbeat: a
	// member that dies is replaced within it (plus one tick).
	DefaultGroupLease = 5 * time.Second
	// DefaultGroupTick is how often a member sends its heartbeat and works
	// out its share again: a member that leaves with Close is replaced
	// within about one tick.
	DefaultGroupTick = 200 * time.Millisecond
)

// Group is one member of a consumer group: the processes that run a Group
// of one name share its topics (those given with WithTopics, typically the
// partitions of a partitioned topic, or those matching WithPattern), each
// topic owned by one member at a time.
//
// Each topic is a durable consumer of its own, named "<group>@<topic>",
// with its own checkpoint and its own lease and fencing token
// (transport.Owner): a member handles a topic only while it holds that
// lease, by its own monotonic clock, and a checkpoint write under a lease
// that was taken over is refused. So every event is handled by the group
// at least once, in order per topic; what can run twice is the handler in
// flight when a member was paused past its lease, and the events after the
// last checkpoint of a member that died.
//
// Members find each other through the transport (transport.GroupStore):
// each sends a heartbeat every tick and works out its share from the live
// members, the same way on every member (rendezvous hashing, with at most
// one topic more than another member). It releases the topics that are no
// longer its share, after their handlers and checkpoints are done, and
// takes the new ones as their leases come free.
type Group struct {
	name    string
	id      string
	host    string
	started time.Time
	tr      transport.Transport
	store   transport.GroupStore
	lister  transport.TopicLister
	h       Handler
	cfg     config
	opts    []Option
	log     *slog.Logger
	ttl     time.Duration
	tick    time.Duration

	ran   atomic.Bool
	ready chan struct{}

	mu       sync.Mutex
	units    map[string]*groupUnit // topics this member runs (or is stopping)
	members  []transport.GroupMember
	wg       sync.WaitGroup
	c        groupCounters
	lastErr  error
	readyOne bool
}

type groupUnit struct {
	f       *Follower
	stop    context.CancelFunc
	done    chan struct{}
	leaving bool      // being released
	since   time.Time // when this member started it
	owned   bool      // its lease was taken (the handover time is counted)
}

type groupCounters struct {
	rebalances, acquired, released, lost atomic.Uint64
	handover, handoverMax                atomic.Int64 // ns
}

// NewGroup returns a member of the consumer group name for the topics of
// opts (WithTopics or WithPattern), delivering to h. The other options
// apply to each topic's follower; WithConsumer is refused (each topic's
// consumer is "<group>@<topic>"), WithLease sets the lease of each topic
// and the member's heartbeat ttl (default DefaultGroupLease), and
// WithLeaseHolder the member's id (default HolderID()).
//
// The transport must offer GroupStore, Owner and CheckpointStore (and
// TopicLister with WithPattern).
func NewGroup(tr transport.Transport, name string, h Handler, opts ...Option) (*Group, error) {
	if tr == nil || h == nil {
		return nil, fmt.Errorf("%w: NewGroup needs a transport and a handler", ErrInvalidOption)
	}
	cfg := defaultConfig()
	cfg.leaseTTL = 0
	for _, o := range opts {
		o(&cfg)
	}
	var errs []error
	errs = append(errs, cfg.errs...)
	if err := ValidateConsumer(name + "@x"); err != nil || name == "" {
		errs = append(errs, fmt.Errorf("%w: group name %q: want 1 to 398 printable ASCII bytes without spaces", ErrInvalidOption, name))
	}
	if cfg.consumer != "" {
		errs = append(errs, fmt.Errorf("%w: WithConsumer with a group: each topic's consumer is <group>@<topic>", ErrInvalidOption))
	}
	if len(cfg.topics) == 0 && cfg.pattern == "" {
		errs = append(errs, fmt.Errorf("%w: a group needs WithTopics or WithPattern", ErrInvalidOption))
	}
	store, _ := tr.(transport.GroupStore)
	feat := transport.FeaturesOf(tr)
	switch {
	case store == nil:
		errs = append(errs, fmt.Errorf("replay: group %q: the transport %T keeps no group membership (transport.GroupStore): %w", name, tr, errors.ErrUnsupported))
	case !feat.Ownership || !feat.Checkpoints:
		errs = append(errs, fmt.Errorf("replay: group %q: the transport %T has no consumer leases or checkpoints (transport.Owner, transport.CheckpointStore): %w", name, tr, errors.ErrUnsupported))
	case cfg.pattern != "" && !feat.Topics:
		errs = append(errs, fmt.Errorf("replay: group %q: pattern %q: the transport %T lists no topics (transport.TopicLister): %w", name, cfg.pattern, tr, errors.ErrUnsupported))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ttl := cfg.leaseTTL
	if ttl == 0 {
		ttl = DefaultGroupLease
	}
	id := cfg.holder
	if id == "" {
		id = HolderID()
	}
	host, _ := os.Hostname()
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Group{name: name, id: id, host: host, tr: tr, store: store, h: h, cfg: cfg, opts: opts, log: log,
		ttl: ttl, tick: min(DefaultGroupTick, ttl/5), ready: make(chan struct{}), units: map[string]*groupUnit{}}
	if cfg.pattern != "" {
		g.lister = tr.(transport.TopicLister)
	}
	return g, nil
}

// Name returns the group's name; ID the member's id.
func (g *Group) Name() string { return g.name }

// ID returns the member's id (its lease holder id).
func (g *Group) ID() string { return g.id }

// Ready is closed once the member has joined and every topic of its first
// share is live (or was handed to another member meanwhile).
func (g *Group) Ready() <-chan struct{} { return g.ready }

// Owned returns the topics whose lease this member holds now, sorted.
func (g *Group) Owned() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for t, u := range g.units {
		if !u.leaving && u.f.Owner() {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// Members returns the group's live members as of this member's last
// heartbeat.
func (g *Group) Members() []transport.GroupMember {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.members)
}

// GroupStats are a member's counters.
type GroupStats struct {
	// Owned lists the topics this member holds; Members the group's live
	// members' ids at the last heartbeat.
	Owned   []string
	Members []string
	// Rebalances counts the changes of this member's share; Acquired and
	// Released the topics it took and gave up; LeaseLosses the topics
	// whose lease it lost without giving them up (paused past the lease,
	// or taken over).
	Rebalances, Acquired, Released, LeaseLosses uint64
	// Handover is how long this member waited for the lease of the topic
	// it took last, from the moment the topic became its share (the
	// previous owner finishing its handlers and checkpoints, or its lease
	// lapsing); HandoverMax the longest such wait.
	Handover, HandoverMax time.Duration
	// Followers has the stats of each topic's follower this member runs.
	Followers map[string]Stats
}

// Stats returns the counters and cursors of the followers this member runs
// now, summed as one follower of their topics would show them: Connected
// when every one is.
func (g *Group) Stats() Stats {
	g.mu.Lock()
	fs := make([]*Follower, 0, len(g.units))
	for _, u := range g.units {
		fs = append(fs, u.f)
	}
	g.mu.Unlock()
	// A member with no topic (a spare) is connected: nothing of its own
	// is down.
	s := Stats{Connected: true}
	for _, f := range fs {
		x := f.Stats()
		s.Delivered += x.Delivered
		s.Replayed += x.Replayed
		s.Duplicates += x.Duplicates
		s.Gaps += x.Gaps
		s.Repairs += x.Repairs
		s.HeadRepairs += x.HeadRepairs
		s.Lost += x.Lost
		s.LossReports += x.LossReports
		s.Reconnects += x.Reconnects
		s.Malformed += x.Malformed
		s.Overflows += x.Overflows
		s.HandlerErrors += x.HandlerErrors
		s.Nacks += x.Nacks
		s.Checkpoints += x.Checkpoints
		s.Connected = s.Connected && x.Connected
		s.Topics = append(s.Topics, x.Topics...)
	}
	sort.Slice(s.Topics, func(i, j int) bool { return s.Topics[i].Topic < s.Topics[j].Topic })
	return s
}

// GroupStats returns a snapshot of the member's group counters.
func (g *Group) GroupStats() GroupStats {
	s := GroupStats{Owned: g.Owned(), Rebalances: g.c.rebalances.Load(), Acquired: g.c.acquired.Load(),
		Released: g.c.released.Load(), LeaseLosses: g.c.lost.Load(), Followers: map[string]Stats{},
		Handover: time.Duration(g.c.handover.Load()), HandoverMax: time.Duration(g.c.handoverMax.Load())}
	g.mu.Lock()
	for _, m := range g.members {
		s.Members = append(s.Members, m.ID)
	}
	for t, u := range g.units {
		s.Followers[t] = u.f.Stats()
	}
	g.mu.Unlock()
	return s
}

// Run takes part in the group until ctx ends: it sends heartbeats, runs
// the followers of this member's share and hands topics over as members
// come and go. When ctx ends it stops its followers (their handlers finish
// and their checkpoints are saved), releases their leases and leaves the
// group, so that the others take over at once.
func (g *Group) Run(ctx context.Context) error {
	if !g.ran.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	g.started = time.Now()
	defer g.leave()
	t := time.NewTicker(g.tick)
	defer t.Stop()
	var topics []string
	listed := g.cfg.pattern == ""
	lastList := time.Time{}
	// Join first, and give the members that start at the same time (a
	// deployment) two ticks to show up, so that each does not take every
	// topic for itself and then hand most of them over again.
	g.join(ctx)
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(2 * g.tick):
	}
	for {
		if g.cfg.pattern != "" && time.Since(lastList) >= max(g.tick*5, time.Second) {
			if ts, err := g.lister.Topics(ctx, g.cfg.pattern); err == nil {
				topics = topics[:0]
				for _, tp := range ts {
					if g.cfg.exclude == nil || !g.cfg.exclude(tp) {
						topics = append(topics, tp)
					}
				}
				lastList, listed = time.Now(), true
			} else if ctx.Err() == nil {
				g.report(fmt.Errorf("replay: group %q: list topics %q: %w", g.name, g.cfg.pattern, err))
			}
		} else if g.cfg.pattern == "" {
			topics = g.cfg.topics
		}
		if listed {
			g.round(ctx, topics)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// join sends the first heartbeat, so that the others count the member in
// before it takes a share (a failure is reported by the rounds).
func (g *Group) join(ctx context.Context) {
	hctx, cancel := context.WithTimeout(ctx, g.ttl/2)
	defer cancel()
	_, _ = g.store.Heartbeat(hctx, g.name, transport.GroupMember{ID: g.id, Host: g.host, Started: g.started}, g.ttl)
}

// round sends one heartbeat and brings the member's followers to its
// share.
func (g *Group) round(ctx context.Context, topics []string) {
	hctx, cancel := context.WithTimeout(ctx, g.ttl/2)
	members, err := g.store.Heartbeat(hctx, g.name, transport.GroupMember{ID: g.id, Host: g.host, Started: g.started, Owns: g.Owned()}, g.ttl)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			g.report(fmt.Errorf("replay: group %q: heartbeat: %w", g.name, err))
		}
		return // keep what runs: the leases guard it
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	share := assign(topics, ids, g.id)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = members
	want := make(map[string]bool, len(share))
	for _, t := range share {
		want[t] = true
	}
	changed := false
	for t, u := range g.units {
		select {
		case <-u.done:
			// Stopped: released, or ended by itself (a fatal error,
			// reported): started again if it is still the share.
			delete(g.units, t)
			continue
		default:
		}
		switch owner := u.f.Owner(); {
		case !u.owned && owner && !u.leaving:
			u.owned = true
			d := int64(time.Since(u.since))
			g.c.handover.Store(d)
			if d > g.c.handoverMax.Load() {
				g.c.handoverMax.Store(d)
			}
		case u.owned && !owner && !u.leaving:
			// Its lease lapsed by this member's clock (a pause, Redis
			// unreachable) or was taken over: the follower stands by.
			u.owned = false
			u.since = time.Now()
			g.c.lost.Add(1)
		}
		if !want[t] && !u.leaving {
			u.leaving = true
			u.stop()
			g.c.released.Add(1)
			changed = true
		}
	}
	for _, t := range share {
		if g.units[t] != nil {
			continue // running, or still stopping: started again next round
		}
		if err := g.startLocked(ctx, t); err != nil {
			g.report(err)
			continue
		}
		changed = true
	}
	if changed {
		g.c.rebalances.Add(1)
	}
	if !g.readyOne {
		ok := true
		for _, t := range share {
			u := g.units[t]
			if u == nil {
				ok = false
				break
			}
			select {
			case <-u.f.Ready():
			default:
				ok = false
			}
		}
		if ok {
			g.readyOne = true
			close(g.ready)
		}
	}
}

// startLocked starts the follower of topic t; g.mu is held.
func (g *Group) startLocked(ctx context.Context, t string) error {
	opts := append(slices.Clone(g.opts),
		withUnit(t, g.tick), WithConsumer(g.name+"@"+t), WithLeaseHolder(g.id), WithLease(g.ttl))
	f, err := New(g.tr, g.h, opts...)
	if err != nil {
		return fmt.Errorf("replay: group %q: topic %q: %w", g.name, t, err)
	}
	fctx, stop := context.WithCancel(ctx)
	u := &groupUnit{f: f, stop: stop, done: make(chan struct{}), since: time.Now()}
	g.units[t] = u
	g.c.acquired.Add(1)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(u.done)
		defer stop()
		if err := f.Run(fctx); err != nil && fctx.Err() == nil {
			g.report(fmt.Errorf("replay: group %q: topic %q: %w", g.name, t, err))
		}
	}()
	return nil
}

// leave stops every follower (their handlers finish, checkpoints are
// saved, leases released), then leaves the group.
func (g *Group) leave() {
	g.mu.Lock()
	for _, u := range g.units {
		u.leaving = true
		u.stop()
	}
	g.mu.Unlock()
	g.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), g.ttl)
	defer cancel()
	if err := g.store.LeaveGroup(ctx, g.name, g.id); err != nil && !errors.Is(err, transport.ErrClosed) {
		g.report(fmt.Errorf("replay: group %q: leave: %w", g.name, err))
	}
	g.mu.Lock()
	clear(g.units)
	g.mu.Unlock()
}

func (g *Group) report(err error) {
	g.mu.Lock()
	g.lastErr = err
	g.mu.Unlock()
	if g.cfg.onError != nil {
		g.cfg.onError(err)
		return
	}
	g.log.Warn("durabus: group", "group", g.name, "err", err)
}

// assign returns member self's share of topics among members (sorted
// ids): every member works it out alike. Each topic, in sorted order, goes
// to the member with the highest rendezvous score (FNV-1a 64 of member,
// NUL, topic) that has room left; the first len(topics) % len(members)
// members (by id) have room for one topic more than the others.
func assign(topics, members []string, self string) []string {
	if len(members) == 0 || !slices.Contains(members, self) {
		return nil
	}
	ts := slices.Clone(topics)
	sort.Strings(ts)
	ts = slices.Compact(ts)
	room := make(map[string]int, len(members))
	for i, m := range members {
		room[m] = len(ts) / len(members)
		if i < len(ts)%len(members) {
			room[m]++
		}
	}
	var out []string
	for _, t := range ts {
		best, bestScore := "", uint64(0)
		for _, m := range members {
			if room[m] == 0 {
				continue
			}
			h := fnv.New64a()
			h.Write([]byte(m))
			h.Write([]byte{0})
			h.Write([]byte(t))
			if s := h.Sum64(); best == "" || s > bestScore {
				best, bestScore = m, s
			}
		}
		room[best]--
		if best == self {
			out = append(out, t)
		}
	}
	return out
}
