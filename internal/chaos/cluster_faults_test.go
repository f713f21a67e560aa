package chaos

// Cluster faults (issue 15): durabus on a Redis Cluster of 3 masters with
// a replica each, through go-redis ClusterClients, under a graceful
// failover (CLUSTER FAILOVER on a replica), a forced one (kill -9 of a
// master while it is written, its replica paused and cut off just before
// so that it lags; the killed node rejoins as a replica once everyone
// found the promoted one) and a slot migration of a busy topic
// (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while it is written; each
// with plain and with sharded Pub/Sub (redistransport.WithShardedPubSub).
//
// The load: 3 event types of 16 partitions each (48 topics, each with its
// own hash tag, spread over the masters), a steady publisher, and these
// subscribers, each a bus in this process with a ClusterClient of its own:
//
//   - plain: every partition of the 3 types, not durable;
//   - pattern: clu.* (plain Pub/Sub only: sharded Pub/Sub has no patterns);
//   - durable: bus.WithConsumer, running through the faults;
//   - offline: bus.WithConsumer, stopped (Shutdown: checkpoints saved)
//     before each forced failover and started after it, a new incarnation;
//   - group: 2 members of bus.WithGroup, sharing the 48 partitions.
//
// The history (every publish attempt and acknowledgement, every handler
// call, every LossError) is checked as TestChaosData checks its own
// (checkData, with rollbacks in mind), and the table goes to -chaos.out.
// Timings (failover, the publisher's burst of errors, the sharded
// subscribers' resubscription after a migration) are measured and tabled,
// not asserted.
//
//	go test -race -count=1 -run '^TestChaosCluster$' -v ./internal/chaos
//	go test -race -count=1 -run '^TestChaosCluster$' -v ./internal/chaos -chaos.duration=30s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

const (
	cluParts   = 16
	cluPattern = "clu.*"
	// subGroup is the row of the consumer group (both members).
	subGroup = "group"
	// cluNodeTimeout is the cluster-node-timeout: short, so that a forced
	// failover takes a few seconds, long enough that a loaded 2-core
	// machine running -race does not fail nodes over by itself.
	cluNodeTimeout = 2 * time.Second
	// cluGroupMembers is the number of members of the group.
	cluGroupMembers = 2
)

// cluTypes are the event types; each has cluParts partitions.
var cluTypes = []string{"clu.a", "clu.b", "clu.c"}

// cluTopics are the 48 partitions, type by type.
var cluTopics = func() []string {
	var out []string
	for _, tp := range cluTypes {
		out = append(out, transport.PartitionTopics(tp, cluParts)...)
	}
	return out
}()

// cluKeys[p] is a partition key that lands in partition p: every event of
// a partition carries it, so the publisher knows each event's topic.
var cluKeys = func() []string {
	keys := make([]string, cluParts)
	found := 0
	for i := 0; found < cluParts; i++ {
		k := "key-" + strconv.Itoa(i)
		if p := transport.PartitionOf(k, cluParts); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}()

// cluEvent is what the cluster publisher sends: K is unique per attempt
// (decodeK reads it), Type its event type, Key the key of its partition.
type cluEvent struct {
	K    int64  `json:"k"`
	Type string `json:"-"`
	Key  string `json:"-"`
}

func (e cluEvent) EventType() string    { return e.Type }
func (e cluEvent) PartitionKey() string { return e.Key }

// cluEventOf returns the event k for topic i of cluTopics.
func cluEventOf(k int64, i int) cluEvent {
	return cluEvent{K: k, Type: cluTypes[i/cluParts], Key: cluKeys[i%cluParts]}
}

// cluClient returns a go-redis cluster client with the chaos timeouts,
// seeded with every node.
func cluClient(c *redistest.Cluster) *redis.ClusterClient {
	o := clientOptions("")
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:        c.Addrs(),
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
		PoolTimeout:  o.PoolTimeout,
	})
}

// cluMode is plain or sharded Pub/Sub.
type cluMode struct {
	name    string
	sharded bool
}

var cluModes = []cluMode{{"plain", false}, {"sharded", true}}

// cluFault is one cluster fault, injected in episodes until its time is
// up (at least once).
type cluFault struct {
	name    string
	episode func(w *cluWorld, n int)
	gap     [2]time.Duration
	// rollback: Redis loses acknowledged events (async replication) and
	// hands their seqs out again; every subscriber must report each one.
	rollback bool
}

// cluWorld is one run: the cluster, the records (a dataEnv, whose checker
// is reused), the subscribers, and what the publisher's clients saw.
type cluWorld struct {
	*dataEnv
	c       *redistest.Cluster
	sharded bool
	ca      *redis.ClusterClient // admin: reads logs and checkpoints

	pub      *bus.Bus             // the publisher's bus
	subs     map[string][]*cluSub // row -> its buses (the group has 2)
	errs     errLog               // every failed command of the publisher's node clients
	callErrs errLog               // every Publish or PublishBatch call that returned an error

	epMu     sync.Mutex
	episodes []cluEpisode
}

