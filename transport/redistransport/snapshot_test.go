package redistransport_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
)

// A topic whose meta hash or log is gone (evicted, deleted by hand) reads
// the same through Head, Range and Seek: ErrUnknownTopic, until a publish
// recreates it; then all three see the topic's current epoch.
func TestLostMetaOrLogReadsAsUnknownTopic(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	unknown := func(what, topic string, after transport.Position) {
		t.Helper()
		if _, err := tr.Head(ctx, topic); !errors.Is(err, transport.ErrUnknownTopic) {
			t.Errorf("%s: Head: %v, want ErrUnknownTopic", what, err)
		}
		for _, limit := range []int{0, 10} {
			for _, from := range []transport.Position{{}, after, {Epoch: after.Epoch, Seq: after.Seq}} {
				if page, err := tr.Range(ctx, topic, from, limit); !errors.Is(err, transport.ErrUnknownTopic) || page.Epoch != "" || len(page.Events) != 0 {
					t.Errorf("%s: Range(%v, %d): %v, %v; want an empty page and ErrUnknownTopic", what, from, limit, page, err)
				}
			}
		}
		if _, err := tr.Seek(ctx, topic, time.Now().Add(-time.Hour)); !errors.Is(err, transport.ErrUnknownTopic) {
			t.Errorf("%s: Seek: %v, want ErrUnknownTopic", what, err)
		}
	}
	known := func(what, topic string, old transport.Position) transport.Position {
		t.Helper()
		head, err := tr.Head(ctx, topic)
		if err != nil {
			t.Fatalf("%s: Head: %v", what, err)
		}
		page, err := tr.Range(ctx, topic, old, 100)
		if err != nil || page.Epoch != head.Epoch || len(page.Events) == 0 || page.Events[len(page.Events)-1].Position != head {
			t.Fatalf("%s: Range after %v: %v, %v; want up to the head %v", what, old, page, err, head)
		}
		p, err := tr.Seek(ctx, topic, time.Now().Add(-time.Hour))
		if err != nil || p.Epoch != head.Epoch {
			t.Fatalf("%s: Seek: %v, %v; want the epoch of the head %v", what, p, err, head)
		}
		return head
	}
	publish := func(topic string, n int) transport.Position {
		t.Helper()
		var p transport.Position
		for i := range n {
			var err error
			if p, err = tr.Publish(ctx, message(topic, i)); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}

	// The meta hash is gone, the log remains.
	old := publish("lost.meta", 3)
	_, metaKey, _ := tr.Keys("lost.meta")
	if err := rdb.Del(ctx, metaKey).Err(); err != nil {
		t.Fatal(err)
	}
	unknown("meta lost", "lost.meta", old)
	publish("lost.meta", 1)
	head := known("meta lost, then a publish", "lost.meta", old)
	if head.Epoch == old.Epoch || head.Seq != 4 {
		t.Fatalf("meta lost, then a publish: head %v, want seq 4 in an epoch other than %s", head, old.Epoch)
	}

	// The log is gone, the meta hash remains.
	old = publish("lost.log", 3)
	logKey, _, _ := tr.Keys("lost.log")
	if err := rdb.Del(ctx, logKey).Err(); err != nil {
		t.Fatal(err)
	}
	unknown("log lost", "lost.log", old)
	publish("lost.log", 1)
	head = known("log lost, then a publish", "lost.log", old)
	t.Logf("log lost after %v; the next publish made %v", old, head)
}

// Head is one snapshot: the stream id it returns is the entry of its seq,
// also while events are being published.
func TestHeadIsConsistentWhilePublishing(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	const topic = "busy"
	logKey, _, _ := tr.Keys(topic)
	if _, err := tr.Publish(ctx, message(topic, 0)); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var published int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for pctx.Err() == nil {
			if _, err := tr.PublishBatch(pctx, []transport.Message{message(topic, 1), message(topic, 2), message(topic, 3)}); err != nil {
				if pctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			published += 3
		}
	}()
	var moved int
	var last transport.Position
	for i := 0; i < 300; i++ {
		head, err := tr.Head(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		if head.Seq < last.Seq {
			t.Fatalf("Head went back from %v to %v", last, head)
		}
		if head.Seq > last.Seq {
			moved++
		}
		last = head
		e, err := rdb.XRange(ctx, logKey, head.ID, head.ID).Result()
		if err != nil || len(e) != 1 || e[0].Values["seq"] != strconv.FormatUint(head.Seq, 10) {
			t.Fatalf("Head %v: its entry is %v, %v", head, e, err)
		}
	}
	stop()
	wg.Wait()
	if moved < 2 {
		t.Fatalf("the head moved %d times in 300 reads: the test did not read while publishing", moved)
	}
	t.Logf("300 Head reads while %d events were published: the head moved %d times", published, moved)
}

// Range's page is one epoch's: while the topic is reset again and again
// (log and meta hash deleted, then published to), every event of a page
// belongs to the epoch the page names.
func TestRangePageIsOneEpochWhileResetting(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	const topic = "churn"
	logKey, metaKey, _ := tr.Keys(topic)
	// round[epoch] and the round in each event's id tell the truth.
	var mu sync.Mutex
	round := map[string]int{}
	var done atomic.Bool // the publisher ends its round and stops
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := 0; !done.Load(); r++ {
			if err := rdb.Del(ctx, logKey, metaKey).Err(); err != nil {
				t.Error(err)
				return
			}
			msgs := make([]transport.Message, 20)
			for i := range msgs {
				msgs[i] = message(topic, r)
			}
			pos, err := tr.PublishBatch(ctx, msgs)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			round[pos[0].Epoch] = r
			mu.Unlock()
		}
	}()
	type seen struct {
		epoch string
		data  [][]byte
	}
	var pages []seen
	var unknown int
	for len(pages) < 300 {
		page, err := tr.Range(ctx, topic, transport.Position{}, 50)
		if errors.Is(err, transport.ErrUnknownTopic) {
			unknown++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		s := seen{epoch: page.Epoch}
		for _, d := range page.Events {
			s.data = append(s.data, d.Data)
		}
		pages = append(pages, s)
	}
	done.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	epochs := map[string]bool{}
	for _, p := range pages {
		r, ok := round[p.epoch]
		if !ok {
			t.Fatalf("a page names epoch %q, which no publish returned", p.epoch)
		}
		epochs[p.epoch] = true
		for _, d := range p.data {
			if got := eventRound(t, d); got != r {
				t.Fatalf("a page of epoch %s (round %d) holds an event of round %d", p.epoch, r, got)
			}
		}
	}
	if len(epochs) < 2 {
		t.Fatalf("300 pages saw %d epochs: the test did not read while resetting", len(epochs))
	}
	t.Logf("300 pages over %d epochs (%d resets), %d reads found no topic", len(epochs), len(round), unknown)
}

// eventRound returns the "i" of an envelope built by message.
func eventRound(t *testing.T, data []byte) int {
	t.Helper()
	var v struct {
		Data struct {
			I int `json:"i"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("bad envelope %q: %v", data, err)
	}
	return v.Data.I
}

// A log made again under the epoch it had (the log lost, its meta hash
// kept) goes on after the lost log's stream ids, also within the
// millisecond of the lost log's last entry: a cursor in the lost log reads
// the new entries after it. Auto stream ids restart in a new stream from
// Redis's clock in milliseconds, so the new log's first id can sort before
// the last id of the log it replaces (a loaded make test saw it).
func TestLogMadeAgainSortsAfterTheLostOne(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	for i := range 300 {
		topic := "again." + strconv.Itoa(i)
		var old transport.Position
		for j := range 3 {
			var err error
			if old, err = tr.Publish(ctx, message(topic, j)); err != nil {
				t.Fatal(err)
			}
		}
		logKey, _, _ := tr.Keys(topic)
		if err := rdb.Del(ctx, logKey).Err(); err != nil {
			t.Fatal(err)
		}
		next, err := tr.Publish(ctx, message(topic, 3))
		if err != nil {
			t.Fatal(err)
		}
		if next.Epoch != old.Epoch || next.Seq != old.Seq+1 {
			t.Fatalf("round %d: the publish after the log was lost made %v, want seq %d of %s", i, next, old.Seq+1, old.Epoch)
		}
		page, err := tr.Range(ctx, topic, old, 10)
		if err != nil || len(page.Events) != 1 || page.Events[0].Position != next {
			t.Fatalf("round %d: Range after %v: %v, %v; want %v alone", i, old, page, err, next)
		}
	}
}
