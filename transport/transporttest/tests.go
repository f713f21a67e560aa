package transporttest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/durabus/durabus/transport"
)

// testOrder: 8 publishers × 1 000 events on one topic get seq 1..8000
// exactly, in one epoch; the backlog read in pages holds them in seq order;
// a live subscriber receives them in seq order (drops signalled).
func testOrder(e *env) {
	const publishers, each = 8, 1000
	topic := e.topic("t")
	sub := e.subscribe(topic)

	positions := make([][]transport.Position, publishers)
	errs := make(chan error, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pos, err := e.tr.Publish(e.ctx, msg(topic, time.Now(), payload{P: p, I: i}))
				if err != nil {
					errs <- fmt.Errorf("publisher %d event %d: %w", p, i, err)
					return
				}
				positions[p] = append(positions[p], pos)
			}
		}()
	}
	frames := e.follow(sub, map[string]uint64{topic: publishers * each})
	wg.Wait()
	close(errs)
	for err := range errs {
		e.Fatal(err)
	}

	seen := make([]bool, publishers*each+1)
	epoch := positions[0][0].Epoch
	for p, ps := range positions {
		for i, pos := range ps {
			if pos.Epoch != epoch {
				e.Fatalf("publisher %d event %d: epoch %q, want %q", p, i, pos.Epoch, epoch)
			}
			if pos.Seq < 1 || pos.Seq > publishers*each || seen[pos.Seq] {
				e.Fatalf("publisher %d event %d: seq %d out of 1..%d or duplicate", p, i, pos.Seq, publishers*each)
			}
			seen[pos.Seq] = true
			if i > 0 && pos.Seq <= ps[i-1].Seq {
				e.Fatalf("publisher %d: event %d got seq %d after seq %d", p, i, pos.Seq, ps[i-1].Seq)
			}
		}
	}

	backlog := e.rangeAll(topic, transport.Position{}, 500)
	if len(backlog) != publishers*each {
		e.Fatalf("backlog holds %d events, want %d", len(backlog), publishers*each)
	}
	var prev transport.StreamID
	for i, d := range backlog {
		if d.Position.Seq != uint64(i+1) || d.Position.Epoch != epoch || d.Topic != topic {
			e.Fatalf("backlog event %d: %s %v, want seq %d epoch %s", i, d.Topic, d.Position, i+1, epoch)
		}
		// Every transport's ids are stream ids ("<ms>-<n>") that grow
		// with seq: the follower compares and steps them.
		id, ok := transport.ParseStreamID(d.Position.ID)
		if !ok || i > 0 && id.Compare(prev) <= 0 {
			e.Fatalf("backlog event %d: id %q is not a stream id after %v", i, d.Position.ID, prev)
		}
		prev = id
	}
	got := frames[topic]
	if len(got) < publishers*each {
		e.Logf("live: %d frames, %d dropped with a signal", len(got), publishers*each-len(got))
	}
	for _, d := range got {
		if d.Position != backlog[d.Position.Seq-1].Position {
			e.Fatalf("live frame %v differs from backlog %v", d.Position, backlog[d.Position.Seq-1].Position)
		}
	}
}

// testPublisherOrder: events of one publisher appear in the backlog and
// live in the order it published them.
func testPublisherOrder(e *env) {
	const publishers, each = 4, 200
	topic := e.topic("t")
	sub := e.subscribe(topic)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := e.tr.Publish(e.ctx, msg(topic, time.Now(), payload{P: p, I: i})); err != nil {
					e.Errorf("publisher %d event %d: %v", p, i, err)
					return
				}
			}
		}()
	}
	frames := e.follow(sub, map[string]uint64{topic: publishers * each})
	wg.Wait()
	check := func(what string, ds []transport.Delivery, complete bool) {
		next := make([]int, publishers)
		for _, d := range ds {
			v := decode(e, d)
			if v.I < next[v.P] {
				e.Fatalf("%s: publisher %d event %d after event %d", what, v.P, v.I, next[v.P]-1)
			}
			if complete && v.I != next[v.P] {
				e.Fatalf("%s: publisher %d event %d, want %d", what, v.P, v.I, next[v.P])
			}
			next[v.P] = v.I + 1
		}
	}
	check("backlog", e.rangeAll(topic, transport.Position{}, 1000), true)
	check("live", frames[topic], false)
}

