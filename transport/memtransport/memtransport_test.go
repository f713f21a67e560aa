package memtransport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
	"github.com/durabus/durabus/transport/transporttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transport.Transport {
		tr, err := memtransport.New(memtransport.WithMaxSize(64 << 10))
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}, transporttest.Features{
		MaxSize: 64 << 10,
		DeleteTopic: func(t *testing.T, tr transport.Transport, topic string) {
			tr.(*memtransport.Transport).DeleteTopic(topic)
		},
	})
}

func publishN(t *testing.T, tr *memtransport.Transport, topic string, n int) []transport.Position {
	t.Helper()
	out := make([]transport.Position, n)
	for i := range out {
		p, err := tr.Publish(context.Background(), transport.Message{Topic: topic, Data: []byte(fmt.Sprint(i + 1))})
		if err != nil {
			t.Fatalf("publish %d: %v", i+1, err)
		}
		out[i] = p
	}
	return out
}

func next(t *testing.T, sub transport.Subscription) transport.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("events closed: %v", sub.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	panic("unreachable")
}

func seqs(p transport.Page) []uint64 {
	var s []uint64
	for _, d := range p.Events {
		s = append(s, d.Position.Seq)
	}
	return s
}

func TestRetentionByCount(t *testing.T) {
	tr, _ := memtransport.New(memtransport.WithMaxLen(10))
	defer tr.Close()
	ctx := context.Background()
	publishN(t, tr, "r", 25)
	page, err := tr.Range(ctx, "r", transport.Position{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(page); len(got) != 10 || got[0] != 16 || got[9] != 25 {
		t.Fatalf("kept seqs %v, want 16..25", got)
	}
	head, _ := tr.Head(ctx, "r")
	if head.Seq != 25 {
		t.Fatalf("head seq %d, want 25", head.Seq)
	}
	// A reader whose position was trimmed starts at the oldest held entry.
	page, _ = tr.Range(ctx, "r", transport.Position{Epoch: head.Epoch, Seq: 3}, 100)
	if got := seqs(page); len(got) != 10 || got[0] != 16 {
		t.Fatalf("after trimmed position: seqs %v, want 16..25", got)
	}
}

func TestRetentionByAge(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tr, _ := memtransport.New(memtransport.WithMaxAge(time.Minute), memtransport.WithClock(clock))
	defer tr.Close()
	ctx := context.Background()

	publishN(t, tr, "a", 3) // seq 1..3 at t0
	advance(45 * time.Second)
	publishN(t, tr, "a", 2) // seq 4..5 at t0+45s
	advance(30 * time.Second)
	publishN(t, tr, "a", 1) // seq 6 at t0+75s: 1..3 are older than a minute
	page, _ := tr.Range(ctx, "a", transport.Position{}, 100)
	if got := seqs(page); fmt.Sprint(got) != "[4 5 6]" {
		t.Fatalf("kept %v, want [4 5 6]", got)
	}
	advance(-time.Hour) // the clock goes back: ids stay increasing, nothing is trimmed
	p := publishN(t, tr, "a", 1)[0]
	if prev := page.Events[2].Position.ID; !idAfter(p.ID, prev) {
		t.Fatalf("id %s not after %s", p.ID, page.Events[2].Position.ID)
	}
	page, _ = tr.Range(ctx, "a", transport.Position{}, 100)
	if got := seqs(page); fmt.Sprint(got) != "[4 5 6 7]" {
		t.Fatalf("kept %v, want [4 5 6 7]", got)
	}
}

// idAfter reports whether stream id a ("ms-n") sorts after b.
func idAfter(a, b string) bool {
	var am, an, bm, bn uint64
	fmt.Sscanf(a, "%d-%d", &am, &an)
	fmt.Sscanf(b, "%d-%d", &bm, &bn)
	return am > bm || am == bm && an > bn
}

func TestSlowSubscriberGetsExactDroppedRange(t *testing.T) {
	tr, _ := memtransport.New(memtransport.WithBuffer(4))
	defer tr.Close()
	sub, err := tr.Subscribe(context.Background(), "slow", "other")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pos := publishN(t, tr, "slow", 100)
	for want := uint64(1); want <= 4; want++ {
		if ev := next(t, sub); ev.Kind != transport.Frame || ev.Delivery.Position.Seq != want {
			t.Fatalf("event %d: %v seq %d, want frame %d", want, ev.Kind, ev.Delivery.Position.Seq, want)
		}
	}
	// Room again: the next frame is queued, behind the Dropped signal.
	publishN(t, tr, "slow", 1)
	ev := next(t, sub)
	if ev.Kind != transport.Dropped || ev.Topic != "slow" || ev.Epoch != pos[0].Epoch || ev.From != 5 || ev.To != 100 {
		t.Fatalf("got %+v, want Dropped slow 5..100", ev)
	}
	if ev := next(t, sub); ev.Kind != transport.Frame || ev.Delivery.Position.Seq != 101 {
		t.Fatalf("got %v seq %d, want frame 101", ev.Kind, ev.Delivery.Position.Seq)
	}
}

func TestDroppedRangesPerTopic(t *testing.T) {
	tr, _ := memtransport.New(memtransport.WithBuffer(2))
	defer tr.Close()
	sub, err := tr.Subscribe(context.Background(), "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publishN(t, tr, "a", 3) // a1 a2 queued, a3 dropped
	publishN(t, tr, "b", 2) // b1 b2 dropped
	publishN(t, tr, "a", 1) // a4 dropped, extends a's range
	var got []string
	for range 4 {
		ev := next(t, sub)
		switch ev.Kind {
		case transport.Frame:
			got = append(got, fmt.Sprintf("%s%d", ev.Delivery.Topic, ev.Delivery.Position.Seq))
		case transport.Dropped:
			got = append(got, fmt.Sprintf("drop %s%d-%d", ev.Topic, ev.From, ev.To))
		}
	}
	if want := "[a1 a2 drop a3-4 drop b1-2]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestDropFramesIsSilent(t *testing.T) {
	tr, _ := memtransport.New()
	defer tr.Close()
	sub, err := tr.Subscribe(context.Background(), "d")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	tr.DropFrames(func(topic string, seq uint64) bool { return seq%2 == 0 })
	publishN(t, tr, "d", 6)
	tr.DropFrames(nil)
	publishN(t, tr, "d", 1)
	var got []uint64
	for range 4 {
		ev := next(t, sub)
		if ev.Kind != transport.Frame {
			t.Fatalf("got %v, want only frames", ev.Kind)
		}
		got = append(got, ev.Delivery.Position.Seq)
	}
	if fmt.Sprint(got) != "[1 3 5 7]" {
		t.Fatalf("got %v, want [1 3 5 7]", got)
	}
	page, _ := tr.Range(context.Background(), "d", transport.Position{}, 10)
	if len(page.Events) != 7 {
		t.Fatalf("backlog holds %d, want 7", len(page.Events))
	}
}

func TestDisconnectReconnect(t *testing.T) {
	tr, _ := memtransport.New()
	defer tr.Close()
	sub, err := tr.Subscribe(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	publishN(t, tr, "x", 1)
	tr.Disconnect()
	publishN(t, tr, "x", 3)
	tr.Reconnect()
	publishN(t, tr, "x", 1)
	tr.Stall()
	publishN(t, tr, "x", 1)
	tr.Reconnect()
	var got []string
	for range 5 {
		ev := next(t, sub)
		if ev.Kind == transport.Frame {
			got = append(got, fmt.Sprint(ev.Delivery.Position.Seq))
		} else {
			got = append(got, ev.Kind.String())
		}
	}
	if want := "[1 reconnected 5 stalled reconnected]"; fmt.Sprint(got) != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

func TestConcurrentPublishSubscribeClose(t *testing.T) {
	tr, _ := memtransport.New(memtransport.WithBuffer(8))
	ctx, cancel := context.WithCancel(context.Background())
	var pubs, subs sync.WaitGroup
	published := make(chan struct{})
	for i := range 4 {
		pubs.Add(1)
		subs.Add(1)
		go func() {
			defer pubs.Done()
			for j := range 200 {
				_, _ = tr.Publish(ctx, transport.Message{Topic: fmt.Sprintf("c%d", (i+j)%3), Data: []byte("x")})
			}
		}()
		go func() {
			defer subs.Done()
			for range 20 {
				sub, err := tr.SubscribePattern(ctx, "c*")
				if err != nil {
					return
				}
				for range 5 {
					select {
					case <-sub.Events():
					case <-published:
					}
				}
				_ = sub.Close()
			}
		}()
	}
	// Subscriptions left to the transport's Close and to ctx.
	sub1, _ := tr.Subscribe(ctx, "c0")
	sub2, _ := tr.Subscribe(ctx, "c1")
	pubs.Wait()
	close(published)
	subs.Wait()
	cancel()
	for range sub1.Events() {
	}
	if !errors.Is(sub1.Err(), context.Canceled) {
		t.Fatalf("sub1.Err() = %v, want context.Canceled", sub1.Err())
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	for range sub2.Events() {
	}
	if _, err := tr.Head(context.Background(), "c0"); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Head after Close: %v, want ErrClosed", err)
	}
}

func ExampleNew() {
	ctx := context.Background()
	tr, _ := memtransport.New()
	defer tr.Close()

	sub, _ := tr.Subscribe(ctx, "orders")
	defer sub.Close()
	for _, body := range []string{`{"n":1}`, `{"n":2}`} {
		_, _ = tr.Publish(ctx, transport.Message{Topic: "orders", Time: time.Now(), Data: []byte(body)})
	}
	for range 2 {
		ev := <-sub.Events()
		fmt.Println(ev.Kind, ev.Delivery.Position.Seq, string(ev.Delivery.Data))
	}
	page, _ := tr.Range(ctx, "orders", transport.Position{}, 10)
	fmt.Println("backlog:", len(page.Events), "events")
	// Output:
	// frame 1 {"n":1}
	// frame 2 {"n":2}
	// backlog: 2 events
}

func TestNewRefusesInvalidOptions(t *testing.T) {
	tr, err := memtransport.New(memtransport.WithBuffer(0), memtransport.WithMaxAge(-time.Second), memtransport.WithClock(nil))
	if tr != nil || !errors.Is(err, transport.ErrInvalidOption) {
		t.Fatalf("New = %v, %v; want ErrInvalidOption", tr, err)
	}
	for _, want := range []string{"WithBuffer(0)", "WithMaxAge(-1s)", "WithClock(nil)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v does not name %s", err, want)
		}
	}
}