// cluEpisode is what one fault episode measured.
type cluEpisode struct {
	what string
	took time.Duration // the failover or the migration, as the helper ran it
	// pubErrs: commands of the publisher that failed on a node (go-redis
	// retries most: MOVED, ASK, TRYAGAIN, dial errors), from the start of
	// the episode until the publisher was acknowledged on every master
	// again; span from the first to the last of them. failed: Publish and
	// PublishBatch events that returned an error meanwhile.
	pubErrs int
	span    time.Duration
	kinds   string
	failed  int64
	// resub (sharded migration): from the end of the migration until the
	// new owner counted as many shard subscriptions of the topic's channel
	// as the old owner had before.
	resub    time.Duration
	resubbed bool // resub was measured
	// recovery: from the end of the episode until the subscriber (row)
	// had handled, on every topic, an event published after it.
	recovery map[string]time.Duration
}

// maxRecovery is the longest recovery of the episode.
func (ep cluEpisode) maxRecovery() time.Duration {
	var m time.Duration
	for _, d := range ep.recovery {
		m = max(m, d)
	}
	return m
}

// errLog records the errors the publisher's node clients returned.
type errLog struct {
	mu      sync.Mutex
	at      []time.Time
	kinds   []string
	samples map[string]string // kind -> its first error
}

func (l *errLog) note(err error) {
	if err == nil || errors.Is(err, redis.Nil) || strings.HasPrefix(err.Error(), "NOSCRIPT") {
		return
	}
	if msg := err.Error(); strings.Contains(msg, "maint_notifications") || strings.Contains(msg, "setinfo") {
		// go-redis (v9.23.0) sends CLIENT SETINFO and CLIENT
		// MAINT_NOTIFICATIONS on every new connection, which Redis 7.0
		// does not know: part of its handshake, not a failed command.
		return
	}
	kind, _, _ := strings.Cut(err.Error(), " ")
	var ne net.Error
	if errors.As(err, &ne) {
		kind = "net"
		if ne.Timeout() {
			kind = "timeout"
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.at) < 1<<20 {
		l.at = append(l.at, time.Now())
		l.kinds = append(l.kinds, kind)
	}
	if l.samples == nil {
		l.samples = map[string]string{}
	}
	if _, ok := l.samples[kind]; !ok {
		l.samples[kind] = err.Error()
	}
}

// since returns how many errors were noted from i on, their span and
// their kinds.
func (l *errLog) since(i int) (n int, span time.Duration, kinds string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i >= len(l.at) {
		return 0, 0, ""
	}
	count := map[string]int{}
	for _, k := range l.kinds[i:] {
		count[k]++
	}
	var ks []string
	for k, c := range count {
		ks = append(ks, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(ks)
	return len(l.at) - i, l.at[len(l.at)-1].Sub(l.at[i]), strings.Join(ks, ", ")
}

func (l *errLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// errHook is a go-redis hook on every node client of the publisher: it
// notes each failed dial and command, which the cluster client may then
// retry (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, a dead node).
type errHook struct{ l *errLog }

func (h errHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.l.note(err)
		return c, err
	}
}

func (h errHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.l.note(err)
		return err
	}
}

func (h errHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil {
			h.l.note(err)
		}
		return err
	}
}

// cluSub is one subscriber bus; it can be stopped and started again (a
// new incarnation, as a restarted process would be).
type cluSub struct {
	w      *cluWorld
	row    string // the table row
	member int    // group member, 0 otherwise

	mu         sync.Mutex
	inc        int
	rdb        *redis.ClusterClient
	tr         *redistransport.Transport
	b          *bus.Bus
	done       chan error
	reconnects uint64 // of the stopped incarnations
}

// consumerOf names the durable consumer of a row ("" when not durable).
func consumerOf(row string) string {
	switch row {
	case subDurable:
		return "clu-durable"
	case subOffline:
		return "clu-offline"
	}
	return ""
}

func (w *cluWorld) addSub(row string, member int) *cluSub {
	s := &cluSub{w: w, row: row, member: member}
	w.subs[row] = append(w.subs[row], s)
	w.t.Cleanup(func() { s.stop() })
	s.start()
	return s
}

// incID is the incarnation recorded with each delivery and report: the
// group's members count as separate processes.
func (s *cluSub) incID() int { return s.member*1000 + s.inc }

func (s *cluSub) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b != nil {
		s.w.t.Fatalf("%s subscriber started twice", s.row)
	}
	s.inc++
	inc := s.incID()
	w := s.w
	rdb := cluClient(w.c)
	tr, err := redistransport.New(rdb, redistransport.WithProbe(250*time.Millisecond, time.Second),
		redistransport.WithShardedPubSub(w.sharded), redistransport.WithLogger(quiet))
	if err != nil {
		w.t.Fatal(err)
	}
	fopts := []replay.Option{
		replay.WithHeadCheck(250 * time.Millisecond),
		replay.WithBackoff(10*time.Millisecond, 500*time.Millisecond, 2),
		replay.WithDrainTimeout(2 * time.Second),
		replay.WithCheckpointEvery(50, 100*time.Millisecond),
	}
	opts := []bus.Option{bus.WithLogger(quiet), bus.WithFollowerOptions(fopts...),
		bus.WithOnLoss(func(l *replay.LossError) { w.rec.lost(s.row, *l, inc) }),
		bus.WithOnError(func(err error) { w.rec.err(s.row, err.Error()) })}
	if s.row != subPattern {
		for _, tp := range cluTypes {
			opts = append(opts, bus.WithPartitions(tp, cluParts))
		}
	}
	if c := consumerOf(s.row); c != "" {
		opts = append(opts, bus.WithConsumer(c))
	}
	if s.row == subGroup {
		opts = append(opts, bus.WithGroup("clu-group"))
	}
	b, err := bus.New(tr, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		w.rec.delivered(s.row, dataDel{k: k, topic: m.Topic, epoch: m.Position.Epoch, seq: m.Position.Seq, id: m.Position.ID, inc: inc})
		return nil
	})
	if s.row == subPattern {
		_, err = b.Handle(cluPattern, h, bus.StartAt(bus.Beginning()))
	} else {
		for _, tp := range cluTypes {
			if _, err = b.Handle(tp, h, bus.StartAt(bus.Beginning())); err != nil {
				break
			}
		}
	}
	if err != nil {
		w.t.Fatal(err)
	}
	s.rdb, s.tr, s.b, s.done = rdb, tr, b, make(chan error, 1)
	go func(b *bus.Bus, done chan error) { done <- b.Run(context.Background()) }(b, s.done)
}

