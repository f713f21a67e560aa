package replay_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

// replacedLog is a memory transport whose topic "t", once switched, goes
// through what allkeys-lru eviction does between two reads of a follower:
// the next backlog read finds the follower's log going on under a new epoch
// (its meta data was evicted and made again: epoch B, every entry of the
// old log plus one more), and every read after it finds that log gone and a
// new one, made by epoch C, with one event and a lineage record that names
// only C. With vanishC, C's log is evicted too when it is first read from
// its start, and a third log, D's, with two events, replaces it.
type replacedLog struct {
	*memtransport.Transport
	vanishC bool
	cFirst  uint64 // the seq of C's event (1 when zero): C's log lost those before it
	mu      sync.Mutex
	state   int // 0 pass through, 1 the next Range sees B, 2 C, 3 D
	b, c, d transport.Page
}

func (r *replacedLog) switchLogs(t *testing.T) {
	t.Helper()
	old, err := r.Transport.Range(context.Background(), "t", transport.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := transport.ParseStreamID(old.Events[len(old.Events)-1].Position.ID)
	id := func(ms uint64, n uint64) string { return transport.StreamID{MS: ms, N: n}.String() }
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b = transport.Page{Epoch: "B"}
	for _, d := range old.Events {
		d.Position.Epoch = "B"
		r.b.Events = append(r.b.Events, d)
	}
	r.b.Events = append(r.b.Events, transport.Delivery{Topic: "t", Data: []byte(`{}`),
		Position: transport.Position{Epoch: "B", Seq: uint64(len(old.Events) + 1), ID: id(last.MS+1, 0)}})
	r.c = transport.Page{Epoch: "C", Events: []transport.Delivery{{Topic: "t", Data: []byte(`{}`),
		Position: transport.Position{Epoch: "C", Seq: max(r.cFirst, 1), ID: id(last.MS+2, 0)}}}}
	r.d = transport.Page{Epoch: "D"}
	for i := range uint64(2) {
		r.d.Events = append(r.d.Events, transport.Delivery{Topic: "t", Data: []byte(`{}`),
			Position: transport.Position{Epoch: "D", Seq: i + 1, ID: id(last.MS+3, i)}})
	}
	r.state = 1
}

// current is the log there now (state 1 and later).
func (r *replacedLog) current() transport.Page {
	if r.state == 3 {
		return r.d
	}
	return r.c
}

func (r *replacedLog) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var page transport.Page
	switch r.state {
	case 0:
		return r.Transport.Range(ctx, topic, after, limit)
	case 1:
		page, r.state = r.b, 2
	case 2:
		if r.vanishC && after.Epoch == "" {
			r.state = 3
			return transport.Page{}, fmt.Errorf("range: %w", transport.ErrUnknownTopic)
		}
		page = r.c
	default:
		page = r.d
	}
	out := transport.Page{Epoch: page.Epoch}
	for _, d := range page.Events {
		if after.Epoch == page.Epoch && (after.ID != "" && !transport.IDAfter(d.Position.ID, after.ID) || after.ID == "" && d.Position.Seq <= after.Seq) {
			continue
		}
		if len(out.Events) < limit {
			out.Events = append(out.Events, d)
		}
	}
	return out, nil
}

func (r *replacedLog) Head(ctx context.Context, topic string) (transport.Position, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == 0 {
		return r.Transport.Head(ctx, topic)
	}
	cur := r.current()
	return cur.Events[len(cur.Events)-1].Position, nil
}

// LogEpochs implements transport.LineageReader: after the switch, the log
// read is C's.
func (r *replacedLog) LogEpochs(context.Context, string) ([]string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == 0 {
		return nil, false, nil
	}
	return []string{r.current().Epoch}, true, nil
}

// followReplaced runs a follower on tr until it handled seq 1..3 of its
// log, switches the logs, and waits until it handled the last event of
// the log that is there at the end. It returns the ids handed over, the
// losses, and the old log's positions.
func followReplaced(t *testing.T, tr *replacedLog) (ids []string, losses []*replay.LossError, old []transport.Position) {
	r := &handled{}
	_, stop, old := r.follow(t, tr, nil, replay.WithTopics("t"))
	tr.switchLogs(t)
	end := tr.c
	if tr.vanishC {
		end = tr.d
	}
	last := end.Events[len(end.Events)-1].Position.ID
	waitFor(t, "the last event", func() bool {
		ids, _ := r.get()
		return len(ids) > 0 && ids[len(ids)-1] == last
	})
	stop()
	ids, losses = r.get()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("entry %s handed over twice: %v", id, ids)
		}
		seen[id] = true
	}
	return ids, losses, old
}

// handled records what a follower hands over and reports.
type handled struct {
	mu     sync.Mutex
	ids    []string
	losses []*replay.LossError
}

func (r *handled) handle(_ context.Context, d replay.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, d.Position.ID)
	return nil
}

func (r *handled) lost(e *replay.LossError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.losses = append(r.losses, e)
}

func (r *handled) get() ([]string, []*replay.LossError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids), slices.Clone(r.losses)
}

