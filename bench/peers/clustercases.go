package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bench/benchkit"
	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// The Redis Cluster cases (issue 15): Publish through a go-redis
// ClusterClient on a private cluster of -cluster-masters masters with a
// replica each (cluster.go) against Publish through a Client on a
// standalone master with a replica, same run, same 48 topics, plain and
// sharded Pub/Sub, with the raw EVALSHA on both as the cost of the cluster
// client alone; each master's Redis CPU per event; and the catch-up of a
// durable subscriber after graceful failovers.

const (
	// clusterTopics spread the publish cases over every master.
	clusterTopics = 48
	// failoverRate is the steady publish rate of the failover case,
	// round-robin over one topic per shard.
	failoverRate = 2000
)

// clusterEnv is the cluster cases' servers and clients.
type clusterEnv struct {
	ctx   context.Context
	cl    *cluster
	pr    *pair
	cc    *redis.ClusterClient // the benchmarked calls on the cluster
	sc    *redis.Client        // the benchmarked calls on the standalone master
	msgs  []transport.Message
	raw   []byte
	dur   time.Duration
	round int
	fails int // graceful failovers run so far: the next is on shard fails%masters

	// What the failover case saw over all rounds, with plain ([0]) and
	// sharded ([1]) Pub/Sub.
	fo [2]failStats
}

// failStats is what the failover case saw.
type failStats struct {
	catch, took                            []time.Duration
	resent, pubErrs, lost, disorder, dupes int // resent: CLUSTER FAILOVER sent again after 6 s
}

// newClusterEnv starts the cluster and the standalone pair; close stops
// them (also when newClusterEnv fails, it stops what it started).
func newClusterEnv(ctx context.Context, bin string, masters int, e *env) (*clusterEnv, error) {
	c := &clusterEnv{ctx: ctx, msgs: e.msgs, raw: e.raw, dur: e.dur}
	var err error
	fmt.Fprintf(os.Stderr, "starting a Redis Cluster of %d masters with a replica each\n", masters)
	if c.cl, err = startCluster(ctx, bin, masters); err != nil {
		return nil, err
	}
	if c.pr, err = startPair(ctx, bin); err != nil {
		c.cl.stop()
		return nil, err
	}
	c.cc = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.cl.addrs(), PoolSize: 128})
	c.sc = redis.NewClient(&redis.Options{Addr: c.pr.master.addr, PoolSize: 128})
	return c, nil
}

func (c *clusterEnv) close() {
	if c == nil {
		return
	}
	_ = c.cc.Close()
	_ = c.sc.Close()
	c.pr.stop()
	c.cl.stop()
}

// flush empties both sides (FLUSHALL on every master; replicas follow).
func (c *clusterEnv) flush() {
	for _, a := range c.cl.admin {
		_ = a.FlushAll(c.ctx).Err() // a replica refuses: READONLY
	}
	_ = c.pr.admin.FlushAll(c.ctx).Err()
}

// newTransport is a transport on the cluster or the standalone master.
func (c *clusterEnv) newTransport(onCluster, sharded bool) (*redistransport.Transport, error) {
	var rdb redis.UniversalClient = c.sc
	if onCluster {
		rdb = c.cc
	}
	return redistransport.New(rdb, redistransport.WithShardedPubSub(sharded))
}

// side is a snapshot of one side's Redis CPU: each process's, and on the
// cluster which node is each shard's master.
type side struct {
	cpu     []float64
	eval    []float64 // INFO commandstats usec of EVALSHA and EVAL
	masters []int     // node index of shard i's master (cluster only)
}

func (c *clusterEnv) snapshot(onCluster bool) (side, error) {
	admins := []*redis.Client{c.pr.admin, c.pr.radmin}
	var s side
	if onCluster {
		admins = c.cl.admin
		for i := range c.cl.masters {
			m, _, err := c.cl.roles(c.ctx, i)
			if err != nil {
				return s, err
			}
			s.masters = append(s.masters, m)
		}
	}
	for _, a := range admins {
		cpu, err := benchkit.RedisCPU(c.ctx, a)
		if err != nil {
			return s, err
		}
		st := redisCommandStats(c.ctx, a)
		s.cpu = append(s.cpu, cpu)
		s.eval = append(s.eval, st["evalsha"][1]+st["eval"][1])
	}
	return s, nil
}

