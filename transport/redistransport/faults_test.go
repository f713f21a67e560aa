package redistransport_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

func TestReconnectedAfterClientKill(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	tr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	sub, err := tr.Subscribe(ctx, "kill.me")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a steady stream of publishes
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			_, _ = tr.Publish(ctx, message("kill.me", i))
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	waitKind(t, sub, transport.Frame, 5*time.Second)
	for round := 0; round < 3; round++ {
		killed := time.Now()
		n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		if err != nil || n != 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub: %d, %v", n, err)
		}
		waitKind(t, sub, transport.Reconnected, time.Second)
		t.Logf("round %d: Reconnected %v after CLIENT KILL", round, time.Since(killed).Round(time.Millisecond))
		waitKind(t, sub, transport.Frame, 2*time.Second) // live again
	}
	if got := tr.Stats().Reconnects; got != 3 {
		t.Errorf("Stats().Reconnects = %d, want 3", got)
	}
}

func TestStalledOnBlackhole(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ReadTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = viaProxy.Close() })
	const interval, timeout = 200 * time.Millisecond, 200 * time.Millisecond
	subTr := newTransport(t, viaProxy, redistransport.WithProbe(interval, timeout))
	pubTr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	sub, err := subTr.Subscribe(ctx, "hole")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := pubTr.Publish(ctx, message("hole", 1)); err != nil {
		t.Fatal(err)
	}
	waitKind(t, sub, transport.Frame, 5*time.Second)

	proxy.Blackhole(t)
	holed := time.Now()
	ev := waitKind(t, sub, transport.Stalled, 3*time.Second)
	t.Logf("Stalled %v after the black hole (probe %v + %v): %v", time.Since(holed).Round(time.Millisecond), interval, timeout, ev.Err)
	if ev.Err == nil {
		t.Error("Stalled without Err")
	}

	proxy.Heal(t)
	healed := time.Now()
	waitKind(t, sub, transport.Reconnected, 5*time.Second)
	t.Logf("Reconnected %v after healing", time.Since(healed).Round(time.Millisecond))
	pos, err := pubTr.Publish(ctx, message("hole", 2))
	if err != nil {
		t.Fatal(err)
	}
	got := waitKind(t, sub, transport.Frame, 5*time.Second)
	if got.Delivery.Position != pos {
		t.Fatalf("frame at %v, want %v", got.Delivery.Position, pos)
	}
}

