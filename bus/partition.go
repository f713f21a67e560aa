package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// ErrPartitionCount is wrapped by the errors about a topic's partition
// count: a bus configured with another count than the one recorded in the
// back end (or with none, for a partitioned topic), and a change of the
// count that Repartition refuses because the topic holds events. The
// message says which and what to do; see docs/groups.md#repartitioning.
var ErrPartitionCount = errors.New("bus: partition count differs from the topic's")

// repartitionDoc is where the errors point to.
const repartitionDoc = "docs/groups.md#repartitioning"

// partitioning is what the bus agreed with the back end about one topic:
// its partition count (0: not partitioned), and the round-robin counter of
// its unkeyed events.
type partitioning struct {
	n    int
	next atomic.Uint32
}

// partitionsCache holds the agreed partitionings by topic, read on every
// publish. Agreement is asked of the back end once per topic and bus
// (errors are not kept, so that a transient one is asked again).
type partitionsCache struct {
	store transport.PartitionStore // nil when the transport records no counts
	m     sync.Map                 // topic -> *partitioning
}

var unpartitioned = &partitioning{}

func newPartitionsCache(tr transport.Transport) *partitionsCache {
	c := new(partitionsCache)
	if ps, ok := tr.(transport.PartitionStore); ok && transport.FeaturesOf(tr).Partitions {
		c.store = ps
	}
	return c
}