// testIsolation: a subscriber of A never sees B's frames; seqs are per topic.
func testIsolation(e *env) {
	a, b := e.topic("a"), e.topic("b")
	sub := e.subscribe(a)
	for i := range 5 {
		pa := e.publish(a, payload{I: i})
		pb := e.publish(b, payload{I: i})
		if pa.Seq != uint64(i+1) || pb.Seq != uint64(i+1) {
			e.Fatalf("round %d: seqs %d and %d, want %d for both topics", i, pa.Seq, pb.Seq, i+1)
		}
	}
	frames := e.follow(sub, map[string]uint64{a: 5}) // fails on a frame of b
	for _, d := range frames[a] {
		if d.Topic != a {
			e.Fatalf("frame topic %q, want %q", d.Topic, a)
		}
	}
	noFrame(e, sub)
	if got := e.rangeAll(b, transport.Position{}, 100); len(got) != 5 {
		e.Fatalf("backlog of b holds %d, want 5", len(got))
	}
}

// testBatch: positions come back in input order, contiguous per topic, for
// a batch mixing topics; an empty batch is fine; an oversize event is named
// by a *BatchError wrapping ErrTooLarge. Whether the other events of a batch
// with a bad one are written is left to the transport; when they are, their
// positions are filled in and belong to the backlog.
func testBatch(e *env) {
	a, b := e.topic("a"), e.topic("b")
	e.publish(b, payload{}) // b starts at seq 2 in the batch
	var msgs []transport.Message
	for i := range 6 {
		topic := a
		if i%3 == 1 {
			topic = b
		}
		msgs = append(msgs, msg(topic, time.Now(), payload{I: i}))
	}
	pos, err := e.tr.PublishBatch(e.ctx, msgs)
	if err != nil {
		e.Fatalf("PublishBatch: %v", err)
	}
	if len(pos) != len(msgs) {
		e.Fatalf("%d positions for %d events", len(pos), len(msgs))
	}
	// a b a a b a: a gets seq 1..4, b (published once before) 2..3
	wantB := map[int]uint64{1: 2, 4: 3}
	na := uint64(0)
	for i, p := range pos {
		w := wantB[i]
		if msgs[i].Topic == a {
			na++
			w = na
		}
		if p.Seq != w {
			e.Fatalf("event %d (%s): seq %d, want %d", i, msgs[i].Topic, p.Seq, w)
		}
	}
	for _, topic := range []string{a, b} {
		backlog := e.rangeAll(topic, transport.Position{}, 100)
		for _, d := range backlog {
			for i, m := range msgs {
				if m.Topic == topic && pos[i] == d.Position && string(m.Data) != string(d.Data) {
					e.Fatalf("event %d: backlog holds other data at %v", i, d.Position)
				}
			}
		}
	}

	if pos, err := e.tr.PublishBatch(e.ctx, nil); err != nil || len(pos) != 0 {
		e.Fatalf("empty batch: %v, %v; want no positions, nil", pos, err)
	}

	if e.f.MaxSize <= 0 {
		return
	}
	c := e.topic("c")
	bad := []transport.Message{msg(c, time.Now(), payload{I: 0}), sized(c, e.f.MaxSize+1), msg(c, time.Now(), payload{I: 2})}
	pos, err = e.tr.PublishBatch(e.ctx, bad)
	var be *transport.BatchError
	if !errors.As(err, &be) {
		e.Fatalf("batch with an oversize event: %v, want *transport.BatchError", err)
	}
	if !slices.Equal(be.Failed, []int{1}) || !errors.Is(err, transport.ErrTooLarge) {
		e.Fatalf("BatchError Failed %v, err %v; want [1] and ErrTooLarge", be.Failed, err)
	}
	if len(pos) != len(bad) || !pos[1].IsZero() {
		e.Fatalf("positions %v: want %d, the oversize one zero", pos, len(bad))
	}
	var held []transport.Delivery
	if !pos[0].IsZero() || !pos[2].IsZero() {
		held = e.rangeAll(c, transport.Position{}, 10)
	}
	for _, i := range []int{0, 2} {
		if pos[i].IsZero() {
			continue // not written: allowed
		}
		if !slices.ContainsFunc(held, func(d transport.Delivery) bool {
			return d.Position == pos[i] && string(d.Data) == string(bad[i].Data)
		}) {
			e.Fatalf("event %d: position %v given but not in the backlog", i, pos[i])
		}
	}
}

