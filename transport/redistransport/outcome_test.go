package redistransport_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// outcomeRig is a transport whose client goes through a proxy, beside an
// admin client that goes straight to Redis, for counting the log.
type outcomeRig struct {
	admin *redis.Client
	proxy *redistest.Proxy
	tr    *redistransport.Transport
	topic string
}

// newOutcomeRig starts Redis, a proxy and a transport on a client through
// it with readTimeout, retrying fast (so that a retry by go-redis, if any,
// would happen during the test), and publishes one event: the script is
// loaded and the topic exists.
func newOutcomeRig(t *testing.T, readTimeout time.Duration, opts ...redistransport.Option) *outcomeRig {
	t.Helper()
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	rdb := redis.NewClient(&redis.Options{
		Addr: proxy.Addr(), ReadTimeout: readTimeout, DialTimeout: time.Second,
		MaxRetries: 3, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	r := &outcomeRig{admin: srv.Client(t), proxy: proxy, tr: newTransport(t, rdb, opts...), topic: "outcome"}
	if _, err := r.tr.Publish(testCtx(t), message(r.topic, 0)); err != nil {
		t.Fatal(err)
	}
	return r
}

// copies returns how many log entries hold the envelope with id.
func (r *outcomeRig) copies(t *testing.T, id string) int {
	t.Helper()
	logKey, _, _ := r.tr.Keys(r.topic)
	entries, err := r.admin.XRange(context.Background(), logKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if s, ok := e.Values["e"].(string); ok && envelopeID(t, []byte(s)) == id {
			n++
		}
	}
	return n
}

// waitCopies waits until the log holds at least one copy of id, then
// returns how many it holds.
func (r *outcomeRig) waitCopies(t *testing.T, id string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n := r.copies(t, id); n > 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Each way a publish can fail, through a proxy that delays or breaks the
// connection: the error wraps ErrUnknownOutcome exactly when the event may
// have been written, and the log then holds it at most once (go-redis does
// not send the script again).
func TestPublishOutcomes(t *testing.T) {
	t.Run("read timeout after sending: unknown, written once", func(t *testing.T) {
		r := newOutcomeRig(t, 200*time.Millisecond)
		r.proxy.Latency(t, time.Second, 0) // replies come after the read timeout
		m := message(r.topic, 1)
		_, err := r.tr.Publish(context.Background(), m)
		if !errors.Is(err, redistransport.ErrUnknownOutcome) || !isTimeout(err) {
			t.Fatalf("Publish: %v; want ErrUnknownOutcome and a timeout", err)
		}
		r.proxy.Heal(t)
		// Publish returned: go-redis is done with the call, nothing more is sent.
		if n := r.waitCopies(t, m.ID); n != 1 {
			t.Fatalf("the log holds %d copies, want 1 (Redis ran the script once)", n)
		}
		t.Logf("%v; the log holds the event once", err)
	})

	t.Run("ctx deadline after sending: unknown at once, written once", func(t *testing.T) {
		r := newOutcomeRig(t, 20*time.Second)
		r.proxy.Latency(t, 2*time.Second, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		m := message(r.topic, 1)
		start := time.Now()
		_, err := r.tr.Publish(ctx, m)
		// Had Publish waited for the reply (2 s), it would have succeeded.
		if !errors.Is(err, redistransport.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish: %v; want ErrUnknownOutcome and DeadlineExceeded", err)
		}
		t.Logf("returned after %v (ctx 300ms, reply delayed 2s): %v", time.Since(start).Round(time.Millisecond), err)
		redistransport.WaitPublishes(r.tr)
		if n := r.copies(t, m.ID); n != 1 {
			t.Fatalf("the log holds %d copies, want 1", n)
		}
	})

	t.Run("connection closed after Redis ran it: unknown, written once", func(t *testing.T) {
		r := newOutcomeRig(t, 20*time.Second)
		r.proxy.Latency(t, 5*time.Second, 0)
		m := message(r.topic, 1)
		done := make(chan error, 1)
		go func() {
			_, err := r.tr.Publish(context.Background(), m)
			done <- err
		}()
		if n := r.waitCopies(t, m.ID); n != 1 {
			t.Fatalf("the log holds %d copies, want 1", n)
		}
		r.proxy.Disable(t) // closes the connection, the delayed reply with it
		err := <-done
		if !errors.Is(err, redistransport.ErrUnknownOutcome) {
			t.Fatalf("Publish: %v; want ErrUnknownOutcome", err)
		}
		r.proxy.Enable(t)
		if n := r.copies(t, m.ID); n != 1 {
			t.Fatalf("the log holds %d copies, want 1", n)
		}
		t.Logf("%v; the log holds the event once", err)
	})

	t.Run("connection reset before Redis got it: unknown, not written", func(t *testing.T) {
		r := newOutcomeRig(t, 2*time.Second)
		r.proxy.ResetPeer(t) // the command is dropped, the connection reset
		m := message(r.topic, 1)
		_, err := r.tr.Publish(context.Background(), m)
		// The client cannot tell this from the case above: it must not
		// claim the event was not written.
		if !errors.Is(err, redistransport.ErrUnknownOutcome) {
			t.Fatalf("Publish: %v; want ErrUnknownOutcome", err)
		}
		r.proxy.Heal(t)
		if _, err := r.tr.Publish(context.Background(), message(r.topic, 2)); err != nil {
			t.Fatal(err) // a later event goes through
		}
		if n := r.copies(t, m.ID); n != 0 {
			t.Fatalf("the log holds %d copies, want 0", n)
		}
		t.Logf("%v; not in the log", err)
	})

	t.Run("dial refused: not written", func(t *testing.T) {
		srv := redistest.Start(t)
		proxy := redistest.StartProxy(t, srv.Addr())
		proxy.Disable(t)
		rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: 1})
		t.Cleanup(func() { _ = rdb.Close() })
		tr := newTransport(t, rdb)
		_, err := tr.Publish(testCtx(t), message("outcome", 1))
		if err == nil || errors.Is(err, redistransport.ErrUnknownOutcome) {
			t.Fatalf("Publish: %v; want an error without ErrUnknownOutcome", err)
		}
		logKey, _, _ := tr.Keys("outcome")
		if n := srv.Client(t).Exists(context.Background(), logKey).Val(); n != 0 {
			t.Fatal("the log exists")
		}
		t.Logf("%v", err)
	})

	t.Run("ctx ended before sending, invalid, too large: not written", func(t *testing.T) {
		r := newOutcomeRig(t, time.Second, redistransport.WithMaxSize(1000))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		m := message(r.topic, 1)
		big := message(r.topic, 2)
		big.Data = append(big.Data, make([]byte, 1000)...)
		for _, c := range []struct {
			ctx  context.Context
			msg  transport.Message
			want error
		}{
			{ctx, m, context.Canceled},
			{context.Background(), transport.Message{Topic: "a b", Data: m.Data}, transport.ErrInvalidTopic},
			{context.Background(), big, transport.ErrTooLarge},
		} {
			_, err := r.tr.Publish(c.ctx, c.msg)
			if !errors.Is(err, c.want) || errors.Is(err, redistransport.ErrUnknownOutcome) {
				t.Fatalf("Publish: %v; want %v without ErrUnknownOutcome", err, c.want)
			}
			pos, err := r.tr.PublishBatch(c.ctx, []transport.Message{c.msg})
			var be *transport.BatchError
			if !errors.As(err, &be) || len(be.Failed) != 1 || !errors.Is(err, c.want) || errors.Is(err, redistransport.ErrUnknownOutcome) || pos[0].Seq != 0 {
				t.Fatalf("PublishBatch: %v; want a BatchError of %v without ErrUnknownOutcome", err, c.want)
			}
		}
		if n := r.copies(t, m.ID); n != 0 {
			t.Fatalf("the log holds %d copies, want 0", n)
		}
	})

	t.Run("batch, read timeout: BatchError wraps unknown, written once", func(t *testing.T) {
		r := newOutcomeRig(t, 200*time.Millisecond, redistransport.WithMaxSize(1000))
		r.proxy.Latency(t, time.Second, 0)
		big := message(r.topic, 9)
		big.Data = append(big.Data, make([]byte, 1000)...)
		msgs := []transport.Message{message(r.topic, 1), message("outcome.b", 2), big, message(r.topic, 3)}
		_, err := r.tr.PublishBatch(context.Background(), msgs)
		var be *transport.BatchError
		if !errors.As(err, &be) || len(be.Failed) != 4 ||
			!errors.Is(err, redistransport.ErrUnknownOutcome) || !errors.Is(err, transport.ErrTooLarge) || !isTimeout(err) {
			t.Fatalf("PublishBatch: %v; want a BatchError of all 4, wrapping ErrUnknownOutcome, a timeout and ErrTooLarge", err)
		}
		r.proxy.Heal(t)
		for _, i := range []int{0, 3} {
			if n := r.waitCopies(t, msgs[i].ID); n != 1 {
				t.Fatalf("event %d: the log holds %d copies, want 1", i, n)
			}
		}
		t.Logf("%v", err)
	})

	t.Run("batch, ctx deadline after sending: unknown at once, written once", func(t *testing.T) {
		r := newOutcomeRig(t, 20*time.Second)
		r.proxy.Latency(t, 2*time.Second, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		msgs := []transport.Message{message(r.topic, 1), message(r.topic, 2)}
		pos, err := r.tr.PublishBatch(ctx, msgs)
		var be *transport.BatchError
		if !errors.As(err, &be) || len(be.Failed) != 2 || pos[0].Seq != 0 || pos[1].Seq != 0 ||
			!errors.Is(err, redistransport.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("PublishBatch: %v, %v; want a BatchError of both, ErrUnknownOutcome and DeadlineExceeded", pos, err)
		}
		redistransport.WaitPublishes(r.tr)
		for _, m := range msgs {
			if n := r.copies(t, m.ID); n != 1 {
				t.Fatalf("the log holds %d copies of %s, want 1", n, m.ID)
			}
		}
	})
}

// With the idempotency window on, publishing again an event whose outcome
// was unknown returns the first position and writes nothing.
func TestUnknownOutcomeThenRepublishWithIdempotency(t *testing.T) {
	r := newOutcomeRig(t, 200*time.Millisecond, redistransport.WithIdempotency(time.Minute))
	r.proxy.Latency(t, time.Second, 0)
	m := message(r.topic, 1)
	if _, err := r.tr.Publish(context.Background(), m); !errors.Is(err, redistransport.ErrUnknownOutcome) {
		t.Fatalf("Publish: %v; want ErrUnknownOutcome", err)
	}
	r.proxy.Heal(t)
	pos, err := r.tr.Publish(testCtx(t), m)
	if err != nil {
		t.Fatal(err)
	}
	logKey, _, _ := r.tr.Keys(r.topic)
	entries, err := r.admin.XRange(context.Background(), logKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || pos.ID != entries[1].ID || pos.Seq != 2 || r.copies(t, m.ID) != 1 {
		t.Fatalf("republished at %v; the log holds %d entries (want 2: the first event, then this one at seq 2, id %s)",
			pos, len(entries), entries[len(entries)-1].ID)
	}
}

// A caller whose event was taken into a coalesced pipeline returns when its
// ctx ends, not when the reply comes (the caller that starts a flush
// included); one whose event is still queued returns a plain ctx error and
// its event is never written.
func TestCoalescedCallersHonourTheirCtx(t *testing.T) {
	r := newOutcomeRig(t, 30*time.Second)
	const latency = 3 * time.Second
	r.proxy.Latency(t, latency, 0)
	var (
		mu               sync.Mutex
		unknown, notSent []string
	)
	publish := func(wg *sync.WaitGroup, i int, d time.Duration) {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		m := message(r.topic, i)
		_, err := r.tr.Publish(ctx, m)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case errors.Is(err, redistransport.ErrUnknownOutcome) && errors.Is(err, context.DeadlineExceeded):
			unknown = append(unknown, m.ID)
		case errors.Is(err, context.DeadlineExceeded):
			notSent = append(notSent, m.ID)
		default:
			t.Errorf("Publish: %v; want a ctx error (no reply comes before %v)", err, latency)
		}
	}
	// Four lone calls take the four flush slots until their replies come
	// (3 s); they return when their ctx ends.
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go publish(&wg, i, 500*time.Millisecond)
	}
	wg.Wait()
	lone := len(unknown)
	// Then 20 calls queue. 16 can wait 4 s: at about 3 s a freed slot takes
	// them into one pipeline, whose reply comes 3 s later, after their ctx
	// ended. 4 give up after 1 s, still queued.
	for i := 0; i < 20; i++ {
		wg.Add(1)
		d := 4 * time.Second
		if i%5 == 0 {
			d = time.Second
		}
		go publish(&wg, 10+i, d)
	}
	wg.Wait()
	t.Logf("24 callers returned after %v: %d of unknown outcome (%d lone), %d not sent",
		time.Since(start).Round(time.Millisecond), len(unknown), lone, len(notSent))
	if lone != 4 || len(unknown) <= lone || len(notSent) < 4 {
		t.Fatalf("%d lone callers of unknown outcome (want 4), %d coalesced (want some), %d not sent (want at least 4)",
			lone, len(unknown)-lone, len(notSent))
	}
	redistransport.WaitPublishes(r.tr)
	for _, id := range unknown {
		if c := r.copies(t, id); c != 1 {
			t.Fatalf("event %s of unknown outcome is in the log %d times, want 1 (it was sent)", id, c)
		}
	}
	for _, id := range notSent {
		if c := r.copies(t, id); c != 0 {
			t.Fatalf("event %s, not sent, is in the log %d times", id, c)
		}
	}
}