// timed runs one publish case for c.dur from g goroutines, on the cluster
// or the standalone pair, body counting each call's events by topic, and
// records as name its rate; as name+".cpu" the Redis CPU per event, in µs,
// of the standalone master or of the busiest cluster master (its CPU over
// the events of its slots); as name+".eval" the same for the time Redis
// spent in the script commands themselves (INFO commandstats); as
// name+".cpuall" the CPU per event of every process of the side, replicas
// included; on the cluster, as name+".rate.<i>" and name+".cpu.<i>", shard
// i's rate and its master's CPU per event.
func (c *clusterEnv) timed(m metrics, name string, onCluster bool, g int, shardOf []int, body func([]atomic.Int64) func(int) error) error {
	var counts []atomic.Int64
	var before, after side
	var rate float64
	for try := 0; ; try++ {
		c.flush()
		counts = make([]atomic.Int64, clusterTopics)
		var err error
		if before, err = c.snapshot(onCluster); err != nil {
			return err
		}
		if rate, err = benchkit.Timed(c.dur, g, 1, body(counts)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if after, err = c.snapshot(onCluster); err != nil {
			return err
		}
		if !onCluster || slices.Equal(before.masters, after.masters) {
			break
		}
		// A failover Redis made by itself (a node missed its pings for
		// cluster-node-timeout on a loaded machine): the CPU per master
		// would be wrong; run the case again.
		if try == 1 {
			return fmt.Errorf("%s: the masters changed during the case, twice", name)
		}
		if err := c.cl.waitSynced(c.ctx); err != nil {
			return err
		}
	}
	var total int64
	for k := range counts {
		total += counts[k].Load()
	}
	if total == 0 || rate == 0 {
		return fmt.Errorf("%s: no event published", name)
	}
	secs := float64(total) / rate
	var all float64
	for i := range after.cpu {
		all += after.cpu[i] - before.cpu[i]
	}
	m[name] = rate
	m[name+".cpuall"] = all / float64(total) * 1e6
	if !onCluster {
		m[name+".cpu"] = (after.cpu[0] - before.cpu[0]) / float64(total) * 1e6
		m[name+".eval"] = (after.eval[0] - before.eval[0]) / float64(total)
		return nil
	}
	busiest, busiestEval := 0.0, 0.0
	for i, n := range benchkit.PerShard(counts, shardOf, c.cl.masters) {
		if n == 0 {
			return fmt.Errorf("%s: no event on shard %d", name, i)
		}
		node := after.masters[i]
		cpu := (after.cpu[node] - before.cpu[node]) / float64(n) * 1e6
		si := strconv.Itoa(i)
		m[name+".rate."+si] = float64(n) / secs
		m[name+".cpu."+si] = cpu
		busiest = max(busiest, cpu)
		busiestEval = max(busiestEval, (after.eval[node]-before.eval[node])/float64(n))
	}
	m[name+".cpu"] = busiest
	m[name+".eval"] = busiestEval
	return nil
}

// publishCases runs, from 1 and 16 goroutines, raw EVALSHA on the
// standalone master and on the cluster, then Publish on each with plain
// and with sharded Pub/Sub, over clusterTopics topics round-robin.
func (c *clusterEnv) publishCases(m metrics) error {
	ctx := c.ctx
	// The same topics each round (each case starts from FLUSHALL), so that
	// each master has the same share of them.
	topics := make([]string, clusterTopics)
	for k := range topics {
		topics[k] = fmt.Sprintf("bench.cl.t%02d", k)
	}
	shards, err := benchkit.Shards(ctx, c.cc)
	if err != nil {
		return err
	}
	if len(shards) != c.cl.masters {
		return fmt.Errorf("CLUSTER SLOTS lists %d masters, want %d", len(shards), c.cl.masters)
	}
	chans := make([]string, len(topics)) // of the raw cases
	for k, t := range topics {
		chans[k] = "raw:{" + t + "}" // the hash tag {t}: the slot of t's durabus keys too
	}
	shardOf, err := benchkit.ShardOf(ctx, c.cc, shards, chans)
	if err != nil {
		return err
	}
	m["cl.topics"] = float64(len(topics))
	for _, s := range shardOf {
		m["cl.topics."+strconv.Itoa(s)]++
	}
	for _, script := range []*redis.Script{benchkit.RawScript, benchkit.RawShardedScript} {
		if err := script.Load(ctx, c.cc).Err(); err != nil { // every node, replicas too
			return err
		}
		if err := script.Load(ctx, c.sc).Err(); err != nil {
			return err
		}
	}
	for _, g := range []int{1, 16} {
		gs := strconv.Itoa(g)
		for _, sharded := range []bool{false, true} {
			mode, script := "plain", benchkit.RawScript
			if sharded {
				mode, script = "sharded", benchkit.RawShardedScript
			}
			k := mode + "." + gs
			for _, onCluster := range []bool{false, true} {
				var rdb redis.Scripter = c.sc
				where := "single"
				if onCluster {
					rdb, where = c.cc, "cluster"
				}
				if err := c.timed(m, "cl.raw."+where+"."+k, onCluster, g, shardOf, func(counts []atomic.Int64) func(int) error {
					return benchkit.RawSpread(ctx, rdb, script, chans, c.raw, counts)
				}); err != nil {
					return err
				}
			}
			for _, onCluster := range []bool{false, true} {
				where := "single"
				if onCluster {
					where = "cluster"
				}
				tr, err := c.newTransport(onCluster, sharded)
				if err != nil {
					return err
				}
				err = c.timed(m, "cl."+where+"."+k, onCluster, g, shardOf, func(counts []atomic.Int64) func(int) error {
					return benchkit.PublishSpread(ctx, tr, c.msgs, topics, counts)
				})
				_ = tr.Close()
				if err != nil {
					return err
				}
			}
			// What the cluster costs Publish, against what it costs the
			// raw script through the same kind of client: throughput and
			// the busiest master's CPU per event.
			for _, x := range []string{"", ".cpu"} {
				m["cl.rel."+k+x] = m["cl.cluster."+k+x] / m["cl.single."+k+x]
				m["cl.rel.raw."+k+x] = m["cl.raw.cluster."+k+x] / m["cl.raw.single."+k+x]
			}
		}
	}
	c.flush()
	return nil
}

// failovers runs n graceful failovers (CLUSTER FAILOVER on a replica, the
// shards in turn) while failoverRate events a second flow round-robin to
// one topic per shard, into a durable typed subscriber (a bus of its own,
// one subscription per topic), with plain or sharded Pub/Sub. For each it records the time from the
// command until the handler has delivered, in order, an event of that
// shard's topic published after the failover was seen complete, and the
// failover's own time. At the end every event whose Publish succeeded must
// have been delivered once, in order per topic: what was not is counted.
func (c *clusterEnv) failovers(n int, sharded bool) error {
	ctx := c.ctx
	fo := &c.fo[0]
	if sharded {
		fo = &c.fo[1]
	}
	c.flush()
	if err := c.cl.waitSynced(ctx); err != nil {
		return err
	}
	topics, err := c.topicPerShard()
	if err != nil {
		return err
	}
	masters := c.cl.masters

	// Subscriber: what it delivered, per topic in order.
	var mu sync.Mutex
	var delivered []bool
	lastN := make([]int64, masters)
	for i := range lastN {
		lastN[i] = -1
	}
	lastT := make([]atomic.Int64, masters)
	subTr, err := c.newTransport(true, sharded)
	if err != nil {
		return err
	}
	defer subTr.Close()
	sb, err := bus.New(subTr, bus.WithSource("bench"))
	if err != nil {
		return err
	}
	for _, t := range topics {
		if err := benchkit.Subscribe(sb, t, false, func(ev *benchkit.Event) {
			k := int(ev.N % int64(masters))
			mu.Lock()
			for int64(len(delivered)) <= ev.N {
				delivered = append(delivered, false)
			}
			if delivered[ev.N] {
				fo.dupes++
			} else if ev.N <= lastN[k] {
				fo.disorder++
			}
			delivered[ev.N] = true
			lastN[k] = max(lastN[k], ev.N)
			mu.Unlock()
			lastT[k].Store(ev.T)
		}); err != nil {
			return err
		}
	}
	stopSub, err := benchkit.Start(ctx, sb)
	if err != nil {
		return err
	}
	defer stopSub()

	// Publisher: which events it published.
	pubTr, err := c.newTransport(true, sharded)
	if err != nil {
		return err
	}
	defer pubTr.Close()
	pb, err := bus.New(pubTr, bus.WithSource("bench"))
	if err != nil {
		return err
	}
	defer pb.Close()
	var published []bool
	var errs atomic.Int64
	pctx, cancel := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		s := payload(220)
		benchkit.Paced(failoverRate, time.Hour, func(i int) error {
			_, err := pb.Publish(pctx, benchkit.Event{N: int64(i), T: time.Now().UnixNano(), S: s}, bus.ToTopic(topics[i%masters]))
			if pctx.Err() != nil {
				return pctx.Err()
			}
			mu.Lock()
			published = append(published, err == nil)
			mu.Unlock()
			if err != nil {
				errs.Add(1)
			}
			return nil
		})
	}()
	stopPub := func() { cancel(); <-pubDone }
	defer stopPub()

	time.Sleep(300 * time.Millisecond)
	for range n {
		s := c.fails % masters
		c.fails++
		sent, done, resent, err := c.cl.failover(ctx, s)
		if err != nil {
			return err
		}
		fo.resent += resent
		deadline := done.Add(30 * time.Second)
		for lastT[s].Load() <= done.UnixNano() {
			if time.Now().After(deadline) {
				return fmt.Errorf("failover of shard %d: no event published after it delivered within 30s", s)
			}
			time.Sleep(100 * time.Microsecond)
		}
		fo.catch = append(fo.catch, time.Since(sent))
		fo.took = append(fo.took, done.Sub(sent))
		time.Sleep(150 * time.Millisecond)
	}
	stopPub()
	fo.pubErrs += int(errs.Load())

	// Every event published was delivered (or is counted lost).
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		lost := 0
		for i, ok := range published {
			if ok && (i >= len(delivered) || !delivered[i]) {
				lost++
			}
		}
		return lost
	}
	deadline := time.Now().Add(30 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	fo.lost += missing()
	return nil
}

