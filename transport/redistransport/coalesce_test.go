package redistransport_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// Concurrent publishes are coalesced into shared script calls; every caller
// still gets its own position, and the log holds each event once, in seq
// order.
func TestCoalescedPublishGivesEachCallerItsPosition(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 8})
	t.Cleanup(func() { _ = rdb.Close() })
	tr := newTransport(t, rdb)
	ctx := testCtx(t)
	const goroutines, each = 32, 200
	var mu sync.Mutex
	byID := make(map[string]transport.Position)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				topic := []string{"co.a", "co.b", "co.c"}[i%3]
				m := message(topic, i)
				pos, err := tr.Publish(ctx, m)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				byID[m.ID] = pos
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(byID) != goroutines*each {
		t.Fatalf("published %d, got %d positions", goroutines*each, len(byID))
	}
	total := 0
	for _, topic := range []string{"co.a", "co.b", "co.c"} {
		page, err := tr.Range(ctx, topic, transport.Position{}, 10*goroutines*each)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range page.Events {
			if d.Position.Seq != uint64(i+1) {
				t.Fatalf("%s: entry %d has seq %d", topic, i, d.Position.Seq)
			}
			if got := byID[envelopeID(t, d.Data)]; got != d.Position {
				t.Fatalf("%s: publisher was told %v, the log has %v", topic, got, d.Position)
			}
		}
		total += len(page.Events)
	}
	if total != goroutines*each {
		t.Fatalf("published %d, the logs hold %d", goroutines*each, total)
	}
}

// A caller whose ctx ends while its event waits in the queue gets ctx's
// error and its event is not written; one cancelled after its event was
// sent gets ErrUnknownOutcome. Either way every event in the log was
// published by someone, once.
func TestCoalescedPublishHonoursCancellation(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 4})
	t.Cleanup(func() { _ = rdb.Close() })
	tr := newTransport(t, rdb)
	ctx := testCtx(t)
	var mu sync.Mutex
	ok, notSent, unknown := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				m := message("cancel", i)
				c, cancel := context.WithCancel(ctx)
				if i%3 == 0 {
					cancel()
				} else if i%3 == 1 {
					go cancel()
				}
				_, err := tr.Publish(c, m)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					ok[m.ID] = true
				case errors.Is(err, redistransport.ErrUnknownOutcome) && errors.Is(err, context.Canceled):
					unknown[m.ID] = true
				case errors.Is(err, context.Canceled):
					notSent[m.ID] = true
				default:
					t.Errorf("unexpected error: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	page, err := tr.Range(ctx, "cancel", transport.Position{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	inLogNotSent := 0
	for _, d := range page.Events {
		id := envelopeID(t, d.Data)
		if seen[id] {
			t.Fatalf("event %s is in the log twice", id)
		}
		seen[id] = true
		if notSent[id] {
			inLogNotSent++
		}
		if !ok[id] && !unknown[id] && !notSent[id] {
			t.Fatalf("event %s in the log was never published", id)
		}
	}
	for id := range ok {
		if !seen[id] {
			t.Fatalf("event %s was acknowledged but is not in the log", id)
		}
	}
	t.Logf("acknowledged %d, outcome unknown %d, cancelled %d (of which in the log %d); in the log %d",
		len(ok), len(unknown), len(notSent), inLogNotSent, len(seen))
}