// testRange: reading from the zero position, after a middle position, in
// pages, at the head, with the limit respected and Page.Epoch set; an
// unknown topic gives ErrUnknownTopic.
func testRange(e *env) {
	topic := e.topic("t")
	var pos []transport.Position
	for i := range 10 {
		pos = append(pos, e.publish(topic, payload{I: i}))
	}
	epoch := pos[0].Epoch
	page, err := e.tr.Range(e.ctx, topic, transport.Position{}, 100)
	if err != nil || page.Epoch != epoch || len(page.Events) != 10 {
		e.Fatalf("Range from zero: epoch %q, %d events, %v; want %q, 10", page.Epoch, len(page.Events), err, epoch)
	}
	for i, d := range page.Events {
		if d.Position != pos[i] || d.Topic != topic || decode(e, d).I != i {
			e.Fatalf("event %d: %s %v, want %v", i, d.Topic, d.Position, pos[i])
		}
	}
	page, err = e.tr.Range(e.ctx, topic, pos[4], 3)
	if err != nil || page.Epoch != epoch || len(page.Events) != 3 || page.Events[0].Position != pos[5] || page.Events[2].Position != pos[7] {
		e.Fatalf("Range after seq 5 limit 3: %+v, %v; want seq 6..8", page, err)
	}
	if got := e.rangeAll(topic, pos[2], 2); len(got) != 7 || got[0].Position != pos[3] || got[6].Position != pos[9] {
		e.Fatalf("paging by 2 after seq 3: %d events, want seq 4..10", len(got))
	}
	page, err = e.tr.Range(e.ctx, topic, pos[9], 5)
	if err != nil || len(page.Events) != 0 || page.Epoch != epoch {
		e.Fatalf("Range at head: %d events, epoch %q, %v; want none, %q", len(page.Events), page.Epoch, err, epoch)
	}
	page, err = e.tr.Range(e.ctx, topic, transport.Position{}, 1)
	if err != nil || len(page.Events) != 1 {
		e.Fatalf("Range limit 1: %d events, %v", len(page.Events), err)
	}
	if _, err := e.tr.Range(e.ctx, e.topic("never"), transport.Position{}, 10); !errors.Is(err, transport.ErrUnknownTopic) {
		e.Fatalf("Range of an unknown topic: %v, want ErrUnknownTopic", err)
	}
}

// testRangeOtherEpoch: a position of an older epoch reads from the oldest
// event of the current one.
func testRangeOtherEpoch(e *env) {
	if e.f.DeleteTopic == nil {
		e.Skip("Features.DeleteTopic is nil")
	}
	topic := e.topic("t")
	var old []transport.Position
	for i := range 3 {
		old = append(old, e.publish(topic, payload{I: i}))
	}
	e.f.DeleteTopic(e.T, e.tr, topic)
	p1 := e.publish(topic, payload{I: 10})
	e.publish(topic, payload{I: 11})
	page, err := e.tr.Range(e.ctx, topic, old[1], 10)
	if err != nil {
		e.Fatal(err)
	}
	if page.Epoch != p1.Epoch || page.Epoch == old[0].Epoch || len(page.Events) != 2 || page.Events[0].Position != p1 {
		e.Fatalf("Range after old %v: epoch %q, %d events; want epoch %q from seq 1", old[1], page.Epoch, len(page.Events), p1.Epoch)
	}
	if v := decode(e, page.Events[0]); v.I != 10 {
		e.Fatalf("first event after the reset is %d, want 10", v.I)
	}
}

