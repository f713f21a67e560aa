package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
)

// seenLog records, per key, the Ns handled, duplicates included.
type seenLog struct {
	mu sync.Mutex
	ns map[string][]int
	n  int
}

func (l *seenLog) add(k string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ns == nil {
		l.ns = map[string][]int{}
	}
	l.ns[k] = append(l.ns[k], n)
	l.n++
}

// distinct counts the distinct events handled.
func (l *seenLog) distinct() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := 0
	for _, ns := range l.ns {
		seen := map[int]bool{}
		for _, n := range ns {
			seen[n] = true
		}
		c += len(seen)
	}
	return c
}

func TestRedisGroupMemberThatDiesIsReplacedWhenItsLeaseLapses(t *testing.T) {
	// Three members share 16 partitions. One dies without a word (its
	// connection closes: no release, no leave): the others take its
	// partitions once its leases lapse, from its last checkpoints, so every
	// event is handled; what it handled after its last checkpoint may be
	// handled again, never out of order except for such a redelivery.
	const n, perKey = 16, 30
	srv := redistest.Start(t)
	pub, _ := bus.New(redisTransport(t, srv.Client(t)), bus.WithPartitions("shipment", n))
	var got seenLog
	type member struct {
		b    *bus.Bus
		sub  *bus.Subscription
		done chan error
	}
	members := make([]member, 3)
	trs := make([]interface{ Close() error }, 3)
	for i := range members {
		tr := redisTransport(t, srv.Client(t))
		trs[i] = tr
		b, err := bus.New(tr, bus.WithPartitions("shipment", n), bus.WithGroup("ship"), fast,
			bus.WithFollowerOptions(replay.WithLease(time.Second)), bus.WithOnError(func(error) {}))
		if err != nil {
			t.Fatal(err)
		}
		sub, err := bus.Subscribe(b, func(ctx context.Context, e *Shipment) error {
			m, _ := bus.MessageFrom(ctx)
			got.add(keyOf(m), e.N)
			return nil
		}, bus.StartAt(bus.Beginning()))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- b.Run(context.Background()) }()
		members[i] = member{b, sub, done}
		t.Cleanup(func() { b.Close(); <-done })
	}
	waitFor(t, "the 16 partitions shared 6/5/5", func() bool {
		total, hi, lo := 0, 0, n
		for _, m := range members {
			k := len(owned(m.sub))
			total, hi, lo = total+k, max(hi, k), min(lo, k)
		}
		return total == n && hi-lo <= 1
	})
	ks := keys(40)
	publishKeyed(t, pub, ks, perKey/2)
	waitFor(t, "the first half", func() bool { return got.distinct() == len(ks)*perKey/2 })

	dead := owned(members[0].sub)
	killed := time.Now()
	trs[0].Close() // dies: no release, no leave
	waitFor(t, "the dead member's partitions taken over", func() bool {
		have := map[string]bool{}
		for _, m := range members[1:] {
			for _, p := range owned(m.sub) {
				have[p] = true
			}
		}
		for _, p := range dead {
			if !have[p] {
				return false
			}
		}
		return true
	})
	t.Logf("%d partitions taken over %v after the member died (lease 1 s)", len(dead), time.Since(killed).Round(10*time.Millisecond))
	ctx := context.Background()
	for i := perKey / 2; i < perKey; i++ {
		for _, k := range ks {
			if _, err := pub.Publish(ctx, Shipment{Order: k, N: i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every event handled", func() bool { return got.distinct() == len(ks)*perKey })
	got.mu.Lock()
	defer got.mu.Unlock()
	dups := 0
	for _, k := range ks {
		ns := got.ns[k]
		hi := -1
		for _, v := range ns {
			switch {
			case v > hi+1 && hi >= 0:
				t.Errorf("key %s: %d after %d: skipped (%v)", k, v, hi, ns)
			case v <= hi:
				dups++ // a redelivery after the takeover: the dead member's unsaved tail
			}
			hi = max(hi, v)
		}
	}
	t.Logf("%d events handled again after the takeover (the dead member's tail after its last checkpoint)", dups)
}

func TestRedisClusterGroupSharesPartitionsAcrossMasters(t *testing.T) {
	// On the 3-master cluster: membership, leases, checkpoints and the
	// partitions' logs each sit in their own slot; two members share the
	// 16 partitions and handle every event once, in order per key.
	const n, perKey = 16, 10
	cl := redistest.StartCluster(t, 3)
	pub, _ := bus.New(redisTransport(t, cl.Client(t)), bus.WithPartitions("shipment", n))
	got := newKeyedLog()
	var subs []*bus.Subscription
	for range 2 {
		b, err := bus.New(redisTransport(t, cl.Client(t)), bus.WithPartitions("shipment", n), bus.WithGroup("ship"), fast)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := bus.Subscribe(b, func(ctx context.Context, e *Shipment) error {
			m, _ := bus.MessageFrom(ctx)
			e.Order = keyOf(m)
			return got.handle(ctx, e)
		}, bus.StartAt(bus.Beginning()))
		if err != nil {
			t.Fatal(err)
		}
		start(t, b)
		subs = append(subs, sub)
	}
	waitFor(t, "8 partitions each", func() bool { return len(owned(subs[0])) == 8 && len(owned(subs[1])) == 8 })
	ks := keys(30)
	publishKeyed(t, pub, ks, perKey)
	waitFor(t, "every event", func() bool { return got.count() >= len(ks)*perKey })
	got.check(t, "shipment", n, ks, perKey)
}