// topicPerShard returns a topic of the round in each shard's slots, shard
// order.
func (c *clusterEnv) topicPerShard() ([]string, error) {
	shards, err := benchkit.Shards(c.ctx, c.cc)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(shards))
	found := 0
	for k := 0; found < len(shards); k++ {
		if k == 10_000 {
			return nil, errors.New("no topic found for every shard")
		}
		t := fmt.Sprintf("bench.fo.r%d.%d", c.round, k)
		s, err := benchkit.ShardOf(c.ctx, c.cc, shards, []string{"{" + t + "}"})
		if err != nil {
			return nil, err
		}
		if out[s[0]] == "" {
			out[s[0]] = t
			found++
		}
	}
	return out, nil
}

// clusterRows are the table rows of the cluster cases.
func clusterRows(masters int) []row {
	cl := fmt.Sprintf("on %d masters (`ClusterClient`)", masters)
	st := "on a standalone master (`Client`)"
	gls := map[string]string{"16": "16 goroutines", "1": "1 goroutine"}
	modes := map[string]string{"plain": "", "sharded": " sharded Pub/Sub,"}
	raws := map[string]string{"plain": "raw `EVALSHA`", "sharded": "raw `EVALSHA` with `SPUBLISH`"}
	var out []row
	for _, g := range []string{"16", "1"} {
		gl := gls[g]
		for _, mode := range []string{"plain", "sharded"} {
			k, ml := mode+"."+g, modes[mode]
			out = append(out,
				row{fmt.Sprintf("`Publish`%s %s, %d topics, %s", ml, cl, clusterTopics, gl),
					"cl.cluster." + k, "cl.single." + k, fmt.Sprintf("`Publish`%s %s, %s", ml, st, gl), 0, false, "rate", false},
				row{fmt.Sprintf("%s %s, %d topics, %s", raws[mode], cl, clusterTopics, gl),
					"cl.raw.cluster." + k, "cl.raw.single." + k, fmt.Sprintf("%s %s, %s", raws[mode], st, gl), 0, false, "rate", false},
				row{fmt.Sprintf("`Publish`%s cluster ÷ standalone, %s", ml, gl),
					"cl.rel." + k, "cl.rel.raw." + k, fmt.Sprintf("%s cluster ÷ standalone (the cost of the cluster client)", raws[mode]), 0.8, false, "x", false})
		}
	}
	for _, g := range []string{"16", "1"} {
		for _, mode := range []string{"plain", "sharded"} {
			out = append(out, row{fmt.Sprintf("Redis CPU per event on the busiest of %d masters,%s `Publish` ×%s", masters, modes[mode], g),
				"cl.cluster." + mode + "." + g + ".cpu", "cl.single." + mode + "." + g + ".cpu", "the standalone master, the same", 1.1, true, "µs", false})
		}
	}
	for _, mode := range []string{"plain", "sharded"} {
		k, ml := mode+".16", modes[mode]
		out = append(out,
			row{fmt.Sprintf("Redis CPU per event on the busiest of %d masters,%s %s ×16", masters, ml, raws[mode]),
				"cl.raw.cluster." + k + ".cpu", "cl.raw.single." + k + ".cpu", "the standalone master, the same", 0, true, "µs", false},
			row{fmt.Sprintf("Redis CPU per event, busiest master ÷ standalone master,%s `Publish` ×16", ml),
				"cl.rel." + k + ".cpu", "cl.rel.raw." + k + ".cpu", fmt.Sprintf("the same for %s ×16", raws[mode]), 0, true, "x", false},
			row{fmt.Sprintf("Redis time per event in the publish script (INFO commandstats), busiest master,%s `Publish` ×16", ml),
				"cl.cluster." + k + ".eval", "cl.single." + k + ".eval", "the standalone master, the same", 0, true, "µs", false},
			row{fmt.Sprintf("Redis CPU per event, all %d cluster processes (replicas too),%s `Publish` ×16", 2*masters, ml),
				"cl.cluster." + k + ".cpuall", "cl.single." + k + ".cpuall", "standalone master and its replica, the same", 0, true, "µs", false})
	}
	return out
}