// stop shuts the bus down (its checkpoints saved, its lease released) and
// closes its client.
func (s *cluSub) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return
	}
	s.reconnects += busReconnects(s.b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.b.Shutdown(ctx); err != nil {
		s.w.t.Errorf("%s subscriber: Shutdown: %v", s.row, err)
	}
	if err := <-s.done; err != nil {
		s.w.t.Errorf("%s subscriber: Run: %v", s.row, err)
	}
	_ = s.tr.Close()
	_ = s.rdb.Close()
	s.b = nil
}

func (s *cluSub) running() *bus.Bus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b
}

func (s *cluSub) allReconnects() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.reconnects
	if s.b != nil {
		n += busReconnects(s.b)
	}
	return n
}

func busReconnects(b *bus.Bus) uint64 {
	var n uint64
	for _, st := range b.Status() {
		n += st.Stats.Reconnects
	}
	return n
}

// rows are the table's rows in order.
func (w *cluWorld) rows() []string {
	if w.sharded {
		return []string{subPlain, subDurable, subOffline, subGroup}
	}
	return []string{subPlain, subPattern, subDurable, subOffline, subGroup}
}

// waitReady waits until every running bus is Ready and each durable
// consumer's checkpoint hash holds every topic: a fault before then would
// test nothing.
func (w *cluWorld) waitReady() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, row := range w.rows() {
		for _, s := range w.subs[row] {
			b := s.running()
			if b == nil {
				continue
			}
			if err := b.Ready(ctx); err != nil {
				w.t.Fatalf("%s subscriber not ready after %v: %v", row, readyTimeout, err)
			}
			if c := consumerOf(row); c != "" {
				key := "durabus:consumer:" + c
				waitFor(w.t, key+" to hold every topic", func() (bool, string) {
					cps, err := w.ca.HGetAll(context.Background(), key).Result()
					if err != nil {
						return false, err.Error()
					}
					for _, tp := range cluTopics {
						if _, ok := cps[tp]; !ok {
							return false, fmt.Sprintf("%d of %d topics", len(cps), len(cluTopics))
						}
					}
					return true, ""
				})
			}
		}
	}
}

// newPublisher is the run's publishing bus: idempotency window on, the
// transport's warnings (rollback markers) kept, every node error noted.
func (w *cluWorld) newPublisher() *bus.Bus {
	rdb := cluClient(w.c)
	rdb.OnNewNode(func(n *redis.Client) { n.AddHook(errHook{&w.errs}) })
	tr, err := redistransport.New(rdb, redistransport.WithIdempotency(10*time.Minute),
		redistransport.WithShardedPubSub(w.sharded), redistransport.WithLogger(slog.New(w.pubLog)))
	if err != nil {
		w.t.Fatal(err)
	}
	opts := []bus.Option{bus.WithLogger(quiet)}
	for _, tp := range cluTypes {
		opts = append(opts, bus.WithPartitions(tp, cluParts))
	}
	b, err := bus.New(tr, opts...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { b.Close(); tr.Close(); rdb.Close() })
	return b
}

