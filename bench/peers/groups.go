package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// The consumer-group cases (issue 14): a backlog of keyed events over
// groupParts partitions drained through a group of 1 and of 2 members,
// against the plain durable consumer on one topic holding the same events,
// watermill-redisstream's consumer group and a JetStream durable pull
// consumer; takeover and handover times; the group's Redis CPU.
const (
	groupParts = 16
	groupKeys  = 200
	// wmGroupN is the backlog of the watermill group cases (it reads about
	// 10 k/s: e.n would take ten seconds a case).
	wmGroupN = 10_000
	// groupLease is the lease (and member ttl) of the takeover cases.
	groupLease = time.Second
)

var quiet = slog.New(slog.DiscardHandler)

// keyedMessages encodes a pool of 1 000 envelopes like e.msgs, the i-th
// with partition key "k<i mod groupKeys>", and returns them with their
// partitions among groupParts.
func keyedMessages() ([]transport.Message, []int, error) {
	msgs := make([]transport.Message, 0, 1000)
	parts := make([]int, 0, 1000)
	for i := range 1000 {
		key := "k" + strconv.Itoa(i%groupKeys)
		pad := 256 - len(`{"n":,"t":0,"s":""}`) - len(strconv.Itoa(i))
		ev := benchkit.Event{N: int64(i), S: payload(pad)}
		en, err := envelope.New(ev.EventType(), ev, envelope.WithSource("bench"), envelope.WithExtension(bus.ExtPartitionKey, key))
		if err != nil {
			return nil, nil, err
		}
		data, err := en.Encode()
		if err != nil {
			return nil, nil, err
		}
		msgs = append(msgs, transport.Message{ID: en.ID, Time: en.Time, Data: data})
		parts = append(parts, transport.PartitionOf(key, groupParts))
	}
	return msgs, parts, nil
}

// fillPartitioned records topic's groupParts partitions and publishes n
// events of msgs to them, each to its key's partition, PublishBatch of up
// to 1 000 per partition.
func fillPartitioned(ctx context.Context, tr *redistransport.Transport, msgs []transport.Message, parts []int, topic string, n int) error {
	if _, err := tr.SetPartitions(ctx, topic, 0, groupParts); err != nil {
		return err
	}
	names := transport.PartitionTopics(topic, groupParts)
	batches := make([][]transport.Message, groupParts)
	flush := func(p int) error {
		if len(batches[p]) == 0 {
			return nil
		}
		_, err := tr.PublishBatch(ctx, batches[p])
		batches[p] = batches[p][:0]
		return err
	}
	for i := range n {
		p := parts[i%len(msgs)]
		msg := msgs[i%len(msgs)]
		msg.Topic = names[p]
		batches[p] = append(batches[p], msg)
		if len(batches[p]) == 1000 {
			if err := flush(p); err != nil {
				return err
			}
		}
	}
	for p := range batches {
		if err := flush(p); err != nil {
			return err
		}
	}
	return nil
}

// member is one bus of a group case, on a go-redis client and transport of
// its own (a connection pool and Pub/Sub connection of its own).
type member struct {
	rdb  *redis.Client
	tr   *redistransport.Transport
	b    *bus.Bus
	stop func() // ends Run, closes the bus; then the transport and client
}

// newMember starts a bus with opts, subscribed to nothing; close releases
// it.
func (e *env) newMember(opts ...bus.Option) (*member, error) {
	m := &member{rdb: e.client()}
	var err error
	if m.tr, err = redistransport.New(m.rdb); err != nil {
		_ = m.rdb.Close()
		return nil, err
	}
	opts = append([]bus.Option{bus.WithSource("bench"), bus.WithLogger(quiet), bus.WithOnError(func(error) {})}, opts...)
	if m.b, err = bus.New(m.tr, opts...); err != nil {
		m.release()
		return nil, err
	}
	stop, err := benchkit.Start(e.ctx, m.b)
	if err != nil {
		m.release()
		return nil, err
	}
	m.stop = stop
	return m, nil
}