// testSeek: Seek(t) then Range gives exactly the first event with time at
// or after t, around millisecond boundaries and with several events in one
// millisecond.
func testSeek(e *env) {
	if !e.feat.Seek {
		e.Skip("the transport offers no transport.Seeker")
	}
	topic := e.topic("t")
	// Close to now, in publish order: Redis stream ids come from its clock.
	base := time.Now().Truncate(time.Millisecond).Add(-50 * time.Millisecond)
	ms, ns := time.Millisecond, time.Nanosecond
	times := []time.Duration{0, ms - ns, ms, ms, ms + ns, 2 * ms, 2*ms + 500*time.Microsecond}
	var pos []transport.Position
	for i, d := range times {
		p, err := e.tr.Publish(e.ctx, msg(topic, base.Add(d), payload{I: i}))
		if err != nil {
			e.Fatal(err)
		}
		pos = append(pos, p)
	}
	head, err := e.tr.Head(e.ctx, topic)
	if err != nil {
		e.Fatal(err)
	}
	cases := []struct {
		at    time.Duration
		first int // index of the expected first event; -1: none
	}{
		{-time.Hour, 0}, {-ms, 0}, {-ns, 0}, {0, 0}, {ns, 1}, {ms - 2*ns, 1}, {ms - ns, 1},
		{ms, 2}, {ms + ns, 4}, {ms + 2*ns, 5}, {2*ms - ns, 5}, {2 * ms, 5}, {2*ms + ns, 6},
		{2*ms + 500*time.Microsecond, 6}, {2*ms + 500*time.Microsecond + ns, -1}, {3 * ms, -1}, {time.Hour, -1},
	}
	for _, c := range cases {
		at := base.Add(c.at)
		p, err := e.seek.Seek(e.ctx, topic, at)
		if err != nil {
			e.Fatalf("Seek(base%+v): %v", c.at, err)
		}
		page, err := e.tr.Range(e.ctx, topic, p, 1)
		if err != nil {
			e.Fatalf("Range after Seek(base%+v) = %v: %v", c.at, p, err)
		}
		if c.first < 0 {
			if p.Epoch != head.Epoch || p.Seq != head.Seq || len(page.Events) != 0 {
				e.Errorf("Seek(base%+v) = %v, want Head %v", c.at, p, head)
			}
			continue
		}
		if len(page.Events) != 1 || page.Events[0].Position != pos[c.first] {
			e.Errorf("Seek(base%+v) = %v: Range starts at %v, want event %d at %v", c.at, p, page.Events, c.first, pos[c.first])
		}
	}
	if _, err := e.seek.Seek(e.ctx, e.topic("never"), base); !errors.Is(err, transport.ErrUnknownTopic) {
		e.Errorf("Seek of an unknown topic: %v, want ErrUnknownTopic", err)
	}
}

// testHead: Head after N publishes is seq N in the positions' epoch.
func testHead(e *env) {
	topic := e.topic("t")
	var last transport.Position
	for i := range 7 {
		last = e.publish(topic, payload{I: i})
	}
	head, err := e.tr.Head(e.ctx, topic)
	if err != nil || head.Seq != 7 || head.Epoch != last.Epoch {
		e.Fatalf("Head = %v, %v; want seq 7 epoch %s", head, err, last.Epoch)
	}
	if head.ID != "" && head.ID != last.ID {
		e.Fatalf("Head ID %q, want %q or empty", head.ID, last.ID)
	}
	if _, err := e.tr.Head(e.ctx, e.topic("never")); !errors.Is(err, transport.ErrUnknownTopic) {
		e.Fatalf("Head of an unknown topic: %v, want ErrUnknownTopic", err)
	}
}

// testTopics: Topics lists the published topics matching a pattern, sorted.
func testTopics(e *env) {
	if !e.feat.Topics {
		e.Skip("the transport offers no transport.TopicLister")
	}
	names := []string{e.topic("orders.b"), e.topic("orders.a"), e.topic("payments.a"), e.topic("orders.c")}
	for _, n := range names {
		e.publish(n, payload{})
	}
	got, err := e.list.Topics(e.ctx, e.prefix+".orders.*")
	want := []string{e.topic("orders.a"), e.topic("orders.b"), e.topic("orders.c")}
	if err != nil || !slices.Equal(got, want) {
		e.Fatalf("Topics(orders.*) = %v, %v; want %v", got, err, want)
	}
	all, err := e.list.Topics(e.ctx, "")
	if err != nil || !slices.IsSorted(all) {
		e.Fatalf("Topics(\"\") = %v, %v; want sorted", all, err)
	}
	for _, n := range names {
		if !slices.Contains(all, n) {
			e.Fatalf("Topics(\"\") misses %s", n)
		}
	}
}