// partitions returns topic's partitioning as agreed with the back end. The
// first call per topic records the configured count (WithPartitions) when
// none is recorded, or checks that none is recorded for a topic without
// one; later calls take it from the cache. A count that differs from the
// recorded one is an error wrapping ErrPartitionCount.
func (b *Bus) partitions(ctx context.Context, topic string) (*partitioning, error) {
	if p, ok := b.parts.m.Load(topic); ok {
		return p.(*partitioning), nil
	}
	ps := b.parts.store
	if ps == nil {
		// New refused WithPartitions on such a transport: nothing is
		// partitioned, and nothing can be.
		return unpartitioned, nil
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	n := b.cfg.partitions[topic]
	var recorded int
	var err error
	if n > 0 {
		recorded, err = ps.SetPartitions(ctx, topic, 0, n)
		if errors.Is(err, transport.ErrTopicHasEvents) {
			return nil, fmt.Errorf("bus: topic %q holds events published without partitions, so it cannot be given %d (WithPartitions): its order would be split between it and its partitions; move to a partitioned topic as %s describes: %w: %w",
				topic, n, repartitionDoc, ErrPartitionCount, err)
		}
	} else {
		recorded, err = ps.Partitions(ctx, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: partition count of %q: %w", topic, err)
	}
	if recorded != n {
		return nil, b.mismatch(ctx, topic, recorded, n)
	}
	p := unpartitioned
	if n > 0 {
		p = &partitioning{n: n}
		p.next.Store(rand.Uint32()) // publishers do not all start at partition 0
	}
	q, _ := b.parts.m.LoadOrStore(topic, p)
	return q.(*partitioning), nil
}

// mismatch explains a configured count (want, 0 for none) that is not the
// recorded one.
func (b *Bus) mismatch(ctx context.Context, topic string, recorded, want int) error {
	if want == 0 {
		return fmt.Errorf("bus: topic %q has %d partitions (recorded in the back end) and this bus has no WithPartitions for it: give every bus that publishes or subscribes to it bus.WithPartitions(%q, %d): %w",
			topic, recorded, topic, recorded, ErrPartitionCount)
	}
	full, err := b.partitionWithEvents(ctx, topic, max(recorded, want))
	switch {
	case err != nil:
		return fmt.Errorf("bus: topic %q has %d partitions (recorded in the back end), this bus is configured with %d (WithPartitions) (%v): %w", topic, recorded, want, err, ErrPartitionCount)
	case full != "":
		return fmt.Errorf("bus: topic %q has %d partitions (recorded in the back end), this bus is configured with %d (WithPartitions); its partition %q holds events, so the count cannot change: keys would move to other partitions and lose their order; configure %d, or migrate as %s describes: %w",
			topic, recorded, want, full, recorded, repartitionDoc, ErrPartitionCount)
	}
	return fmt.Errorf("bus: topic %q has %d partitions (recorded in the back end), this bus is configured with %d (WithPartitions); no partition holds events yet: configure %d, or change the count with Bus.Repartition (%s): %w",
		topic, recorded, want, recorded, repartitionDoc, ErrPartitionCount)
}

// partitionWithEvents returns the first of topic's partitions 0..n-1 that
// holds events ("" when none does).
func (b *Bus) partitionWithEvents(ctx context.Context, topic string, n int) (string, error) {
	for i := range n {
		pt := transport.PartitionTopic(topic, i)
		_, err := b.tr.Head(ctx, pt)
		switch {
		case err == nil:
			return pt, nil
		case !errors.Is(err, transport.ErrUnknownTopic):
			return "", err
		}
	}
	return "", nil
}

// Repartition records n as topic's partition count in the back end. It is
// refused, with an error wrapping ErrPartitionCount, when topic or any of
// its partitions holds events: events of one key would move to another
// partition and lose their order, so changing the count of a topic with
// data is the migration docs/groups.md describes. Stop the publishers of
// topic first: a running bus keeps the count it agreed on. The buses
// then need WithPartitions(topic, n).
func (b *Bus) Repartition(ctx context.Context, topic string, n int) error {
	if err := transport.ValidatePartitions(topic, n); err != nil {
		return fmt.Errorf("bus: repartition: %w", err)
	}
	ps := b.parts.store
	if ps == nil {
		return fmt.Errorf("bus: repartition %q: the transport %T records no partition counts (transport.PartitionStore): %w", topic, b.tr, errors.ErrUnsupported)
	}
	cur, err := ps.Partitions(ctx, topic)
	if err != nil {
		return fmt.Errorf("bus: repartition %q: %w", topic, err)
	}
	if cur == n {
		return nil
	}
	full, err := b.partitionWithEvents(ctx, topic, max(cur, n))
	if err != nil {
		return fmt.Errorf("bus: repartition %q: %w", topic, err)
	}
	if full != "" {
		return fmt.Errorf("bus: repartition %q from %d to %d partitions refused: partition %q holds events, and events of one key would move to another partition and lose their order; migrate as %s describes: %w",
			topic, cur, n, full, repartitionDoc, ErrPartitionCount)
	}
	got, err := ps.SetPartitions(ctx, topic, cur, n)
	if errors.Is(err, transport.ErrTopicHasEvents) {
		return fmt.Errorf("bus: repartition %q to %d partitions refused: the topic holds events published without partitions, whose order would be split from its partitions'; migrate as %s describes: %w: %w",
			topic, n, repartitionDoc, ErrPartitionCount, err)
	}
	if err != nil {
		return fmt.Errorf("bus: repartition %q: %w", topic, err)
	}
	if got != n {
		return fmt.Errorf("bus: repartition %q from %d to %d: changed meanwhile to %d by another process: %w", topic, cur, n, got, ErrPartitionCount)
	}
	b.parts.m.Delete(topic)
	return nil
}

// route returns the topic an event published to topic goes to: topic
// itself, or, when it is partitioned, the partition of the event's key
// (its ExtPartitionKey extension), or the next one round robin for an
// unkeyed event.
func (b *Bus) route(ctx context.Context, topic string, e *envelope.Envelope) (string, error) {
	p, err := b.partitions(ctx, topic)
	if err != nil || p.n == 0 {
		return topic, err
	}
	if key, ok := e.Extensions[ExtPartitionKey]; ok && key != "" {
		return transport.PartitionTopic(topic, transport.PartitionOf(key, p.n)), nil
	}
	return transport.PartitionTopic(topic, int(p.next.Add(1)%uint32(p.n))), nil
}

// followed returns the topics a subscription on key follows: key, or its
// partitions when WithPartitions configures some.
func (b *Bus) followed(key string) []string {
	if n := b.cfg.partitions[key]; n > 0 {
		return transport.PartitionTopics(key, n)
	}
	return []string{key}
}

// agreeBackoff bounds the retries of a subscription's partition check
// while the back end cannot be reached.
const (
	agreeFirst = 100 * time.Millisecond
	agreeMax   = 5 * time.Second
)

// agree checks, before a subscription on topic follows anything, that the
// bus and the back end agree on topic's partition count. It retries
// transient errors (reported through WithOnError) until ctx ends, and
// returns at once an error wrapping ErrPartitionCount.
func (b *Bus) agree(ctx context.Context, topic string) error {
	wait := agreeFirst
	for {
		_, err := b.partitions(ctx, topic)
		if err == nil || errors.Is(err, ErrPartitionCount) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Warn("durabus: bus: partition check", "topic", topic, "err", err)
		b.followerError(err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, agreeMax)
	}
}