func (m *member) release() { _ = m.tr.Close(); _ = m.rdb.Close() }

// close stops the member (a handover for a group member) and releases it.
func (m *member) close() {
	if m.stop != nil {
		m.stop()
	}
	m.release()
}

func ownedBy(sub *bus.Subscription) []string {
	if g := sub.Status().Group; g != nil {
		return g.Owned
	}
	return nil
}

func waitUntil(what string, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// groupCases: the backlog drained by the plain durable consumer, by a
// group of 1 and of 2 members, by watermill's and JetStream's groups.
func (e *env) groupCases(m metrics) error {
	topic, plain, err := e.groupFill()
	if err != nil {
		return err
	}
	if err := e.withScripts(m, "grp.plain", func() (float64, error) { return e.drain(plain, "", 1) }); err != nil {
		return err
	}
	for _, k := range []int{1, 2} {
		name := "grp.g" + strconv.Itoa(k)
		if err := e.withScripts(m, name, func() (float64, error) { return e.drain(topic, fmt.Sprintf("g%d", k), k) }); err != nil {
			return err
		}
	}
	if err := e.wmGroup(m); err != nil {
		return err
	}
	if e.js != nil {
		return e.jsGroup(m)
	}
	return nil
}

// scriptCommands are the commands of checkpoint writes, lease claims and
// renewals and group heartbeats (scripts; the heartbeat's index is a
// ZADD): a drain itself reads with XRANGE.
var scriptCommands = []string{"evalsha", "evalsha_ro", "eval", "zadd"}

// withScripts runs f with withCPU and adds, per event, the Redis time
// (INFO commandstats usec, µs) and the calls per 1 000 events of
// scriptCommands, as name+".scripts" and name+".scriptcalls".
func (e *env) withScripts(m metrics, name string, f func() (float64, error)) error {
	s0 := redisCommandStats(e.ctx, e.admin)
	if err := e.withCPU(m, name, f); err != nil {
		return err
	}
	s1 := redisCommandStats(e.ctx, e.admin)
	var calls, usec float64
	for _, c := range scriptCommands {
		calls += s1[c][0] - s0[c][0]
		usec += s1[c][1] - s0[c][1]
	}
	m[name+".scripts"] = usec / float64(e.n)
	m[name+".scriptcalls"] = calls / float64(e.n) * 1000
	return nil
}

// groupFill flushes Redis and fills the backlogs of the group cases: e.n
// keyed events over the partitions of topic, and the same events on the
// plain topic.
func (e *env) groupFill() (topic, plain string, err error) {
	e.flush()
	msgs, parts, err := keyedMessages()
	if err != nil {
		return "", "", err
	}
	topic, plain = e.topic("grp"), e.topic("grpplain")
	tr := e.transport()
	defer tr.Close()
	if err := fillPartitioned(e.ctx, tr, msgs, parts, topic, e.n); err != nil {
		return "", "", fmt.Errorf("fill: %w", err)
	}
	if err := benchkit.Fill(e.ctx, tr, msgs, plain, e.n); err != nil {
		return "", "", fmt.Errorf("fill: %w", err)
	}
	return topic, plain, nil
}

// drain starts members buses (a group of them named group, or one plain
// durable consumer when group is ""), then times a subscription from the
// beginning of topic's backlog (e.n events) until every event has been
// handled. The members join first, on a warm-up topic, and the group's
// membership is recorded before they subscribe, so that each takes its
// share at once instead of the first taking all partitions and handing
// half over a tick later.
func (e *env) drain(topic, group string, members int) (float64, error) {
	warm := topic + ".warm"
	var opts []bus.Option
	if group == "" {
		opts = append(opts, bus.WithConsumer("plain"))
	} else {
		opts = append(opts, bus.WithGroup(group), bus.WithPartitions(topic, groupParts), bus.WithPartitions(warm, 2))
	}
	var ms []*member
	defer func() {
		for _, mb := range ms {
			mb.close()
		}
	}()
	var warmSubs []*bus.Subscription
	for range members {
		mb, err := e.newMember(opts...)
		if err != nil {
			return 0, err
		}
		ms = append(ms, mb)
		sub, err := bus.Subscribe(mb.b, func(context.Context, *benchkit.Event) error { return nil }, bus.OnTopic(warm))
		if err != nil {
			return 0, err
		}
		warmSubs = append(warmSubs, sub)
	}
	if group != "" {
		// The members' ids (their lease holders), from the warm-up group.
		var ids []string
		if err := waitUntil("warm-up group of "+strconv.Itoa(members), 20*time.Second, func() bool {
			g := warmSubs[0].Status().Group
			if g == nil || len(g.Members) != members {
				return false
			}
			ids = g.Members
			return true
		}); err != nil {
			return 0, err
		}
		store := ms[0].tr
		for _, id := range ids {
			if _, err := store.Heartbeat(e.ctx, group+"/"+topic, transport.GroupMember{ID: id, Started: time.Now()}, replay.DefaultGroupLease); err != nil {
				return 0, err
			}
		}
	}
	for _, s := range warmSubs {
		s.Stop()
	}
	var got atomic.Int64
	var clk drainClock
	per := make([]atomic.Int64, members)
	for i, mb := range ms {
		if _, err := bus.Subscribe(mb.b, func(_ context.Context, _ *benchkit.Event) error {
			clk.tick()
			got.Add(1)
			per[i].Add(1)
			return nil
		}, bus.OnTopic(topic), bus.StartAt(bus.Beginning())); err != nil {
			return 0, err
		}
	}
	if err := benchkit.WaitCount(e.ctx, &got, int64(e.n)); err != nil {
		return 0, err
	}
	rate := clk.rate(int64(e.n))
	for i := range per {
		if per[i].Load() == 0 {
			return 0, fmt.Errorf("group %s: member %d of %d handled nothing", group, i+1, members)
		}
	}
	return rate, nil
}

// wmGroup: watermill-redisstream, one consumer group of 1 and of 2
// subscribers (each its own client), ack per message, on one stream of
// wmGroupN messages.
func (e *env) wmGroup(m metrics) error {
	topic := e.topic("wmgrp")
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: e.client()}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	for range wmGroupN {
		if err := pub.Publish(topic, message.NewMessage(watermill.NewUUID(), e.raw)); err != nil {
			return err
		}
	}
	_ = pub.Close()
	for _, k := range []int{1, 2} {
		rate, err := e.wmDrain(topic, "wm"+strconv.Itoa(k), k)
		if err != nil {
			return fmt.Errorf("watermill group of %d: %w", k, err)
		}
		m["grp.wm"+strconv.Itoa(k)] = rate
	}
	return nil
}