// testPatterns: a pattern subscription gets the frames of matching topics,
// with Delivery.Topic set, and no others; a bad pattern is ErrInvalidTopic.
func testPatterns(e *env) {
	if !e.feat.Patterns {
		e.Skip("the transport offers no transport.PatternSubscriber")
	}
	if _, err := e.ps.SubscribePattern(e.ctx, e.prefix+".[a"); !errors.Is(err, transport.ErrInvalidTopic) {
		e.Fatalf("SubscribePattern with a bad pattern: %v, want ErrInvalidTopic", err)
	}
	sub, err := e.ps.SubscribePattern(e.ctx, e.prefix+".orders.*")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = sub.Close() })
	a, b, other := e.topic("orders.a"), e.topic("orders.b"), e.topic("payments.a")
	e.publish(other, payload{})
	e.publish(a, payload{I: 1})
	e.publish(b, payload{I: 1})
	e.publish(other, payload{})
	e.publish(a, payload{I: 2})
	frames := e.follow(sub, map[string]uint64{a: 2, b: 1}) // fails on a frame of other
	for topic, ds := range frames {
		for _, d := range ds {
			if d.Topic != topic {
				e.Fatalf("frame of %s has Topic %q", topic, d.Topic)
			}
		}
	}
}

// testEpochChange: after a topic's log is deleted, the next publish gets
// seq 1 in a new epoch.
func testEpochChange(e *env) {
	if e.f.DeleteTopic == nil {
		e.Skip("Features.DeleteTopic is nil")
	}
	topic := e.topic("t")
	e.publish(topic, payload{})
	old := e.publish(topic, payload{})
	e.f.DeleteTopic(e.T, e.tr, topic)
	if _, err := e.tr.Head(e.ctx, topic); !errors.Is(err, transport.ErrUnknownTopic) {
		e.Fatalf("Head after DeleteTopic: %v, want ErrUnknownTopic", err)
	}
	p := e.publish(topic, payload{})
	if p.Seq != 1 || p.Epoch == old.Epoch || p.Epoch == "" {
		e.Fatalf("first publish after delete: %v; want seq 1 in an epoch other than %q", p, old.Epoch)
	}
}

// testOversize: exactly MaxSize bytes are accepted, one more is
// ErrTooLarge.
func testOversize(e *env) {
	if e.f.MaxSize <= 0 {
		e.Skip("Features.MaxSize is 0")
	}
	topic := e.topic("t")
	if _, err := e.tr.Publish(e.ctx, sized(topic, e.f.MaxSize)); err != nil {
		e.Fatalf("Publish of MaxSize bytes: %v", err)
	}
	if _, err := e.tr.Publish(e.ctx, sized(topic, e.f.MaxSize+1)); !errors.Is(err, transport.ErrTooLarge) {
		e.Fatalf("Publish of MaxSize+1 bytes: %v, want ErrTooLarge", err)
	}
}

// testInvalidTopic: bad topic names are ErrInvalidTopic on Publish and
// Subscribe.
func testInvalidTopic(e *env) {
	for _, bad := range []string{"", "a b", "{x}", "x*", strings.Repeat("a", transport.MaxTopicLen+1)} {
		if _, err := e.tr.Publish(e.ctx, msg(bad, time.Now(), payload{})); !errors.Is(err, transport.ErrInvalidTopic) {
			e.Errorf("Publish to %q: %v, want ErrInvalidTopic", bad, err)
		}
		if sub, err := e.tr.Subscribe(e.ctx, bad); !errors.Is(err, transport.ErrInvalidTopic) {
			e.Errorf("Subscribe to %q: %v, want ErrInvalidTopic", bad, err)
			if sub != nil {
				_ = sub.Close()
			}
		}
	}
}

// testSubscribeConfirmed: an event published right after Subscribe returns
// is delivered.
func testSubscribeConfirmed(e *env) {
	for i := range 5 {
		topic := e.topic(fmt.Sprint("t", i))
		sub := e.subscribe(topic)
		e.publish(topic, payload{I: i})
		e.follow(sub, map[string]uint64{topic: 1})
		if err := sub.Close(); err != nil {
			e.Fatal(err)
		}
	}
}

// testSubscriptionClose: Close closes the events channel, Err is nil, a
// second Close is fine, and no goroutine is left.
func testSubscriptionClose(e *env) {
	topic := e.topic("t")
	sub := e.subscribe(topic)
	e.publish(topic, payload{})
	if err := sub.Close(); err != nil {
		e.Fatalf("Close: %v", err)
	}
	drainClosed(e, sub)
	if err := sub.Err(); err != nil {
		e.Fatalf("Err after Close: %v, want nil", err)
	}
	if err := sub.Close(); err != nil {
		e.Fatalf("second Close: %v", err)
	}
	e.publish(topic, payload{}) // publishing to a topic nobody follows any more
}

