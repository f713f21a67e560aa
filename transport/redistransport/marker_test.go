package redistransport_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
)

// A rollback marker in the log (XADD seq <meta seq> rb "<epoch> <from> <to>",
// no e field) comes out of Range as a Delivery with Rollback set, in log
// order and counted in the page's limit; markers that do not parse are junk;
// Seek steps over markers.
func TestRangeReturnsRollbackMarkers(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	const topic = "marked"
	logKey, _, _ := tr.Keys(topic)
	base := time.Now().Add(-time.Minute)
	var pos []transport.Position // pos[i] is event seq i+1
	publish := func(i int) {
		t.Helper()
		m := message(topic, i)
		m.Data = fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"test","type":"test.event","version":1,"time":%q,"data":{"i":%d}}`,
			m.ID, base.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i)
		p, err := tr.Publish(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p)
	}
	xadd := func(values ...any) string {
		t.Helper()
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: logKey, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for i := range 5 {
		publish(i)
	}
	epoch := pos[0].Epoch
	// Redis handed out 3..5 again: the publisher, which saw 3..7
	// acknowledged before, writes the marker at the current seq.
	junkBefore := tr.Stats().JunkEntries
	markerID := xadd("seq", 5, "rb", epoch+" 3 7")
	for _, bad := range []string{"", epoch, epoch + " 3", epoch + " 0 7", epoch + " 7 3", epoch + " x 7", epoch + " 3 7 9"} {
		xadd("seq", 5, "rb", bad)
	}
	xadd("seq", "x", "rb", epoch+" 3 7") // a marker needs a decimal seq
	xadd("rb", epoch+" 3 7")
	const junk = 9
	publish(5)
	publish(6)

	marker := transport.Delivery{
		Topic:    topic,
		Position: transport.Position{Epoch: epoch, Seq: 5, ID: markerID},
		Rollback: &transport.Rollback{Epoch: epoch, From: 3, To: 7},
	}
	check := func(what string, got []transport.Delivery, want ...any) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d deliveries, want %d: %v", what, len(got), len(want), got)
		}
		for i, w := range want {
			d := got[i]
			switch w := w.(type) {
			case int: // an event, by seq
				if d.Rollback != nil || d.Position != pos[w-1] || len(d.Data) == 0 {
					t.Fatalf("%s: delivery %d is %+v, want event %v", what, i, d, pos[w-1])
				}
			case transport.Delivery:
				if d.Rollback == nil || *d.Rollback != *w.Rollback || d.Position != w.Position || d.Data != nil || d.Topic != topic {
					t.Fatalf("%s: delivery %d is %+v (rollback %+v), want marker %+v", what, i, d, d.Rollback, w.Position)
				}
			}
		}
	}

	page, err := tr.Range(ctx, topic, transport.Position{}, 100)
	if err != nil || page.Epoch != epoch {
		t.Fatalf("Range: %v, epoch %q", err, page.Epoch)
	}
	check("Range from the start", page.Events, 1, 2, 3, 4, 5, marker, 6, 7)
	if got := tr.Stats().JunkEntries - junkBefore; got != junk {
		t.Fatalf("%d junk entries counted, want %d", got, junk)
	}
	// The marker takes a place in the page like an event.
	page, err = tr.Range(ctx, topic, pos[3], 2)
	if err != nil {
		t.Fatal(err)
	}
	check("Range after 4, limit 2", page.Events, 5, marker)
	page, err = tr.Range(ctx, topic, pos[4], 1)
	if err != nil {
		t.Fatal(err)
	}
	check("Range after 5, limit 1", page.Events, marker)
	page, err = tr.Range(ctx, topic, marker.Position, 1)
	if err != nil {
		t.Fatal(err)
	}
	check("Range after the marker, limit 1", page.Events, 6)
	// Without a stream id the marker, written at seq 5, follows seq 5.
	page, err = tr.Range(ctx, topic, transport.Position{Epoch: epoch, Seq: 5}, 10)
	if err != nil {
		t.Fatal(err)
	}
	check("Range after seq 5 without id", page.Events, marker, 6, 7)

	// Seek finds events only: the first event at or after the marker's
	// time is seq 6.
	for i, want := range map[int]int{0: 1, 4: 5, 5: 6, 6: 7} {
		p, err := tr.Seek(ctx, topic, base.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		page, err := tr.Range(ctx, topic, p, 1)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("Range(Seek(base+%ds), 1)", i), page.Events, want)
	}
	// A marker as the log's last entry: Head points at it, and a Range
	// from the head is empty.
	last := xadd("seq", 7, "rb", epoch+" 8 9")
	head, err := tr.Head(ctx, topic)
	if err != nil || head != (transport.Position{Epoch: epoch, Seq: 7, ID: last}) {
		t.Fatalf("Head with a marker last: %v, %v", head, err)
	}
	if page, err := tr.Range(ctx, topic, head, 10); err != nil || len(page.Events) != 0 {
		t.Fatalf("Range from the head: %v, %v", page.Events, err)
	}
	if p, err := tr.Seek(ctx, topic, base.Add(time.Hour)); err != nil || p != head {
		t.Fatalf("Seek past every event: %v, %v; want the head %v", p, err, head)
	}
}