// follow runs a follower on tr that records into r (calling wait first,
// when set, for each event), publishes 3 events and waits until they are
// handled. It returns the follower, its stop function and the events'
// positions.
func (r *handled) follow(t *testing.T, tr *replacedLog, wait func(context.Context, replay.Delivery) error, opts ...replay.Option) (*replay.Follower, func(), []transport.Position) {
	handle := func(ctx context.Context, d replay.Delivery) error {
		if wait != nil {
			if err := wait(ctx, d); err != nil {
				return err
			}
		}
		return r.handle(ctx, d)
	}
	f, err := replay.New(tr, handle, slices.Concat(fast, opts, []replay.Option{replay.WithOnLoss(r.lost)})...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	subscribed(t, f, 1)
	old := publish(t, tr, "t", 3)
	waitFor(t, "3 events", func() bool { ids, _ := r.get(); return len(ids) == 3 })
	return f, stop, old
}

func TestLogReplacedWhileJudgedIsNotHandedOverAgain(t *testing.T) {
	// A follower at seq 3 reads its topic: the page is its own log under a
	// new epoch B (seq 1..3 it handled, and seq 4). Before it can tell
	// whether B's log is its own, that log is evicted and C makes a new
	// one. The follower must not hand over seq 1..3 again from the page it
	// read first: it reports what followed seq 3 as lost up to C, and
	// delivers C's event.
	tr := &replacedLog{Transport: newMem(t)}
	ids, losses, old := followReplaced(t, tr)
	want := fmt.Sprintf("[%s %s %s %s]", old[0].ID, old[1].ID, old[2].ID, tr.c.Events[0].Position.ID)
	if got := fmt.Sprint(ids); got != want {
		t.Errorf("handed over %s, want %s", got, want)
	}
	if len(losses) != 1 || losses[0].Reason != replay.EpochChanged || losses[0].Epoch != old[0].Epoch || losses[0].From != 4 || losses[0].To != 0 || losses[0].Next != "C" {
		t.Errorf("losses = %v, want one EpochChanged from seq 4 of %s up to C", losses, old[0].Epoch)
	}
}

func TestLossIsReportedUpToTheLogFollowed(t *testing.T) {
	// As above, and C's log is evicted too, between the follower's finding
	// that it is not its own and its reading it: D's log replaces it. The
	// loss names D, the log the follower goes on with (C's log came and
	// went unseen: the report stands for it too), and D's events are all
	// delivered.
	tr := &replacedLog{Transport: newMem(t), vanishC: true}
	ids, losses, old := followReplaced(t, tr)
	want := fmt.Sprintf("[%s %s %s %s %s]", old[0].ID, old[1].ID, old[2].ID, tr.d.Events[0].Position.ID, tr.d.Events[1].Position.ID)
	if got := fmt.Sprint(ids); got != want {
		t.Errorf("handed over %s, want %s", got, want)
	}
	if len(losses) != 1 || losses[0].Reason != replay.EpochChanged || losses[0].Epoch != old[0].Epoch || losses[0].From != 4 || losses[0].To != 0 || losses[0].Next != "D" {
		t.Errorf("losses = %v, want one EpochChanged from seq 4 of %s up to D", losses, old[0].Epoch)
	}
}

func TestPositionMovesToTheLogFollowedBeforeItsFirstEvent(t *testing.T) {
	// A durable consumer at seq 3 finds its log replaced by C's, whose
	// first entry holds seq 3 (seq 1 and 2 are gone). Before C's event is
	// handled, its position is already in C's log, just before that
	// entry, and saved: a restart, or the next lease term, goes on there
	// (and does not judge the old log gone again and start C's wherever it
	// starts by then, perhaps past events evicted unreported). C's seq 1..2
	// are reported Trimmed.
	tr := &replacedLog{Transport: newMem(t), cFirst: 3}
	release := make(chan struct{})
	r := &handled{}
	wait := func(ctx context.Context, d replay.Delivery) error {
		if d.Position.Epoch == "C" {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	f, stop, old := r.follow(t, tr, wait, replay.WithTopics("t"), replay.WithConsumer("c"))
	tr.switchLogs(t)
	first := tr.c.Events[0].Position
	before, _ := transport.ParseStreamID(first.ID)
	prev, _ := before.Prev()
	want := transport.Position{Epoch: "C", Seq: 2, ID: prev.String()}
	waitFor(t, "the position in C's log", func() bool {
		cps, err := tr.LoadCheckpoints(context.Background(), "c")
		return err == nil && cps["t"] == want && f.Stats().Topics[0].Cursor == want
	})
	close(release)
	waitFor(t, "C's event", func() bool { ids, _ := r.get(); return len(ids) == 4 })
	stop()
	ids, losses := r.get()
	if len(losses) != 2 || losses[0].Reason != replay.EpochChanged || losses[0].Epoch != old[0].Epoch || losses[0].From != 4 || losses[0].Next != "C" ||
		losses[1].Reason != replay.Trimmed || losses[1].Epoch != "C" || losses[1].From != 1 || losses[1].To != 2 {
		t.Errorf("losses = %v, want EpochChanged from seq 4 of %s up to C, then C's seq 1..2 Trimmed", losses, old[0].Epoch)
	}
	if ids[3] != first.ID {
		t.Errorf("handed over %v, want C's %s last", ids, first.ID)
	}
}

// churnedLog is a memtransport whose topic "t" reads, from one moment on,
// as the same log under a new epoch P (its meta hash remade over it), and
// whose checkpoint saves can be held back (a save lagging behind the
// cursor) and lease renewal failed once (the lease lost): the log is
// relabelled as the lease is lost, so that the term ends before its
// worker can see the new epoch.
type churnedLog struct {
	*memtransport.Transport
	mu       sync.Mutex
	real     string // the epoch relabelled as P
	relabel  bool
	noSaves  bool
	fence    bool
	renewals int
}

func (c *churnedLog) label(p transport.Position) transport.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.relabel && p.Epoch == c.real {
		p.Epoch = "P"
	}
	return p
}

func (c *churnedLog) Head(ctx context.Context, topic string) (transport.Position, error) {
	p, err := c.Transport.Head(ctx, topic)
	return c.label(p), err
}

func (c *churnedLog) Range(ctx context.Context, topic string, after transport.Position, limit int) (transport.Page, error) {
	c.mu.Lock()
	if c.relabel && after.Epoch == "P" {
		after.Epoch = c.real
	}
	c.mu.Unlock()
	var page transport.Page
	var err error
	if after.ID == "" {
		page, err = c.Transport.Range(ctx, topic, after, limit)
	} else {
		// After a stream id, as Redis reads (memtransport reads by seq).
		var all transport.Page
		all, err = c.Transport.Range(ctx, topic, transport.Position{}, 1<<20)
		page.Epoch = all.Epoch
		for _, d := range all.Events {
			if transport.IDAfter(d.Position.ID, after.ID) && len(page.Events) < limit {
				page.Events = append(page.Events, d)
			}
		}
	}
	page.Epoch = c.label(transport.Position{Epoch: page.Epoch}).Epoch
	for i := range page.Events {
		page.Events[i].Position = c.label(page.Events[i].Position)
	}
	return page, err
}

func (c *churnedLog) SaveClaimed(ctx context.Context, cl transport.Claim, cps map[string]transport.Position) error {
	c.mu.Lock()
	held := c.noSaves
	c.mu.Unlock()
	if held {
		return nil
	}
	return c.Transport.SaveClaimed(ctx, cl, cps)
}

func (c *churnedLog) RenewConsumer(ctx context.Context, cl transport.Claim, ttl time.Duration) error {
	c.mu.Lock()
	c.renewals++
	fence := c.fence
	if fence {
		c.fence, c.relabel = false, true
	}
	c.mu.Unlock()
	if fence {
		return transport.ErrFenced
	}
	return c.Transport.RenewConsumer(ctx, cl, ttl)
}

func TestNextLeaseTermGoesOnInTheLogUnderItsNewEpoch(t *testing.T) {
	// A durable consumer's checkpoint names an old epoch Q: it handled
	// seq 1..3 of the log of epoch E that replaced Q's, and its saves lag.
	// Then its lease is lost, and at that moment E's log goes on under a
	// new epoch P. The next term must go on after seq 3, in P: read from
	// the checkpoint, E's entries would come again under P as a new log,
	// handed over twice in this process.
	tr := &churnedLog{Transport: newMem(t)}
	publish(t, tr, "t", 2) // epoch Q
	r := &handled{}
	f, err := replay.New(tr, r.handle, slices.Concat(fast, []replay.Option{replay.WithTopics("t"), replay.WithConsumer("c"),
		replay.WithStart(replay.Beginning()), replay.WithLease(300 * time.Millisecond), replay.WithOnLoss(r.lost)})...)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, f)
	defer stop()
	waitFor(t, "Q's 2 events, checkpointed", func() bool {
		cps, err := tr.LoadCheckpoints(context.Background(), "c")
		ids, _ := r.get()
		return err == nil && len(ids) == 2 && cps["t"].Seq == 2
	})
	tr.mu.Lock()
	tr.noSaves = true
	tr.mu.Unlock()
	tr.DeleteTopic("t")
	e := publish(t, tr, "t", 3) // epoch E
	waitFor(t, "E's 3 events", func() bool { return f.Stats().Topics[0].Cursor == e[2] })
	tr.mu.Lock()
	tr.real, tr.fence, tr.noSaves = e[2].Epoch, true, false
	renewed := tr.renewals
	tr.mu.Unlock()
	// The next term reads the log at its start; by its second renewal
	// its catch-up is long done.
	waitFor(t, "the next term's second renewal", func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		return !tr.fence && tr.renewals > renewed+3
	})
	ids, losses := r.get()
	if len(ids) != 5 {
		t.Errorf("handed over %v, want Q's 2 and E's 3 once each", ids)
	}
	if len(losses) != 1 || losses[0].Reason != replay.EpochChanged || losses[0].Next != e[0].Epoch {
		t.Errorf("losses = %v, want one EpochChanged from Q to E", losses)
	}
}