// write writes the per-master table and the failover lines.
func (c *clusterEnv) write(w io.Writer, all []metrics) {
	if c == nil {
		return
	}
	med := func(name string) float64 { return benchkit.MedianOf(all, name) }
	ratio := func(ours, base string) float64 { return benchkit.MedianRatio(all, ours, base) }
	if med("cl.cluster.plain.16") > 0 {
		fmt.Fprintf(w, "\n**Redis Cluster, per master** (%d masters with a replica each, slots split evenly, %d topics; `Publish` round-robin over the topics; medians over the rounds; CPU per event is the master's INFO CPU over the events of its slots, and its ratio to the standalone master's over all events of the same round):\n\n",
			c.cl.masters, clusterTopics)
		fmt.Fprintln(w, "| master (slots) | topics | `Publish` ×16 on it | CPU per event, ×16 | sharded ×16 | ×1 | sharded ×1 |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
		for i := range c.cl.masters {
			si := strconv.Itoa(i)
			lo, hi := i*clusterSlots/c.cl.masters, (i+1)*clusterSlots/c.cl.masters-1
			cell := func(mode, g string) string {
				name := "cl.cluster." + mode + "." + g + ".cpu." + si
				return fmt.Sprintf("%.0f µs, %.2f ×", med(name), ratio(name, "cl.single."+mode+"."+g+".cpu"))
			}
			fmt.Fprintf(w, "| %d (%d–%d) | %.0f | %.1f k/s | %s | %s | %s | %s |\n", i+1, lo, hi, med("cl.topics."+si),
				med("cl.cluster.plain.16.rate."+si)/1000, cell("plain", "16"), cell("sharded", "16"), cell("plain", "1"), cell("sharded", "1"))
		}
	}
	for i, mode := range []string{"plain", "sharded"} {
		fo := c.fo[i]
		if len(fo.catch) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n**Catch-up after a graceful failover, %s Pub/Sub** (`CLUSTER FAILOVER` on a replica, the %d shards in turn, while %s events/s flow round-robin to one topic per shard into a typed subscriber, both through `ClusterClient`; time from the command until the handler has delivered, in order, an event of that shard's topic published after the failover was seen complete: the replica says master, the old master says replica), %d failovers: p50 %s, p99 %s, max %s. The failover itself (command → complete): p50 %s, max %s; commands sent again after 6 s without a failover: %d. Publish errors %d; events published and not delivered %d, out of order %d, delivered twice %d.\n",
			mode, c.cl.masters, thousands(failoverRate), len(fo.catch), durPct(fo.catch, 0.5), durPct(fo.catch, 0.99), durPct(fo.catch, 1),
			durPct(fo.took, 0.5), durPct(fo.took, 1), fo.resent, fo.pubErrs, fo.lost, fo.disorder, fo.dupes)
	}
}

// thousands writes n with a space between thousands (2 000).
func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(" ")
		}
		b.WriteRune(r)
	}
	return b.String()
}
