package redistransport_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// publishWithLostReply publishes m through a proxy that delays replies past
// the client's read timeout: Redis runs the script, the reply is lost, and
// Publish returns ErrUnknownOutcome (go-redis does not send the script
// again by itself). The caller then does what ErrUnknownOutcome's doc says:
// it publishes the same message again, once the proxy is healed.
func publishWithLostReply(t *testing.T, idem time.Duration) (pos transport.Position, log []redis.XMessage, tr *redistransport.Transport) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr: proxy.Addr(), ReadTimeout: 200 * time.Millisecond,
		MaxRetries: 3, MinRetryBackoff: 400 * time.Millisecond, MaxRetryBackoff: 400 * time.Millisecond,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	var opts []redistransport.Option
	if idem > 0 {
		opts = append(opts, redistransport.WithIdempotency(idem))
	}
	tr = newTransport(t, rdb, opts...)
	ctx := testCtx(t)
	if _, err := tr.Publish(ctx, message("idem", 0)); err != nil { // loads the script
		t.Fatal(err)
	}
	logKey, _, _ := tr.Keys("idem")

	proxy.Latency(t, time.Second, 0)
	m := message("idem", 1)
	if _, err := tr.Publish(ctx, m); !errors.Is(err, redistransport.ErrUnknownOutcome) {
		t.Fatalf("Publish with its reply lost: %v; want ErrUnknownOutcome", err)
	}
	proxy.Heal(t)
	if n := admin.XLen(ctx, logKey).Val(); n != 2 {
		t.Fatalf("the log holds %d entries, want 2 (the first event, and the lost reply's)", n)
	}
	var err error
	if pos, err = tr.Publish(ctx, m); err != nil {
		t.Fatalf("Publish again: %v", err)
	}
	stats := admin.Info(ctx, "commandstats").Val()
	if !strings.Contains(stats, "cmdstat_evalsha:calls=3,") {
		t.Fatalf("want 3 EVALSHA calls (1 + the lost one + the caller's second):\n%s", stats)
	}
	log, err = admin.XRange(context.Background(), logKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return pos, log[1:], tr
}

func TestIdempotencyWindowAbsorbsRepublish(t *testing.T) {
	pos, log, _ := publishWithLostReply(t, time.Minute)
	if len(log) != 1 {
		t.Fatalf("log holds %d entries of the event, want 1", len(log))
	}
	if pos.Seq != 2 || pos.ID != log[0].ID {
		t.Fatalf("Publish returned %v, want the first write (seq 2, id %s)", pos, log[0].ID)
	}
	t.Logf("reply lost, the caller published again: one entry, Publish returned the first position %v", pos)
}

func TestWithoutIdempotencyRepublishIsDetectable(t *testing.T) {
	pos, log, _ := publishWithLostReply(t, 0)
	if len(log) != 2 {
		t.Fatalf("log holds %d entries of the event, want 2 (publishing again wrote it again)", len(log))
	}
	id0 := envelopeID(t, []byte(log[0].Values["e"].(string)))
	id1 := envelopeID(t, []byte(log[1].Values["e"].(string)))
	seq0, seq1 := log[0].Values["seq"], log[1].Values["seq"]
	if id0 != id1 || seq0 == seq1 {
		t.Fatalf("duplicate entries: ids %s/%s seqs %v/%v; want the same id under two seqs", id0, id1, seq0, seq1)
	}
	if pos.Seq != 3 {
		t.Fatalf("Publish returned %v, want the second write's seq 3", pos)
	}
	t.Logf("reply lost, the caller published again: envelope %s at seq %v and %v; a follower dedupes by id", id0, seq0, seq1)
}

// With the window on, an id repeated within one PublishBatch is written
// once, and both get its position; publishing it again later returns that
// position too.
func TestIdempotencyWithinOneBatch(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTransport(t, srv.Client(t), redistransport.WithIdempotency(time.Minute))
	ctx := testCtx(t)
	e0, e1 := message("batch", 0), message("batch", 1)
	pos, err := tr.PublishBatch(ctx, []transport.Message{e0, e1, e0})
	if err != nil {
		t.Fatal(err)
	}
	if pos[0] != pos[2] || pos[0].Seq != 1 || pos[1].Seq != 2 {
		t.Fatalf("positions %v: want e0 at seq 1 twice, e1 at seq 2", pos)
	}
	logKey, _, _ := tr.Keys("batch")
	if n := srv.Client(t).XLen(ctx, logKey).Val(); n != 2 {
		t.Fatalf("log holds %d entries, want 2", n)
	}
	again, err := tr.Publish(ctx, e0)
	if err != nil || again != pos[0] {
		t.Fatalf("publishing e0 again: %v, %v; want %v", again, err, pos[0])
	}
}