// publish sends, every tick, one event to the next topic in turn and,
// every other tick, a batch of batchSize events to the next topics, until
// ctx ends. Every attempt and acknowledgement is recorded.
func (w *cluWorld) publish(ctx context.Context, b *bus.Bus, every time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var inner sync.WaitGroup
	batches := make(chan int, 1)
	inner.Add(1)
	go func() {
		defer inner.Done()
		for first := range batches {
			w.batch(ctx, b, first)
		}
	}()
	defer func() { close(batches); inner.Wait() }()
	next := 0
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.single(ctx, b, next%len(cluTopics))
		next++
		if n%2 == 0 {
			select {
			case batches <- next:
				next += batchSize
			default: // the batcher is still busy (a fault): skip, keep the rate
			}
		}
	}
}

func (w *cluWorld) single(ctx context.Context, b *bus.Bus, i int) {
	k := w.pubKeys.Add(1)
	w.h.attempt(k, cluTopics[i])
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pos, err := b.Publish(pctx, cluEventOf(k, i))
	if err != nil {
		w.failed.Add(1)
		w.callErrs.note(err)
		return
	}
	w.acked.Add(1)
	w.h.acked(k, pos.Epoch, pos.Seq, pos.ID)
}

func (w *cluWorld) batch(ctx context.Context, b *bus.Bus, first int) {
	events := make([]bus.Event, batchSize)
	keys := make([]int64, batchSize)
	for j := range events {
		i := (first + j) % len(cluTopics)
		keys[j] = w.pubKeys.Add(1)
		w.h.attempt(keys[j], cluTopics[i])
		events[j] = cluEventOf(keys[j], i)
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pos, err := b.PublishBatch(pctx, events)
	if err != nil {
		w.callErrs.note(err)
	}
	failed := batchFailed(err, len(events))
	for j := range events {
		if failed[j] || j >= len(pos) || pos[j].Seq == 0 {
			w.failed.Add(1)
			continue
		}
		w.acked.Add(1)
		w.h.acked(keys[j], pos[j].Epoch, pos[j].Seq, pos[j].ID)
	}
}

// ackedSince counts, per topic, the acknowledged events with a key above k.
func (w *cluWorld) ackedSince(k int64) map[string]int {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	count := map[string]int{}
	for key, p := range w.h.pubs {
		if key > k && p.ok {
			count[p.topic]++
		}
	}
	return count
}

// waitAckedOn waits until each of tps has n events acknowledged after key
// k, or bound has passed (then it returns false: a loaded machine may not
// publish that fast, and the fault goes on with what there is).
func (w *cluWorld) waitAckedOn(tps []string, k int64, n int, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		count := w.ackedSince(k)
		ok := true
		for _, tp := range tps {
			if count[tp] < n {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// passedK reports whether row has handled, on every topic, an event
// published after key k.
func (w *cluWorld) passedK(row string, k int64) bool {
	w.rec.mu.Lock()
	defer w.rec.mu.Unlock()
	for _, tp := range cluTopics {
		if w.rec.maxK[row][tp] <= k {
			return false
		}
	}
	return true
}

// settle ends an episode: it waits until the publisher is acknowledged on
// every topic again (so every master is writable) and every subscriber has
// handled, on every topic, an event published after the episode, and
// records the publisher's errors and the recovery.
func (w *cluWorld) settle(ep cluEpisode, errsAt int, failedAt int64) {
	w.t.Helper()
	k := w.pubKeys.Load()
	ended := time.Now()
	waitFor(w.t, "the publisher to be acknowledged on every topic after "+ep.what, func() (bool, string) {
		count := w.ackedSince(k)
		var missing []string
		for _, tp := range cluTopics {
			if count[tp] == 0 {
				missing = append(missing, tp)
			}
		}
		return len(missing) == 0, fmt.Sprintf("nothing acknowledged yet on %v", missing)
	})
	ep.pubErrs, ep.span, ep.kinds = w.errs.since(errsAt)
	ep.failed = w.failed.Load() - failedAt
	ep.recovery = map[string]time.Duration{}
	waitFor(w.t, "every subscriber to handle, on every topic, an event published after "+ep.what, func() (bool, string) {
		var behind []string
		for _, row := range w.rows() {
			if _, done := ep.recovery[row]; done {
				continue
			}
			if w.passedK(row, k) {
				ep.recovery[row] = time.Since(ended)
			} else {
				behind = append(behind, row)
			}
		}
		return len(behind) == 0, fmt.Sprintf("%v not yet", behind)
	})
	w.epMu.Lock()
	w.episodes = append(w.episodes, ep)
	w.epMu.Unlock()
}

// topicsOn returns the topics whose slot master is m.
func (w *cluWorld) topicsOn(m *redistest.Server) []string {
	var out []string
	for _, tp := range cluTopics {
		if w.c.MasterOfKey(w.t, "durabus:{"+tp+"}:log").Addr() == m.Addr() {
			out = append(out, tp)
		}
	}
	return out
}

// gracefulFailover: CLUSTER FAILOVER on the replica of one master (the
// next one each episode) while the publisher writes.
//
// Expected: nothing lost, nothing reported, nothing reordered; duplicates
// only across incarnations. The publisher sees a short burst of errors
// (MOVED after the switch, which go-redis follows), counted.
var gracefulFailover = cluFault{name: "graceful-failover", gap: [2]time.Duration{500 * time.Millisecond, time.Second},
	episode: func(w *cluWorld, n int) {
		masters := w.c.Masters(w.t)
		m := masters[n%len(masters)]
		errsAt, failedAt := w.errs.len(), w.failed.Load()
		began := time.Now()
		to := w.c.Failover(w.t, m)
		ep := cluEpisode{what: fmt.Sprintf("failover %s -> %s", m.Addr(), to.Addr()), took: time.Since(began)}
		w.c.WaitOK(w.t)
		w.settle(ep, errsAt, failedAt)
	}}

// forcedFailover: the offline consumer is stopped; the replica of one
// master (the next one each episode) is paused (SIGSTOP) and its link
// killed on the master (CLIENT KILL TYPE replica), the publisher goes on until each topic of that master has 10 events acknowledged that
// the replica lacks, the master is SIGKILLed and the replica continued,
// and the cluster promotes it (cluster-node-timeout 2 s). Then the offline
// consumer is started again and the killed node rejoins as a replica.
//
// Expected: the acknowledged events the replica lacked are gone and their
// seqs are handed out again; every subscriber reports them, exactly, as
// RolledBack (see failoverScenario, whose rules this is), the offline one
// through the publisher's rollback markers. Nothing else is lost.
var forcedFailover = cluFault{name: "forced-failover", rollback: true, gap: [2]time.Duration{500 * time.Millisecond, time.Second},
	episode: func(w *cluWorld, n int) {
		masters := w.c.Masters(w.t)
		m := masters[n%len(masters)]
		reps := w.c.ReplicasOf(w.t, m)
		if len(reps) == 0 {
			w.t.Fatalf("master %s has no replica", m.Addr())
		}
		r := reps[0]
		for _, s := range w.subs[subOffline] {
			s.stop()
		}
		tps := w.topicsOn(m)
		// The replica stops reading, and the master drops its link: what
		// the master acknowledges from now on reaches no replica (a
		// stopped replica whose link stayed up would read it from its
		// socket buffer after the kill, and lose nothing).
		r.Pause(w.t)
		mc := redis.NewClient(&redis.Options{Addr: m.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
		err := mc.ClientKillByFilter(context.Background(), "TYPE", "replica").Err()
		mc.Close()
		if err != nil {
			w.t.Fatalf("CLIENT KILL TYPE replica on %s: %v", m.Addr(), err)
		}
		k := w.pubKeys.Load()
		// A pause longer than the node timeout would get the replica
		// flagged as failing: wait for 10 events per topic, at most 1 s.
		w.waitAckedOn(tps, k, 10, time.Second)
		errsAt, failedAt := w.errs.len(), w.failed.Load()
		began := time.Now()
		m.Kill(w.t)
		r.Resume(w.t)
		waitPromoted(w, r)
		w.c.WaitOK(w.t)
		ep := cluEpisode{what: fmt.Sprintf("kill -9 %s, %s promoted", m.Addr(), r.Addr()), took: time.Since(began)}
		for _, s := range w.subs[subOffline] {
			s.start()
		}
		// Everyone must find the promoted replica while the old master
		// is still dead (go-redis alone would go on dialling it for up
		// to a minute: see refreshSlots in redistransport); it rejoins,
		// as a replica, only after.
		w.settle(ep, errsAt, failedAt)
		w.c.Rejoin(w.t, m)
	}}

// waitPromoted waits until r reports itself a master.
func waitPromoted(w *cluWorld, r *redistest.Server) {
	w.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer rdb.Close()
	waitFor(w.t, r.Addr()+" to be promoted", func() (bool, string) {
		role, err := rdb.Do(context.Background(), "ROLE").Slice()
		if err != nil {
			return false, err.Error()
		}
		if len(role) > 0 && role[0] == "master" {
			return true, ""
		}
		return false, fmt.Sprintf("ROLE %v", role)
	})
}

// slotMigration: the slot of one busy topic (the next one each episode) is
// migrated to another master while the publisher writes to it.
//
// Expected: nothing lost, nothing reported, nothing reordered. Publishes
// go on (go-redis follows ASK and MOVED and retries TRYAGAIN; errors are
// counted). With sharded Pub/Sub, the old owner ends the subscriptions of
// the slot's channel (a server-pushed sunsubscribe): each subscriber
// rebuilds its connection on the new owner and repairs the gap from the
// backlog.
var slotMigration = cluFault{name: "slot-migration", gap: [2]time.Duration{500 * time.Millisecond, time.Second},
	episode: func(w *cluWorld, n int) {
		tp := cluTopics[(n*17+5)%len(cluTopics)]
		slot := redistest.KeySlot("durabus:{" + tp + "}:log")
		from := w.c.MasterOfSlot(w.t, slot)
		var to *redistest.Server
		for _, m := range w.c.Masters(w.t) {
			if m.Addr() != from.Addr() {
				to = m
				if n%2 == 1 { // alternate between the two others
					continue
				}
				break
			}
		}
		ch := "durabus:{" + tp + "}"
		subsBefore := shardSubs(w.t, from, ch)
		errsAt, failedAt := w.errs.len(), w.failed.Load()
		// The topic is made hot while its slot moves: publishes back to
		// back, on top of the steady load, so that they meet the slot
		// half moved (ASK, TRYAGAIN).
		hot, cool := context.WithCancel(context.Background())
		var hw sync.WaitGroup
		hw.Add(1)
		hotK := w.pubKeys.Load()
		go func() {
			defer hw.Done()
			i := slices.Index(cluTopics, tp)
			for hot.Err() == nil {
				w.single(hot, w.pub, i)
			}
		}()
		w.waitAckedOn([]string{tp}, hotK, 50, 10*time.Second)
		began := time.Now()
		w.c.MigrateSlot(w.t, slot, to)
		cool()
		hw.Wait()
		ep := cluEpisode{what: fmt.Sprintf("slot %d (%s) %s -> %s", slot, tp, from.Addr(), to.Addr()), took: time.Since(began)}
		if w.sharded {
			moved := time.Now()
			waitFor(w.t, fmt.Sprintf("%d shard subscriptions of %s on %s", subsBefore, ch, to.Addr()), func() (bool, string) {
				n := shardSubs(w.t, to, ch)
				return n >= subsBefore, fmt.Sprintf("%d", n)
			})
			ep.resub, ep.resubbed = time.Since(moved), true
			if left := shardSubs(w.t, from, ch); left != 0 {
				w.t.Errorf("%s: %d shard subscriptions of %s left on the old owner %s", ep.what, left, ch, from.Addr())
			}
			ep.what += fmt.Sprintf(" (%d shard subscriptions)", subsBefore)
		}
		w.settle(ep, errsAt, failedAt)
	}}

// shardSubs returns PUBSUB SHARDNUMSUB of ch on node s.
func shardSubs(t *testing.T, s *redistest.Server, ch string) int64 {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	defer rdb.Close()
	m, err := rdb.PubSubShardNumSub(context.Background(), ch).Result()
	if err != nil {
		t.Fatalf("PUBSUB SHARDNUMSUB %s on %s: %v", ch, s.Addr(), err)
	}
	return m[ch]
}

var cluFaults = []cluFault{gracefulFailover, forcedFailover, slotMigration}

// TestChaosCluster runs each cluster fault with plain and with sharded
// Pub/Sub and checks the counted history of every subscriber: nothing
// lost unless Redis lost it, and then reported exactly; nothing reordered;
// no event handled twice within one incarnation.
func TestChaosCluster(t *testing.T) {
	d := faultDuration()
	var runs []*runReport
	var timings strings.Builder
	for _, f := range cluFaults {
		for _, mode := range cluModes {
			t.Run(f.name+"/"+mode.name, func(t *testing.T) {
				r, eps := runCluster(t, f, mode, d)
				t.Logf("\n%s", r.table())
				runs = append(runs, r)
				timings.WriteString(episodeTable(r.scenario, eps))
			})
		}
	}
	sum := summary(runs) + "\n" + episodeHeader + timings.String()
	fmt.Printf("chaos (cluster faults): %d runs, each fault for %v\n%s", len(runs), d, sum)
	appendChaosOut(t, sum)
}

// appendChaosOut appends text to the -chaos.out file, if any.
func appendChaosOut(t *testing.T, text string) {
	if *chaosOut == "" {
		return
	}
	f, err := os.OpenFile(*chaosOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		_, err = f.WriteString("\n" + text)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Error(err)
	}
}

const episodeHeader = "| run | episodes | took p50 / max | publisher node errors per episode p50 / max (longest burst) | failed events | resubscribed p50 / max | recovery p50 / max |\n" +
	"| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"

// episodeTable sums up the episodes of one run in a row: the time each
// fault took, the publisher's node errors and its longest burst of them,
// the events whose publish failed, the sharded subscribers' resubscription
// after a migration, and the longest recovery of a subscriber.
func episodeTable(run string, eps []cluEpisode) string {
	if len(eps) == 0 {
		return ""
	}
	var took, span, resub, rec []time.Duration
	var errs []int
	var failed int64
	for _, ep := range eps {
		took = append(took, ep.took)
		span = append(span, ep.span)
		errs = append(errs, ep.pubErrs)
		failed += ep.failed
		rec = append(rec, ep.maxRecovery())
		if ep.resubbed {
			resub = append(resub, ep.resub)
		}
	}
	pair := func(ds []time.Duration) string {
		if len(ds) == 0 {
			return "–"
		}
		slices.Sort(ds)
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
		return fmt.Sprintf("%v / %v", r(ds[len(ds)/2]), r(ds[len(ds)-1]))
	}
	slices.Sort(errs)
	slices.Sort(span)
	return fmt.Sprintf("| %s | %d | %s | %d / %d (%v) | %d | %s | %s |\n", run, len(eps), pair(took),
		errs[len(errs)/2], errs[len(errs)-1], span[len(span)-1].Round(10*time.Millisecond), failed, pair(resub), pair(rec))
}

func runCluster(t *testing.T, f cluFault, mode cluMode, dur time.Duration) (*runReport, []cluEpisode) {
	began := time.Now()
	c := redistest.StartCluster(t, 3, redistest.WithReplicas(1), redistest.WithNodeTimeout(cluNodeTimeout))
	w := &cluWorld{
		dataEnv: &dataEnv{env: &env{t: t, h: newHistory()}, rec: newDataRec(), kids: map[string]*dataChild{}, pubLog: &captureHandler{}},
		c:       c, sharded: mode.sharded, ca: cluClient(c), subs: map[string][]*cluSub{},
	}
	t.Cleanup(func() { w.ca.Close() })

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { defer bg.Done(); w.sampleHeap(ctx) }()

	// The publisher first: its first publish records the partition counts.
	pubCtx, stopPub := context.WithCancel(ctx)
	var pw sync.WaitGroup
	pw.Add(1)
	w.pub = w.newPublisher()
	go w.publish(pubCtx, w.pub, 2*(*chaosRate), &pw)
	w.waitAckedOn(cluTopics, 0, 1, readyTimeout)
	for _, row := range w.rows() {
		if row == subGroup {
			for m := range cluGroupMembers {
				w.addSub(row, m)
			}
			continue
		}
		w.addSub(row, 0)
	}
	w.waitReady()
	if !w.waitAckedOn(cluTopics, w.pubKeys.Load(), 5, readyTimeout) {
		t.Fatalf("the publisher did not get 5 events per topic acknowledged within %v", readyTimeout)
	}

	faults := 0
	deadline := time.Now().Add(dur)
	for faults == 0 || time.Now().Before(deadline) {
		w.waitReady()
		f.episode(w, faults)
		faults++
		time.Sleep(between(rngFor(faults), f.gap))
	}
	for _, s := range w.subs[subOffline] {
		if s.running() == nil {
			s.start()
		}
	}
	w.waitAckedOn(cluTopics, w.pubKeys.Load(), 3, readyTimeout)
	stopPub()
	pw.Wait()

	// The logs are final now (nobody publishes). Wait, generously, until
	// every subscriber has handled everything they hold and has handled
	// or been told of every acknowledged event that is gone.
	s := dataScenario{name: f.name, rollback: f.rollback, lossy: f.rollback}
	final := w.readFinal()
	var facts *dataFacts
	waitStart := time.Now()
	lastMove, lastCount := waitStart, -1
	for {
		facts = w.facts(final)
		pending := ""
		for _, row := range w.rows() {
			if v := checkData(facts, row, s, false); !v.done {
				pending += fmt.Sprintf(" %s: %d to handle or report (%s);", row, v.lost+v.unreported, strings.Join(v.lostSamples, ", "))
			}
		}
		if pending == "" {
			break
		}
		if n := w.rec.count(); n != lastCount {
			lastMove, lastCount = time.Now(), n
		}
		if time.Since(waitStart) > 90*time.Second || time.Since(lastMove) > 30*time.Second {
			t.Errorf("not caught up (%v after the publisher stopped, %v since a subscriber last handled an event or reported a loss):%s",
				time.Since(waitStart).Round(time.Second), time.Since(lastMove).Round(time.Second), pending)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let late duplicates show
	stop()
	bg.Wait()
	facts = w.facts(final)

	name := f.name + "/" + mode.name
	r := &runReport{scenario: name, duration: time.Since(began), faults: faults,
		published: int(w.acked.Load()), failed: int(w.failed.Load()), logDups: final.dupK}
	w.h.mu.Lock()
	for k, p := range w.h.pubs {
		if _, logged := final.byK[k]; !p.ok && logged {
			r.written++
		}
	}
	w.h.mu.Unlock()
	for _, row := range w.rows() {
		dv := checkData(facts, row, s, true)
		v := dv.verdict
		for _, sub := range w.subs[row] {
			v.reconnects += sub.allReconnects()
		}
		v.peakMem, v.memKind = w.heapMax.Load(), "heap"
		for _, ep := range w.episodes {
			v.recovery = max(v.recovery, ep.recovery[row])
		}
		r.rows = append(r.rows, v)
		r.notes = append(r.notes, dv.notes...)
		if dv.dupInRun > 0 {
			r.notes = append(r.notes, dupSamples(facts, row)...)
		}
		judgeCluster(t, s, dv)
	}
	if final.dupK > 0 {
		t.Errorf("%d events written twice to the log", final.dupK)
	}
	w.epMu.Lock()
	eps := append([]cluEpisode(nil), w.episodes...)
	w.epMu.Unlock()
	for _, ep := range eps {
		r.notes = append(r.notes, fmt.Sprintf("%s: took %v; publisher: %d node errors over %v (%s), %d events failed; resubscribed %v; recovery %v",
			ep.what, ep.took.Round(10*time.Millisecond), ep.pubErrs, ep.span.Round(10*time.Millisecond), ep.kinds, ep.failed,
			ep.resub.Round(10*time.Millisecond), ep.maxRecovery().Round(10*time.Millisecond)))
	}
	w.errs.mu.Lock()
	for kind, e := range w.errs.samples {
		r.notes = append(r.notes, fmt.Sprintf("publisher node error %s, first: %s", kind, e))
	}
	w.errs.mu.Unlock()
	w.callErrs.mu.Lock()
	for _, e := range w.callErrs.samples {
		r.notes = append(r.notes, fmt.Sprintf("publish call failed (%d calls in all), e.g.: %s", len(w.callErrs.at), e))
	}
	w.callErrs.mu.Unlock()
	if len(final.markers) > 0 {
		r.notes = append(r.notes, fmt.Sprintf("rollback markers in the logs: %s", strings.Join(final.markers, ", ")))
	}
	if n, lines := w.pubLog.summary(); n > 0 {
		r.notes = append(r.notes, fmt.Sprintf("publisher warnings: %d, e.g. %s", n, strings.Join(lines, " | ")))
	}
	w.rec.mu.Lock()
	for _, row := range w.rows() {
		if n := w.rec.errs[row]; n > 0 {
			r.notes = append(r.notes, fmt.Sprintf("%s errors: %d, e.g. %s", row, n, strings.Join(w.rec.samples[row], " | ")))
		}
	}
	w.rec.mu.Unlock()
	return r, eps
}

// rngFor returns a generator for the gap after episode n.
func rngFor(n int) *rand.Rand { return rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(n))) }

// readFinal reads the 48 logs through the cluster client.
func (w *cluWorld) readFinal() *dataLog { return readDataLog(w.t, w.ca, cluTopics) }

// judgeCluster applies the pass criteria to one row. The group hands a
// partition over to the other member when a lease is lost (at least once:
// docs/groups.md), so its duplicates are counted, not judged.
func judgeCluster(t *testing.T, s dataScenario, v dataVerdict) {
	t.Helper()
	if v.sub == subGroup {
		v.dupInRun = 0
	}
	judgeData(t, s, v)
}

// dupSamples describes up to 3 log entries that row handled twice within
// one incarnation: every handler call and report on that topic in that
// incarnation, in order, from a little before the first call to a little
// after the second.
func dupSamples(f *dataFacts, row string) []string {
	type key struct {
		inc   int
		topic string
		id    string
		k     int64
	}
	first := map[key]int{}
	dels := f.dels[row]
	var out []string
	for i, dl := range dels {
		kk := key{dl.inc, dl.topic, dl.id, dl.k}
		j, seen := first[kk]
		if !seen {
			first[kk] = i
			continue
		}
		if len(out) == 3 {
			break
		}
		lo, hi := dels[j].at-40, dl.at+5
		type ev struct {
			at   int64
			text string
		}
		var evs []ev
		for _, d := range dels {
			if d.inc == dl.inc && d.topic == dl.topic && d.at >= lo && d.at <= hi {
				evs = append(evs, ev{d.at, fmt.Sprintf("D %d/%s k%d", d.seq, d.id, d.k)})
			}
		}
		for _, l := range f.losses[row] {
			if l.inc == dl.inc && l.Topic == dl.topic && l.at >= lo && l.at <= hi {
				evs = append(evs, ev{l.at, fmt.Sprintf("L %s %d..%d", l.Reason, l.From, l.To)})
			}
		}
		sort.Slice(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
		var b strings.Builder
		fmt.Fprintf(&b, "%s handled %s seq %d (%s, k %d) twice:", row, dl.topic, dl.seq, dl.id, dl.k)
		for _, e := range evs {
			b.WriteString(" | " + e.text)
		}
		out = append(out, b.String())
	}
	return out
}
