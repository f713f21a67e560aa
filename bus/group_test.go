package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// owned returns the topics the group member sub owns now.
func owned(sub *bus.Subscription) []string {
	if g := sub.Status().Group; g != nil {
		return g.Owned
	}
	return nil
}

func groupBus(t *testing.T, tr transport.Transport, n int, got *keyedLog, handled *int64Map, name string) (*bus.Bus, *bus.Subscription) {
	t.Helper()
	b, err := bus.New(tr, bus.WithPartitions("shipment", n), bus.WithGroup("billing"), fast,
		bus.WithFollowerOptions(replay.WithLease(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscribe(b, func(ctx context.Context, e *Shipment) error {
		m, _ := bus.MessageFrom(ctx)
		e.Order = keyOf(m)
		handled.add(name)
		return got.handle(ctx, e)
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		t.Fatal(err)
	}
	return b, sub
}

func TestGroupMembersSharePartitionsInOrderPerKey(t *testing.T) {
	const n, perKey = 8, 20
	mem := newMem(t)
	pub, _ := bus.New(mem, bus.WithPartitions("shipment", n))
	got, handled := newKeyedLog(), newInt64Map()
	a, subA := groupBus(t, mem, n, got, handled, "a")
	b, subB := groupBus(t, mem, n, got, handled, "b")
	stopA := startStoppable(t, a)
	start(t, b)
	waitFor(t, "a and b own 4 partitions each", func() bool { return len(owned(subA)) == 4 && len(owned(subB)) == 4 })
	ks := keys(24)
	publishKeyed(t, pub, ks, perKey)
	waitFor(t, "every event handled", func() bool { return got.count() >= len(ks)*perKey })
	if handled.get("a") == 0 || handled.get("b") == 0 {
		t.Errorf("handled by a %d, by b %d: want both to share the work", handled.get("a"), handled.get("b"))
	}
	if g := subA.Status().Group; g == nil || len(g.Members) != 2 {
		t.Errorf("a's group status %+v, want 2 members", g)
	}

	stopA() // hands its partitions over at once
	waitFor(t, "b owns all 8", func() bool { return len(owned(subB)) == n })
	ctx := context.Background()
	for i := perKey; i < 2*perKey; i++ {
		for _, k := range ks {
			if _, err := pub.Publish(ctx, Shipment{Order: k, N: i}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every event handled", func() bool { return got.count() >= 2*len(ks)*perKey })
	got.check(t, "shipment", n, ks, 2*perKey) // once each, in order per key: a flushed its checkpoints before it left
}

func TestGroupNeedsATransportThatKeepsMembership(t *testing.T) {
	if _, err := bus.New(newMem(t), bus.WithGroup("g"), bus.WithConsumer("c")); err == nil {
		t.Error("WithGroup with WithConsumer was accepted")
	}
	if _, err := bus.New(newMem(t), bus.WithGroup("")); err == nil {
		t.Error("an empty group name was accepted")
	}
}

// int64Map counts by name, safely.
type int64Map struct {
	mu sync.Mutex
	m  map[string]int64
}

func newInt64Map() *int64Map { return &int64Map{m: map[string]int64{}} }

func (c *int64Map) add(k string) {
	c.mu.Lock()
	c.m[k]++
	c.mu.Unlock()
}

func (c *int64Map) get(k string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func TestGroupUnderAPatternTakesNewTopicsAsTheyAppear(t *testing.T) {
	mem := newMem(t)
	pub, _ := bus.New(mem)
	handled := newInt64Map()
	var subs []*bus.Subscription
	for _, name := range []string{"a", "b"} {
		b, err := bus.New(mem, bus.WithGroup("audit"), fast)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := b.Handle("audit.*", bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
			handled.add(m.Topic)
			handled.add(name)
			return nil
		}), bus.StartAt(bus.Beginning()))
		if err != nil {
			t.Fatal(err)
		}
		start(t, b)
		subs = append(subs, sub)
	}
	ctx := context.Background()
	topics := []string{"audit.a", "audit.b", "audit.c", "audit.d"}
	for _, tp := range topics {
		if _, err := pub.Publish(ctx, Ping{N: 1}, bus.ToTopic(tp)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the 4 new topics owned, 2 each", func() bool { return len(owned(subs[0])) == 2 && len(owned(subs[1])) == 2 })
	waitFor(t, "one event per topic", func() bool {
		for _, tp := range topics {
			if handled.get(tp) != 1 {
				return false
			}
		}
		return true
	})
	if handled.get("a") == 0 || handled.get("b") == 0 {
		t.Errorf("a handled %d, b %d: want both", handled.get("a"), handled.get("b"))
	}
}