// testContextCancel: ending the ctx given to Subscribe ends the
// subscription with the ctx's error.
func testContextCancel(e *env) {
	topic := e.topic("t")
	ctx, cancel := context.WithCancel(e.ctx)
	sub, err := e.tr.Subscribe(ctx, topic)
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = sub.Close() })
	e.publish(topic, payload{})
	cancel()
	drainClosed(e, sub)
	if err := sub.Err(); !errors.Is(err, context.Canceled) {
		e.Fatalf("Err after cancel: %v, want context.Canceled", err)
	}
	if e.feat.Patterns {
		ctx, cancel := context.WithCancel(e.ctx)
		psub, err := e.ps.SubscribePattern(ctx, e.prefix+".*")
		if err != nil {
			e.Fatal(err)
		}
		cancel()
		drainClosed(e, psub)
		if err := psub.Err(); !errors.Is(err, context.Canceled) {
			e.Fatalf("pattern subscription: Err after cancel: %v, want context.Canceled", err)
		}
	}
}

// testTransportClose: Close ends the subscriptions with ErrClosed and every
// method then returns ErrClosed.
func testTransportClose(e *env) {
	topic := e.topic("t")
	p := e.publish(topic, payload{})
	sub := e.subscribe(topic)
	if err := e.tr.Close(); err != nil {
		e.Fatalf("Close: %v", err)
	}
	drainClosed(e, sub)
	if err := sub.Err(); !errors.Is(err, transport.ErrClosed) {
		e.Fatalf("subscription Err after the transport's Close: %v, want ErrClosed", err)
	}
	checks := map[string]error{}
	_, checks["Publish"] = e.tr.Publish(e.ctx, msg(topic, time.Now(), payload{}))
	_, checks["PublishBatch"] = e.tr.PublishBatch(e.ctx, []transport.Message{msg(topic, time.Now(), payload{})})
	_, checks["Subscribe"] = e.tr.Subscribe(e.ctx, topic)
	if e.feat.Patterns {
		_, checks["SubscribePattern"] = e.ps.SubscribePattern(e.ctx, topic+"*")
	}
	_, checks["Range"] = e.tr.Range(e.ctx, topic, transport.Position{}, 10)
	_, checks["Head"] = e.tr.Head(e.ctx, topic)
	if e.feat.Seek {
		_, checks["Seek"] = e.seek.Seek(e.ctx, topic, time.Now())
	}
	if e.feat.Topics {
		_, checks["Topics"] = e.list.Topics(e.ctx, "*")
	}
	if e.feat.Checkpoints {
		checks["SaveCheckpoints"] = e.cps.SaveCheckpoints(e.ctx, e.prefix, map[string]transport.Position{topic: p})
		_, checks["LoadCheckpoints"] = e.cps.LoadCheckpoints(e.ctx, e.prefix)
	}
	for name, err := range checks {
		if !errors.Is(err, transport.ErrClosed) {
			e.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// testCheckpoints: saved positions load back equal; saving one topic again
// replaces only it; an unknown consumer has none.
func testCheckpoints(e *env) {
	if !e.feat.Checkpoints {
		e.Skip("the transport offers no transport.CheckpointStore")
	}
	real := e.publish(e.topic("a"), payload{})
	consumer := e.prefix + ".consumer"
	first := map[string]transport.Position{
		e.topic("a"): real,
		e.topic("b"): {Epoch: "e1", Seq: 42, ID: "1700000000000-3"},
		e.topic("c"): {Epoch: "e2", Seq: 1},
	}
	if err := e.cps.SaveCheckpoints(e.ctx, consumer, first); err != nil {
		e.Fatal(err)
	}
	got, err := e.cps.LoadCheckpoints(e.ctx, consumer)
	if err != nil || !reflect.DeepEqual(got, first) {
		e.Fatalf("Load = %v, %v; want %v", got, err, first)
	}
	update := map[string]transport.Position{e.topic("b"): {Epoch: "e1", Seq: 43, ID: "1700000000001-0"}}
	if err := e.cps.SaveCheckpoints(e.ctx, consumer, update); err != nil {
		e.Fatal(err)
	}
	first[e.topic("b")] = update[e.topic("b")]
	got, err = e.cps.LoadCheckpoints(e.ctx, consumer)
	if err != nil || !reflect.DeepEqual(got, first) {
		e.Fatalf("Load after overwrite = %v, %v; want %v", got, err, first)
	}
	got, err = e.cps.LoadCheckpoints(e.ctx, e.prefix+".nobody")
	if err != nil || len(got) != 0 {
		e.Fatalf("Load of an unknown consumer = %v, %v; want empty", got, err)
	}
}

// testNotAliased: the transport keeps no reference to a published Data,
// and a receiver may modify a Delivery's Data.
func testNotAliased(e *env) {
	topic := e.topic("t")
	sub := e.subscribe(topic)
	m := msg(topic, time.Now(), payload{I: 7})
	want := string(m.Data)
	if _, err := e.tr.Publish(e.ctx, m); err != nil {
		e.Fatal(err)
	}
	clear(m.Data)
	frames := e.follow(sub, map[string]uint64{topic: 1})
	for _, d := range frames[topic] {
		if string(d.Data) != want {
			e.Fatalf("live Data %q, want %q", d.Data, want)
		}
		clear(d.Data)
	}
	for range 2 {
		page, err := e.tr.Range(e.ctx, topic, transport.Position{}, 10)
		if err != nil || len(page.Events) != 1 || string(page.Events[0].Data) != want {
			e.Fatalf("Range after mutation: %v, %v; want %q", page.Events, err, want)
		}
		clear(page.Events[0].Data)
	}
}

// testPartitions: a first count is recorded once and read back; a record
// with a stale old count changes nothing and returns the recorded one; a
// compare-and-set with the right old count changes it; a topic with events
// of its own is not given a first count; invalid counts are refused.
func testPartitions(e *env) {
	ps, ok := e.tr.(transport.PartitionStore)
	if !e.feat.Partitions || !ok {
		e.Skip("the transport offers no transport.PartitionStore")
	}
	topic := e.topic("p")
	if n, err := ps.Partitions(e.ctx, topic); n != 0 || err != nil {
		e.Fatalf("Partitions of a new topic = %d, %v; want 0, nil", n, err)
	}
	if n, err := ps.SetPartitions(e.ctx, topic, 0, 8); n != 8 || err != nil {
		e.Fatalf("first SetPartitions(0, 8) = %d, %v; want 8, nil", n, err)
	}
	if n, err := ps.SetPartitions(e.ctx, topic, 0, 16); n != 8 || err != nil {
		e.Fatalf("SetPartitions(0, 16) over 8 = %d, %v; want 8 (unchanged), nil", n, err)
	}
	if n, err := ps.Partitions(e.ctx, topic); n != 8 || err != nil {
		e.Fatalf("Partitions = %d, %v; want 8", n, err)
	}
	if n, err := ps.SetPartitions(e.ctx, topic, 8, 4); n != 4 || err != nil {
		e.Fatalf("SetPartitions(8, 4) = %d, %v; want 4, nil", n, err)
	}
	if n, err := ps.Partitions(e.ctx, topic); n != 4 || err != nil {
		e.Fatalf("Partitions after the change = %d, %v; want 4", n, err)
	}
	// A partition is an ordinary topic: publishing to it leaves the
	// count alone.
	e.publish(transport.PartitionTopic(topic, 3), payload{I: 1})
	if n, err := ps.Partitions(e.ctx, topic); n != 4 || err != nil {
		e.Fatalf("Partitions after a publish to a partition = %d, %v; want 4", n, err)
	}

	plain := e.topic("plain")
	e.publish(plain, payload{I: 1})
	if n, err := ps.SetPartitions(e.ctx, plain, 0, 4); !errors.Is(err, transport.ErrTopicHasEvents) {
		e.Fatalf("SetPartitions of a topic with events = %d, %v; want ErrTopicHasEvents", n, err)
	}
	if n, err := ps.Partitions(e.ctx, plain); n != 0 || err != nil {
		e.Fatalf("Partitions after a refused record = %d, %v; want 0", n, err)
	}
	for _, n := range []int{0, -1, transport.MaxPartitions + 1} {
		if _, err := ps.SetPartitions(e.ctx, e.topic("bad"), 0, n); err == nil {
			e.Errorf("SetPartitions(0, %d) accepted", n)
		}
	}
	if _, err := ps.Partitions(e.ctx, "no spaces"); !errors.Is(err, transport.ErrInvalidTopic) {
		e.Errorf("Partitions of an invalid topic: %v, want ErrInvalidTopic", err)
	}
}