func TestDroppedExactRange(t *testing.T) {
	srv := redistest.Start(t)
	const buffer = 4
	tr := newTransport(t, srv.Client(t), redistransport.WithBufferSize(buffer))
	ctx := testCtx(t)
	sub, err := tr.Subscribe(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 100
	for i := 1; i <= n; i++ {
		if _, err := tr.Publish(ctx, message("slow", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The receiver reads nothing: the queue (4), the Events channel (16) and
	// the dispatcher's hand (1) hold at most 21 frames, so at least 79 are
	// dropped (more when the reader outruns the dispatcher).
	const held = buffer + 16 + 1
	deadline := time.Now().Add(5 * time.Second)
	for tr.Stats().DroppedFrames < n-held {
		if time.Now().After(deadline) {
			t.Fatalf("dropped %d frames, want at least %d", tr.Stats().DroppedFrames, n-held)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Frames and Dropped ranges account for every seq exactly once, in order,
	// each Dropped before the next frame of the topic.
	var last, frames, dropped uint64
	var epoch string
	for last < n {
		ev := next(t, sub, 2*time.Second)
		switch ev.Kind {
		case transport.Frame:
			if ev.Delivery.Position.Seq != last+1 {
				t.Fatalf("frame seq %d after seq %d", ev.Delivery.Position.Seq, last)
			}
			epoch = ev.Delivery.Position.Epoch
			last++
			frames++
		case transport.Dropped:
			if ev.Topic != "slow" || ev.From != last+1 || ev.To < ev.From || ev.To > n || ev.Epoch == "" || epoch != "" && ev.Epoch != epoch {
				t.Fatalf("got %+v after seq %d", ev, last)
			}
			t.Logf("Dropped %d..%d", ev.From, ev.To)
			dropped += ev.To - ev.From + 1
			last = ev.To
		default:
			t.Fatalf("unexpected %+v", ev)
		}
	}
	if dropped < n-held || dropped != tr.Stats().DroppedFrames {
		t.Fatalf("dropped %d (Stats %d), want at least %d", dropped, tr.Stats().DroppedFrames, n-held)
	}
	t.Logf("published %d to a receiver that read nothing: %d frames delivered, %d signalled as Dropped with their exact seqs", n, frames, dropped)
	pos, err := tr.Publish(ctx, message("slow", n+1))
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, time.Second); ev.Kind != transport.Frame || ev.Delivery.Position != pos {
		t.Fatalf("after the drop: %+v, want frame %v", ev, pos)
	}
}

func TestAOFRestartKeepsAcknowledged(t *testing.T) {
	srv := redistest.Start(t, redistest.WithAOF())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	tr := newTransport(t, rdb)
	ctx := testCtx(t)

	var mu sync.Mutex
	acked := map[uint64]transport.Position{}
	var failures int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		// One transport each, like 4 publishing processes: calls on one
		// transport would be coalesced into fewer round trips, and the
		// kill must catch some in flight.
		ptr := newTransport(t, rdb)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pos, err := ptr.Publish(ctx, message("aof", i))
				mu.Lock()
				if err == nil {
					acked[pos.Seq] = pos
				} else {
					failures++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	srv.Kill(t) // SIGKILL while publishing
	time.Sleep(100 * time.Millisecond)
	srv.Restart(t)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	held := map[uint64]transport.Position{}
	for _, d := range rangeAll(t, tr, "aof") {
		held[d.Position.Seq] = d.Position
	}
	lost := 0
	for seq, pos := range acked {
		if held[seq] != pos {
			lost++
		}
	}
	t.Logf("acknowledged %d (failed calls %d), backlog holds %d after SIGKILL + restart; lost %d", len(acked), failures, len(held), lost)
	if lost > 0 || len(acked) == 0 || failures == 0 {
		t.Fatalf("lost %d of %d acknowledged events (failures %d)", lost, len(acked), failures)
	}
}

func TestMalformedFrameAndJunkEntry(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	tr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	sub, err := tr.SubscribePattern(ctx, "junk.*")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	p1, err := tr.Publish(ctx, message("junk.a", 1))
	if err != nil {
		t.Fatal(err)
	}
	_, _, ch := tr.Keys("junk.a")
	for _, garbage := range []string{"hello", "v1 e 1 1\nbroken", "v1 e x 1\n", ""} {
		if err := admin.Publish(ctx, ch, garbage).Err(); err != nil {
			t.Fatal(err)
		}
	}
	logKey, _, _ := tr.Keys("junk.a")
	if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: logKey, Values: []string{"foo", "bar"}}).Err(); err != nil {
		t.Fatal(err)
	}
	p2, err := tr.Publish(ctx, message("junk.a", 2))
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, sub, 5*time.Second); ev.Kind != transport.Frame || ev.Delivery.Position != p1 {
		t.Fatalf("got %+v, want frame %v", ev, p1)
	}
	for i := 0; i < 4; i++ {
		ev := next(t, sub, 5*time.Second)
		if ev.Kind != transport.Malformed || ev.Topic != "junk.a" || ev.Err == nil {
			t.Fatalf("garbage %d: got %+v, want Malformed for junk.a", i, ev)
		}
		t.Logf("Malformed: %v", ev.Err)
	}
	if ev := next(t, sub, 5*time.Second); ev.Kind != transport.Frame || ev.Delivery.Position != p2 {
		t.Fatalf("got %+v, want frame %v after the garbage", ev, p2)
	}
	if got := tr.Stats().MalformedFrames; got != 4 {
		t.Errorf("MalformedFrames = %d, want 4", got)
	}

	// The junk log entry is skipped by Range without shortening the page.
	page, err := tr.Range(ctx, "junk.a", transport.Position{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].Position != p1 || page.Events[1].Position != p2 {
		t.Fatalf("Range: %+v, want %v and %v", page.Events, p1, p2)
	}
	page, err = tr.Range(ctx, "junk.a", p1, 10)
	if err != nil || len(page.Events) != 1 || page.Events[0].Position != p2 {
		t.Fatalf("Range after %v: %+v, %v; want %v", p1, page.Events, err, p2)
	}
	if tr.Stats().JunkEntries == 0 {
		t.Error("JunkEntries not counted")
	}
	// A publish after junk at the log's tail still numbers correctly.
	if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: logKey, Values: []string{"seq", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	p3, err := tr.Publish(ctx, message("junk.a", 3))
	if err != nil || p3.Seq != 3 || p3.Epoch != p1.Epoch {
		t.Fatalf("publish after junk: %v, %v", p3, err)
	}
}

func TestMetaLostStartsNewEpochWithoutReusingSeq(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	tr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	var old transport.Position
	for i := 1; i <= 3; i++ {
		p, err := tr.Publish(ctx, message("meta", i))
		if err != nil {
			t.Fatal(err)
		}
		old = p
	}
	_, metaKey, _ := tr.Keys("meta")
	if err := admin.Del(ctx, metaKey).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Head(ctx, "meta"); !errors.Is(err, transport.ErrUnknownTopic) {
		t.Fatalf("Head without meta: %v, want ErrUnknownTopic", err)
	}
	p, err := tr.Publish(ctx, message("meta", 4))
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch == old.Epoch || p.Seq != 4 {
		t.Fatalf("after losing meta: %v; want a new epoch and seq 4 (old %v)", p, old)
	}
	all := rangeAll(t, tr, "meta")
	if len(all) != 4 {
		t.Fatalf("Range: %d events, want 4", len(all))
	}
	for i, d := range all {
		if d.Position.Seq != uint64(i+1) || d.Position.Epoch != p.Epoch {
			t.Fatalf("event %d at %v", i, d.Position)
		}
	}
	t.Logf("meta deleted after seq %d of epoch %s: next publish got %v", old.Seq, old.Epoch, p)
}

func TestNewValidatesAllOptions(t *testing.T) {
	srv := redistest.Start(t)
	_, err := redistransport.New(srv.Client(t),
		redistransport.WithNamespace("a b"),
		redistransport.WithMaxLen(-1),
		redistransport.WithMaxSize(0),
		redistransport.WithBufferSize(0),
		redistransport.WithProbe(0, time.Second),
	)
	if !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("err = %v, want ErrInvalidOption", err)
	}
	for _, want := range []string{"namespace", "WithMaxLen", "WithMaxSize", "WithBufferSize", "WithProbe"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	tr, err := redistransport.New(srv.Client(t), redistransport.WithShardedPubSub(true))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.SubscribePattern(context.Background(), "x.*"); !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("SubscribePattern with sharded Pub/Sub: %v, want ErrInvalidOption", err)
	}
}

func TestLogKeepsTheEpochsThatWroteToIt(t *testing.T) {
	// A log records the epochs that wrote to it (its lineage): the first
	// epoch when it is made, each epoch made over it after its meta hash
	// is lost; a log made anew (evicted, meta hash kept) starts a record
	// of its own with the current epoch; batches, the single-event script
	// and the idempotency window all keep it.
	srv := redistest.Start(t)
	admin := srv.Client(t)
	for _, c := range []struct {
		name string
		opts []redistransport.Option
	}{
		{"plain", nil},
		{"idempotent", []redistransport.Option{redistransport.WithIdempotency(time.Minute)}},
		{"maxlen", []redistransport.Option{redistransport.WithMaxLen(100)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := newTransport(t, srv.Client(t), c.opts...)
			ctx := testCtx(t)
			topic := "lineage." + c.name
			logKey, metaKey, _ := tr.Keys(topic)
			epochs := func() ([]string, bool) {
				t.Helper()
				e, complete, err := tr.LogEpochs(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				return e, complete
			}
			if _, _, err := tr.LogEpochs(ctx, topic); !errors.Is(err, transport.ErrUnknownTopic) {
				t.Fatalf("LogEpochs before any publish: %v, want ErrUnknownTopic", err)
			}
			p1, err := tr.Publish(ctx, message(topic, 1))
			if err != nil {
				t.Fatal(err)
			}
			if e, ok := epochs(); !ok || !slices.Equal(e, []string{p1.Epoch}) {
				t.Fatalf("a new log records %v (complete %v), want [%s]", e, ok, p1.Epoch)
			}
			admin.Del(ctx, metaKey)
			ps, err := tr.PublishBatch(ctx, []transport.Message{message(topic, 2), message(topic, 3)})
			if err != nil {
				t.Fatal(err)
			}
			p2 := ps[0]
			if e, ok := epochs(); !ok || !slices.Equal(e, sorted(p1.Epoch, p2.Epoch)) || p2.Epoch == p1.Epoch {
				t.Fatalf("after a new epoch over the log: %v (complete %v), want %s and %s", e, ok, p1.Epoch, p2.Epoch)
			}
			admin.Del(ctx, logKey)
			if _, err := tr.Publish(ctx, message(topic, 4)); err != nil {
				t.Fatal(err)
			}
			if e, ok := epochs(); !ok || !slices.Equal(e, []string{p2.Epoch}) {
				t.Fatalf("a log made anew under the kept meta hash records %v (complete %v), want [%s]", e, ok, p2.Epoch)
			}
			if n := len(rangeAll(t, tr, topic)); n != 1 {
				t.Fatalf("Range of the new log: %d events, want 1 (its groups are no entries)", n)
			}
		})
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestLineageRecordIsBounded(t *testing.T) {
	// Past 1 024 epochs over one log, the record is dropped (followers then
	// treat the log as unknown) instead of growing without bound.
	srv := redistest.Start(t)
	admin := srv.Client(t)
	tr := newTransport(t, srv.Client(t))
	ctx := testCtx(t)
	logKey, metaKey, _ := tr.Keys("bounded")
	for i := range 1030 {
		if _, err := tr.Publish(ctx, message("bounded", i)); err != nil {
			t.Fatal(err)
		}
		admin.Del(ctx, metaKey)
	}
	groups, err := admin.XInfoGroups(ctx, logKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) > 1025 {
		t.Errorf("%d consumer groups on the log, want at most 1 025", len(groups))
	}
	if _, complete, err := tr.LogEpochs(ctx, "bounded"); err != nil || complete {
		t.Errorf("LogEpochs after 1 030 epochs: complete %v, %v; want an incomplete record", complete, err)
	}
}