func (e *env) wmDrain(topic, group string, subs int) (float64, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 60*time.Second)
	defer cancel()
	var got atomic.Int64
	var wg sync.WaitGroup
	var closers []func()
	var clk drainClock
	for i := range subs {
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{Client: e.client(), ConsumerGroup: group, Consumer: fmt.Sprintf("c%d", i)}, watermill.NopLogger{})
		if err != nil {
			return 0, err
		}
		closers = append(closers, func() { _ = sub.Close() })
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case msg, ok := <-ch:
					if !ok {
						return
					}
					clk.tick()
					msg.Ack()
					got.Add(1)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	err := benchkit.WaitCount(ctx, &got, wmGroupN)
	rate := clk.rate(wmGroupN)
	cancel()
	for _, c := range closers {
		c()
	}
	wg.Wait()
	return rate, err
}

// jsGroup: a JetStream durable pull consumer, explicit ack of each
// message, read by 1 and by 2 clients (each its own connection), on e.n
// messages.
func (e *env) jsGroup(m metrics) error {
	subj := fmt.Sprintf("bench.r%d.grp", e.round)
	// In windows of 4 000, under the 4 096 pending that PublishAsync allows:
	// a loaded machine stalls it past its wait otherwise.
	for i := 0; i < e.n; i += 4000 {
		for j := i; j < min(i+4000, e.n); j++ {
			if err := e.publishAsync(subj); err != nil {
				return fmt.Errorf("jetstream group fill: %w", err)
			}
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(60 * time.Second):
			return errors.New("jetstream group fill: not complete after 60s")
		}
	}
	for _, k := range []int{1, 2} {
		rate, err := e.jsDrain(subj, fmt.Sprintf("grp%d_r%d", k, e.round), k)
		if err != nil {
			return fmt.Errorf("jetstream durable consumer, %d clients: %w", k, err)
		}
		m["grp.js"+strconv.Itoa(k)] = rate
	}
	return e.purgeJS()
}

