package redistransport_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rollBack emulates Redis losing the last n acknowledged events of topic:
// their entries go, and the meta seq goes back by n.
func rollBack(t *testing.T, admin *redis.Client, tr *redistransport.Transport, topic string, n int64) {
	t.Helper()
	ctx := context.Background()
	logKey, metaKey, _ := tr.Keys(topic)
	last, err := admin.XRevRangeN(ctx, logKey, "+", "-", n).Result()
	if err != nil || int64(len(last)) != n {
		t.Fatalf("XREVRANGE: %d entries, %v", len(last), err)
	}
	for _, e := range last {
		if err := admin.XDel(ctx, logKey, e.ID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.HIncrBy(ctx, metaKey, "seq", -n).Err(); err != nil {
		t.Fatal(err)
	}
}

// markers returns the rollback markers of topic's log, and the log.
func markers(t *testing.T, admin *redis.Client, tr *redistransport.Transport, topic string) (rb []redis.XMessage, log []redis.XMessage) {
	t.Helper()
	logKey, _, _ := tr.Keys(topic)
	log, err := admin.XRange(context.Background(), logKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range log {
		if _, ok := e.Values["rb"]; ok {
			rb = append(rb, e)
		}
	}
	return rb, log
}

// A publisher that sees Redis hand out again seqs it saw acknowledged
// writes one marker into the topic's log, naming the range lost, and logs
// it.
func TestRollbackMarkerWritten(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	var logged syncBuffer
	tr := newTransport(t, srv.Client(t), redistransport.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	ctx := testCtx(t)
	var epoch string
	for i := 1; i <= 20; i++ {
		pos, err := tr.Publish(ctx, message("rb", i))
		if err != nil {
			t.Fatal(err)
		}
		epoch = pos.Epoch
	}
	rollBack(t, admin, tr, "rb", 5) // seqs 16..20 lost, meta seq back to 15
	var after []transport.Position
	for i := 1; i <= 3; i++ {
		pos, err := tr.Publish(ctx, message("rb", 20+i))
		if err != nil {
			t.Fatal(err)
		}
		if pos.Epoch != epoch || pos.Seq != uint64(15+i) {
			t.Fatalf("after the rollback: %v, want seq %d of epoch %s", pos, 15+i, epoch)
		}
		after = append(after, pos)
	}
	rb, log := markers(t, admin, tr, "rb")
	if len(rb) != 1 {
		t.Fatalf("%d markers in the log, want 1: %v", len(rb), rb)
	}
	m := rb[0]
	want := fmt.Sprintf("%s 16 20", epoch)
	if m.Values["rb"] != want || m.Values["seq"] != "16" || m.Values["e"] != nil || len(m.Values) != 2 {
		t.Fatalf("marker %v; want fields seq=16 and rb=%q only", m.Values, want)
	}
	// The marker follows the event that revealed the rollback (the new
	// seq 16) and comes before the next.
	if len(log) != 15+3+1 || log[15].ID != after[0].ID || log[16].ID != m.ID || log[17].ID != after[1].ID {
		t.Fatalf("log order: %d entries, marker %s, new events %v", len(log), m.ID, after)
	}
	out := logged.String()
	if !strings.Contains(out, "rollback") || !strings.Contains(out, "topic=rb") || !strings.Contains(out, "epoch="+epoch) ||
		!strings.Contains(out, "from=16") || !strings.Contains(out, "to=20") || strings.Count(out, "rollback") != 1 {
		t.Fatalf("log output:\n%s", out)
	}
	t.Logf("marker %s %v; logged: %s", m.ID, m.Values, strings.TrimSpace(out))
}

// A reply that reveals the rollback may not be the one of the first reused
// seq (another publisher took it, or its reply is still on its way): the
// marker still names the whole range, from the first event logged after
// the last acknowledged one. Concurrent publishes write one marker.
func TestRollbackMarkerRangeFromTheLog(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	tr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	var epoch string
	for i := 1; i <= 20; i++ {
		pos, err := tr.Publish(ctx, message("rb2", i))
		if err != nil {
			t.Fatal(err)
		}
		epoch = pos.Epoch
	}
	rollBack(t, admin, tr, "rb2", 5)
	// Another publisher, which saw nothing before, takes seq 16.
	other := newTransport(t, srv.Client(t))
	if pos, err := other.Publish(ctx, message("rb2", 100)); err != nil || pos.Seq != 16 {
		t.Fatalf("other publisher: %v, %v", pos, err)
	}
	rb, _ := markers(t, admin, tr, "rb2")
	if len(rb) != 0 {
		t.Fatalf("a publisher without history wrote a marker: %v", rb)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := tr.Publish(ctx, message("rb2", 200+i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rb, _ = markers(t, admin, tr, "rb2")
	if want := epoch + " 16 20"; len(rb) != 1 || rb[0].Values["rb"] != want {
		t.Fatalf("markers %v; want one, %q", rb, want)
	}
	// The reader's side: a log entry without "e" is no event.
	for _, d := range rangeAll(t, tr, "rb2") {
		if d.Rollback == nil && d.Position.ID == rb[0].ID {
			t.Fatalf("Range returned the marker as an event: %+v", d)
		}
	}
}
