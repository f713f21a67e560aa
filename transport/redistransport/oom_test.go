package redistransport_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
)

// At maxmemory with noeviction, Redis refuses writes (OOM) and aborts every
// MULTI/EXEC (EXECABORT), but backlog reads must go on: a restarted
// consumer has to catch up from its checkpoint.
func TestReadsWorkAtMaxmemoryNoeviction(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "4mb", "--maxmemory-policy", "noeviction"))
	ctx := testCtx(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	const topic = "oom"
	first, err := tr.Publish(ctx, message(topic, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SaveCheckpoints(ctx, "billing", map[string]transport.Position{topic: first}); err != nil {
		t.Fatal(err)
	}

	// Fill Redis with batches of events of 8 KiB until one is refused,
	// then with single small events until one is refused too.
	big := message(topic, 1)
	big.Data = []byte(strings.Replace(string(big.Data), `"data":{"i":1}`, `"data":{"s":"`+strings.Repeat("x", 8<<10)+`"}`, 1))
	batch := make([]transport.Message, 20)
	for i := range batch {
		batch[i] = big
	}
	var full error
	for i := 0; full == nil; i++ {
		if i == 1000 {
			t.Fatal("no OOM after 1000 batches of 160 KiB with maxmemory 4mb")
		}
		_, full = tr.PublishBatch(ctx, batch)
	}
	if !strings.Contains(full.Error(), "OOM") {
		t.Fatalf("PublishBatch at maxmemory: %v, want an OOM error", full)
	}
	full = nil
	for i := 0; full == nil; i++ {
		if i == 100_000 {
			t.Fatal("no OOM after 100 000 small events with maxmemory 4mb")
		}
		_, full = tr.Publish(ctx, message(topic, 2))
	}
	if !strings.Contains(full.Error(), "OOM") {
		t.Fatalf("Publish at maxmemory: %v, want an OOM error", full)
	}
	// The state the old reads failed in: MULTI/EXEC is refused as a whole.
	// Redis's used memory moves (buffers freed, lazy frees): when it has
	// fallen back under the limit, one more event takes it there again.
	_, metaKey, _ := tr.Keys(topic)
	refill := func() {
		for i := 0; i < 100_000; i++ {
			if _, err := tr.Publish(ctx, message(topic, 2)); err != nil {
				return
			}
		}
	}
	for try := 0; ; try++ {
		_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HGet(ctx, metaKey, "epoch")
			return nil
		})
		if err != nil && strings.Contains(err.Error(), "EXECABORT") {
			break
		}
		if try == 50 {
			t.Fatalf("a read in MULTI/EXEC at maxmemory: %v, want EXECABORT (the test does not reach the state it is about)", err)
		}
		refill()
	}
	t.Logf("at maxmemory: publish %v; MULTI/EXEC %v", full, err)

	// A restarted consumer: a new client and transport, reading everything.
	rdb2 := srv.Client(t)
	tr2 := newTransport(t, rdb2)
	cps, err := tr2.LoadCheckpoints(ctx, "billing")
	if err != nil || cps[topic] != first {
		t.Fatalf("LoadCheckpoints at maxmemory: %v, %v; want %v", cps, err, first)
	}
	head, err := tr2.Head(ctx, topic)
	if err != nil || head.Epoch != first.Epoch || head.Seq < 2 || head.ID == "" {
		t.Fatalf("Head at maxmemory: %v, %v", head, err)
	}
	var n uint64
	after := cps[topic]
	for {
		page, err := tr2.Range(ctx, topic, after, 7)
		if err != nil {
			t.Fatalf("Range at maxmemory after %v: %v", after, err)
		}
		for _, d := range page.Events {
			if d.Position.Seq != after.Seq+1 {
				t.Fatalf("Range at maxmemory: seq %d after %d", d.Position.Seq, after.Seq)
			}
			after = d.Position
			n++
		}
		if len(page.Events) < 7 {
			break
		}
	}
	if after != head {
		t.Fatalf("Range at maxmemory ended at %v, want the head %v", after, head)
	}
	pos, err := tr2.Seek(ctx, topic, time.Now().Add(-time.Hour))
	if err != nil || pos.Epoch != first.Epoch || pos.Seq != 0 {
		t.Fatalf("Seek at maxmemory: %v, %v; want seq 0 of %s", pos, err, first.Epoch)
	}
	if pos, err := tr2.Seek(ctx, topic, time.Now().Add(time.Hour)); err != nil || pos != head {
		t.Fatalf("Seek past the end at maxmemory: %v, %v; want the head %v", pos, err, head)
	}
	// Checkpoint saves are writes: refused, and said so (at maxmemory: a
	// save that went through because memory had fallen back is retried
	// once Redis is full again).
	for try := 0; ; try++ {
		refill()
		err = tr2.SaveCheckpoints(ctx, "billing", map[string]transport.Position{topic: head})
		if err != nil || try == 50 {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("SaveCheckpoints at maxmemory: %v, want an OOM error", err)
	}
	t.Logf("at maxmemory: read %d events after the checkpoint up to head %v", n, head)
}