func (e *env) jsDrain(subj, durable string, clients int) (float64, error) {
	if _, err := e.js.CreateOrUpdateConsumer(e.ctx, "BENCH", jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubject: subj,
	}); err != nil {
		return 0, err
	}
	defer func() { _ = e.js.DeleteConsumer(e.ctx, "BENCH", durable) }()
	var got atomic.Int64
	var wg sync.WaitGroup
	var its []jetstream.MessagesContext
	var conns []*nats.Conn
	defer func() {
		for _, it := range its {
			it.Stop()
		}
		wg.Wait()
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var clk drainClock
	for range clients {
		nc, err := nats.Connect(e.nc.ConnectedUrl())
		if err != nil {
			return 0, err
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return 0, err
		}
		cons, err := js.Consumer(e.ctx, "BENCH", durable)
		if err != nil {
			return 0, err
		}
		it, err := cons.Messages()
		if err != nil {
			return 0, err
		}
		its = append(its, it)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := it.Next()
				if err != nil {
					return
				}
				clk.tick()
				_ = msg.Ack()
				got.Add(1)
			}
		}()
	}
	if err := benchkit.WaitCount(e.ctx, &got, int64(e.n)); err != nil {
		return 0, err
	}
	return clk.rate(int64(e.n)), nil
}

// drainClock times a drain from its first event handled to its last, so
// that the set-up (connections, subscriptions, a group member's join, which
// waits two 200 ms ticks for the others) is left out for every system
// alike.
type drainClock struct{ first atomic.Int64 }

func (c *drainClock) tick() { c.first.CompareAndSwap(0, time.Now().UnixNano()) }

// rate is the events after the first per second since it.
func (c *drainClock) rate(n int64) float64 {
	return float64(n-1) / time.Since(time.Unix(0, c.first.Load())).Seconds()
}

// takeover measures, cycles times each, how long after a member of a
// group of two on groupParts partitions is killed (its transport closed:
// no release, no leave) or closed (Bus.Close: a handover) the other has
// handled an event on each of the partitions it owned; the events are
// published after the kill or once Close has returned, one a partition.
// Lease groupLease.
func (e *env) takeover(cycles int) (killed, closed []time.Duration, err error) {
	e.flush()
	topic := e.topic("take")
	opts := []bus.Option{bus.WithGroup("take"), bus.WithPartitions(topic, groupParts),
		bus.WithFollowerOptions(replay.WithLease(groupLease))}
	pub, err := e.newMember(bus.WithPartitions(topic, groupParts))
	if err != nil {
		return nil, nil, err
	}
	defer pub.close()
	// A key for each partition.
	keyOf := make([]string, groupParts)
	for i, found := 0, 0; found < groupParts; i++ {
		k := "probe" + strconv.Itoa(i)
		if p := transport.PartitionOf(k, groupParts); keyOf[p] == "" {
			keyOf[p] = k
			found++
		}
	}
	index := map[string]int{}
	for i, t := range transport.PartitionTopics(topic, groupParts) {
		index[t] = i
	}

	var probe atomic.Int64 // the T of the current probe events
	var mu sync.Mutex
	seen := map[int64]bool{} // partitions whose probe the survivor handled
	survivor, err := e.newMember(opts...)
	if err != nil {
		return nil, nil, err
	}
	defer survivor.close()
	subB, err := bus.Subscribe(survivor.b, func(_ context.Context, ev *benchkit.Event) error {
		if ev.T == probe.Load() {
			mu.Lock()
			seen[ev.N] = true
			mu.Unlock()
		}
		return nil
	}, bus.OnTopic(topic), bus.StartAt(bus.Beginning()))
	if err != nil {
		return nil, nil, err
	}
	if err := waitUntil("survivor owns all partitions", 20*time.Second, func() bool { return len(ownedBy(subB)) == groupParts }); err != nil {
		return nil, nil, err
	}
	for c := range 2 * cycles {
		kill := c%2 == 0
		a, err := e.newMember(opts...)
		if err != nil {
			return nil, nil, err
		}
		subA, err := bus.Subscribe(a.b, func(context.Context, *benchkit.Event) error { return nil }, bus.OnTopic(topic), bus.StartAt(bus.Beginning()))
		if err == nil {
			err = waitUntil("8 partitions each", 20*time.Second, func() bool {
				return len(ownedBy(subA)) == groupParts/2 && len(ownedBy(subB)) == groupParts/2
			})
		}
		if err != nil {
			a.close()
			return nil, nil, err
		}
		var dead []int64
		for _, t := range ownedBy(subA) {
			dead = append(dead, int64(index[t]))
		}
		stamp := time.Now().UnixNano()
		probe.Store(stamp)
		mu.Lock()
		clear(seen)
		mu.Unlock()
		t0 := time.Now()
		if kill {
			_ = a.tr.Close() // dies: no release, no leave
		} else {
			a.stop() // Bus.Close: hands its partitions over
			a.stop = nil
		}
		for _, p := range dead {
			if _, err := pub.b.Publish(e.ctx, benchkit.Event{N: p, T: stamp, S: "probe"}, bus.ToTopic(topic), bus.WithKey(keyOf[p])); err != nil {
				a.close()
				return nil, nil, err
			}
		}
		err = waitUntil("the survivor handles a probe on each of the member's partitions", 30*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range dead {
				if !seen[p] {
					return false
				}
			}
			return true
		})
		d := time.Since(t0)
		a.close()
		if err != nil {
			return nil, nil, err
		}
		if kill {
			killed = append(killed, d)
		} else {
			closed = append(closed, d)
		}
	}
	return killed, closed, nil
}

// groupIdle returns the Redis CPU a second (µs) of a group of 2 members on
// groupParts idle partitions (heartbeats, lease renewals) and of one plain
// durable consumer on an idle topic, over d each.
func (e *env) groupIdle(m metrics, d time.Duration) error {
	e.flush()
	topic := e.topic("idle")
	for _, c := range []struct {
		name    string
		members int
		opts    []bus.Option
	}{
		{"grp.idle.plain", 1, []bus.Option{bus.WithConsumer("plain")}},
		{"grp.idle.g2", 2, []bus.Option{bus.WithGroup("idle"), bus.WithPartitions(topic, groupParts)}},
	} {
		var ms []*member
		release := func() {
			for _, mb := range ms {
				mb.close()
			}
		}
		for range c.members {
			mb, err := e.newMember(c.opts...)
			if err != nil {
				release()
				return err
			}
			ms = append(ms, mb)
			sub, err := bus.Subscribe(mb.b, func(context.Context, *benchkit.Event) error { return nil }, bus.OnTopic(topic))
			if err != nil {
				release()
				return err
			}
			if c.members > 1 {
				if err := waitUntil("idle group", 20*time.Second, func() bool {
					g := sub.Status().Group
					return g != nil && len(g.Members) == len(ms)
				}); err != nil {
					release()
					return err
				}
			}
		}
		time.Sleep(time.Second) // the share settled
		c0 := redisCPU(e.ctx, e.admin)
		t0 := time.Now()
		time.Sleep(d)
		m[c.name] = (redisCPU(e.ctx, e.admin) - c0) / time.Since(t0).Seconds() * 1e6
		release()
	}
	return nil
}
