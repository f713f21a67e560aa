package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/hashslot"
	"github.com/durabus/durabus/transport"
)

type statsOpts struct {
	watch    time.Duration
	watchSet bool // --watch was given
}

// topicStats is one topic in the output of stats.
type topicStats struct {
	Topic string `json:"topic"`
	// Slot and Master are there on a Redis Cluster only: the hash slot of
	// the topic's keys and channel (of its hash tag {T}), and the address
	// of the master that serves it (CLUSTER SHARDS), "" when none does.
	Slot   *int   `json:"slot,omitempty"`
	Master string `json:"master,omitempty"`
	Epoch  string `json:"epoch"`
	// Head is the last seq handed out.
	Head uint64 `json:"head"`
	// Backlog is the number of entries in the log (XLEN).
	Backlog int64 `json:"backlog"`
	// Oldest and Newest are the times of the first and last log entries
	// (from their stream ids), absent when the log is empty.
	Oldest *time.Time `json:"oldest,omitempty"`
	Newest *time.Time `json:"newest,omitempty"`
	// SpanSeconds is Newest − Oldest.
	SpanSeconds float64 `json:"span_seconds"`
	// MemoryBytes is MEMORY USAGE of the log; -1 when Redis refused it.
	MemoryBytes int64 `json:"memory_bytes"`
	// Subscribers is PUBSUB NUMSUB of the topic's channel; on a cluster,
	// NUMSUB plus SHARDNUMSUB summed over every node.
	Subscribers int64 `json:"subscribers"`
	// LastPublish is the topic's score in ns:topics.
	LastPublish *time.Time `json:"last_publish,omitempty"`
}

// consumerStats is one durable consumer's checkpoint on one topic.
type consumerStats struct {
	Consumer string `json:"consumer"`
	Topic    string `json:"topic"`
	Epoch    string `json:"epoch"`
	Seq      uint64 `json:"seq"`
	StreamID string `json:"streamid"`
	// Lag is the topic's head seq minus the checkpoint's seq; null when
	// unknown (the topic's log is gone or in another epoch).
	Lag *uint64 `json:"lag"`
}

type statsReport struct {
	Namespace string       `json:"namespace"`
	Time      time.Time    `json:"time"`
	Topics    []topicStats `json:"topics"`
	// PatternSubscriptions is PUBSUB NUMPAT: pattern subscriptions of the
	// whole server (on a cluster: summed over its nodes), not only of this
	// namespace.
	PatternSubscriptions int64 `json:"pattern_subscriptions"`
	// Masters are the masters of a Redis Cluster, in the order of their
	// lowest slot; absent on a standalone Redis.
	Masters   []masterStats   `json:"masters,omitempty"`
	Consumers []consumerStats `json:"consumers"`
	// Groups are the consumer groups with a topic matching the pattern;
	// durabus groups shows their members and partitions.
	Groups []groupSummary `json:"groups"`
}

// masterStats is one master of a Redis Cluster in the output of stats.
type masterStats struct {
	Addr string `json:"addr"`
	// Slots is the number of hash slots it serves.
	Slots int `json:"slots"`
	// Topics counts the topics matching the pattern whose slot it serves,
	// and Backlog their log entries.
	Topics  int   `json:"topics"`
	Backlog int64 `json:"backlog"`
}

// groupSummary is one consumer group in the output of stats.
type groupSummary struct {
	Group   string `json:"group"`
	Members int    `json:"members"`
	// Partitions counts the group's topics matching the pattern, and Lag
	// sums their known lags; Unknown counts those whose lag is not known.
	Partitions int    `json:"partitions"`
	Lag        uint64 `json:"lag"`
	Unknown    int    `json:"unknown"`
}

func init() {
	register(&command{
		name:    "stats",
		args:    "[PATTERN]",
		summary: "show topics, backlogs, subscribers and consumer lag",
		help: `Shows the topics matching PATTERN (a glob; default all) of the namespace:
the epoch and head seq, the backlog length (XLEN of the log) and the time
span of its entries, its memory (MEMORY USAGE), the live subscribers of the
topic's channel (PUBSUB NUMSUB); the pattern subscriptions of the server
(PUBSUB NUMPAT); every durable consumer (the keys ns:consumer:*) with its
checkpoint and lag per topic; and each consumer group with a topic matching
PATTERN, with its live members, its partitions and their total lag (durabus
groups shows the details).

On a node of a Redis Cluster (found with HELLO) it reads the whole cluster:
the topics are also found by SCAN on every master (their keys ns:{T}:meta),
each topic shows its hash slot and the master serving it (CLUSTER SHARDS),
subscribers are counted on every node (PUBSUB NUMSUB and SHARDNUMSUB), and
a table shows each master's slots, topics and backlog.

--watch 2s refreshes every 2 s until Ctrl-C. --json prints one object per
refresh.`,
		flags: func(fs *flag.FlagSet) any {
			o := &statsOpts{}
			fs.Func("watch", "refresh every `INTERVAL`, at least 100ms, e.g. 2s (default: print once)", func(s string) error {
				d, err := time.ParseDuration(s)
				if err != nil {
					return errors.New("want a duration such as 2s")
				}
				o.watch, o.watchSet = d, true
				return nil
			})
			return o
		},
		run: runStats,
	})
}

func runStats(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*statsOpts)
	if len(args) > 1 {
		return usagef("stats: want at most one PATTERN, got %d arguments", len(args))
	}
	pattern := "*"
	if len(args) == 1 {
		pattern = args[0]
	}
	if err := transport.ValidatePattern(pattern); err != nil {
		return usagef("stats: %v", err)
	}
	if o.watchSet && o.watch < 100*time.Millisecond {
		return usagef("stats: --watch %v: want at least 100ms", o.watch)
	}
	c, err := connect(ctx, e)
	if err != nil {
		return err
	}
	defer c.Close()
	clear := false
	if f, ok := e.stdout.(*os.File); ok && o.watch > 0 && !e.json && isTerminal(f) {
		clear = true
	}
	for {
		rep, err := collectStats(ctx, c, pattern)
		if err == nil {
			rep.Groups, err = statsGroups(ctx, c, pattern)
		}
		if err != nil {
			if ctx.Err() != nil && o.watch > 0 {
				return nil
			}
			return err
		}
		if e.json {
			err = writeJSONLine(e.stdout, rep)
		} else {
			if clear {
				fmt.Fprint(e.stdout, "\033[H\033[2J")
			}
			err = printStats(e.stdout, rep, c.addr, o.watch)
		}
		if err != nil || o.watch == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.watch):
		}
	}
}

// collectStats reads the stats of the topics matching pattern. On a Redis
// Cluster it also finds the topics on every master (SCAN for their meta
// hashes), says which master serves each, and counts subscribers on every
// node.
func collectStats(ctx context.Context, c *conn, pattern string) (*statsReport, error) {
	rdb, ns := c.client(), c.ns
	// Every time in the report has the precision of stream ids: ms.
	rep := &statsReport{Namespace: ns, Time: time.Now().UTC().Truncate(time.Millisecond), Topics: []topicStats{}, Consumers: []consumerStats{}}
	all, err := rdb.ZRangeWithScores(ctx, ns+":topics", 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read %s:topics: %w", ns, err)
	}
	type cmds struct {
		meta   *redis.SliceCmd
		xlen   *redis.IntCmd
		first  *redis.XMessageSliceCmd
		last   *redis.XMessageSliceCmd
		mem    *redis.IntCmd
		numsub *redis.MapStringIntCmd
	}
	scores := map[string]float64{}
	for _, z := range all {
		if name, _ := z.Member.(string); transport.Match(pattern, name) {
			scores[name] = z.Score
		}
	}
	var slots *slotMap
	if c.cluster != nil {
		// ns:topics is written beside the publish script, in its own slot:
		// every topic's meta hash is the authority.
		metas, err := scanMasters(ctx, c.cluster, ns+":{*}:meta")
		if err != nil {
			return nil, err
		}
		for _, k := range metas {
			if t, ok := topicOfMeta(ns, k); ok && transport.Match(pattern, t) {
				if _, seen := scores[t]; !seen {
					scores[t] = 0
				}
			}
		}
		if slots, err = readSlotMap(ctx, c.cluster); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(scores))
	for name := range scores {
		names = append(names, name)
	}
	sort.Strings(names) // by name, not by last publish
	pcs := make([]cmds, len(names))
	pipe := rdb.Pipeline()
	for i, name := range names {
		ch := ns + ":{" + name + "}"
		logKey := ch + ":log"
		pcs[i] = cmds{
			meta:  pipe.HMGet(ctx, ch+":meta", "epoch", "seq"),
			xlen:  pipe.XLen(ctx, logKey),
			first: pipe.XRangeN(ctx, logKey, "-", "+", 1),
			last:  pipe.XRevRangeN(ctx, logKey, "+", "-", 1),
			mem:   pipe.MemoryUsage(ctx, logKey),
		}
		if c.cluster == nil {
			pcs[i].numsub = pipe.PubSubNumSub(ctx, ch)
		}
	}
	var numpat *redis.IntCmd
	if c.cluster == nil {
		numpat = pipe.PubSubNumPat(ctx)
	}
	if _, err := pipe.Exec(ctx); err != nil && ctx.Err() != nil {
		return nil, err
	}
	subs := map[string]int64{}
	if c.cluster == nil {
		if err := numpat.Err(); err != nil {
			return nil, fmt.Errorf("PUBSUB NUMPAT: %w", err)
		}
		rep.PatternSubscriptions = numpat.Val()
	} else {
		chans := make([]string, len(names))
		for i, name := range names {
			chans[i] = ns + ":{" + name + "}"
		}
		if subs, rep.PatternSubscriptions, err = clusterSubscribers(ctx, c.cluster, chans); err != nil {
			return nil, err
		}
	}
	heads := map[string]transport.Position{}
	for i, name := range names {
		pc := pcs[i]
		ch := ns + ":{" + name + "}"
		ts := topicStats{Topic: name, MemoryBytes: -1}
		if err := pc.meta.Err(); err != nil {
			return nil, fmt.Errorf("topic %q: %w", name, err)
		}
		if v := pc.meta.Val(); len(v) == 2 {
			ts.Epoch, _ = v[0].(string)
			s, _ := v[1].(string)
			ts.Head, _ = strconv.ParseUint(s, 10, 64)
		}
		cs := []redis.Cmder{pc.xlen, pc.first, pc.last}
		if pc.numsub != nil {
			cs = append(cs, pc.numsub)
		}
		for _, c := range cs {
			if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("topic %q: %s: %w", name, strings.ToUpper(c.Name()), err)
			}
		}
		ts.Backlog = pc.xlen.Val()
		if f := pc.first.Val(); len(f) > 0 {
			ts.Oldest = streamIDTime(f[0].ID)
		}
		if l := pc.last.Val(); len(l) > 0 {
			ts.Newest = streamIDTime(l[0].ID)
		}
		if ts.Oldest != nil && ts.Newest != nil {
			ts.SpanSeconds = ts.Newest.Sub(*ts.Oldest).Seconds()
		}
		if pc.mem.Err() == nil {
			ts.MemoryBytes = pc.mem.Val()
		}
		if pc.numsub != nil {
			ts.Subscribers = pc.numsub.Val()[ch]
		} else {
			ts.Subscribers = subs[ch]
		}
		if slots != nil {
			slot := hashslot.Of(ch)
			ts.Slot = &slot
			if m := slots.master(slot); m != nil {
				ts.Master = m.Addr
				m.Topics++
				m.Backlog += ts.Backlog
			}
		}
		if scores[name] > 0 {
			t := time.UnixMilli(int64(scores[name])).UTC()
			ts.LastPublish = &t
		}
		if ts.Epoch != "" {
			heads[name] = transport.Position{Epoch: ts.Epoch, Seq: ts.Head}
		}
		rep.Topics = append(rep.Topics, ts)
	}
	if slots != nil {
		rep.Masters = slots.masters()
	}

	prefix := ns + ":consumer:"
	var keys []string
	if c.cluster != nil {
		if keys, err = scanMasters(ctx, c.cluster, prefix+"*"); err != nil {
			return nil, err
		}
	} else {
		iter := c.rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return nil, fmt.Errorf("scan %s*: %w", prefix, err)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		cps, err := rdb.HGetAll(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		topics := make([]string, 0, len(cps))
		for t := range cps {
			if transport.Match(pattern, t) {
				topics = append(topics, t)
			}
		}
		sort.Strings(topics)
		for _, t := range topics {
			p, err := transport.ParsePosition(cps[t])
			if err != nil {
				continue
			}
			cs := consumerStats{Consumer: strings.TrimPrefix(k, prefix), Topic: t, Epoch: p.Epoch, Seq: p.Seq, StreamID: p.ID}
			if h, ok := heads[t]; ok && h.Epoch == p.Epoch {
				lag := uint64(0)
				if h.Seq > p.Seq {
					lag = h.Seq - p.Seq
				}
				cs.Lag = &lag
			} else if !ok {
				// A topic outside the ns:topics listing (or a dead-letter
				// topic): read its head directly.
				if h, err := headOf(ctx, rdb, ns, t); err == nil && h.Epoch == p.Epoch {
					lag := uint64(0)
					if h.Seq > p.Seq {
						lag = h.Seq - p.Seq
					}
					cs.Lag = &lag
				}
			}
			rep.Consumers = append(rep.Consumers, cs)
		}
	}
	return rep, nil
}

// statsGroups summarises the consumer groups with a topic matching
// pattern (all groups for "*").
func statsGroups(ctx context.Context, c *conn, pattern string) ([]groupSummary, error) {
	rep, err := collectGroups(ctx, c, "*")
	if err != nil {
		return nil, err
	}
	out := []groupSummary{}
	for _, g := range rep.Groups {
		s := groupSummary{Group: g.Group, Members: len(g.Members)}
		for _, p := range g.Partitions {
			if !transport.Match(pattern, p.Topic) {
				continue
			}
			s.Partitions++
			if p.Lag != nil {
				s.Lag += *p.Lag
			} else if p.Note != "no log" {
				s.Unknown++
			}
		}
		if s.Partitions > 0 || pattern == "*" {
			out = append(out, s)
		}
	}
	return out, nil
}

// scanMasters returns the keys matching the glob match on every master of
// cc (SCAN on each: a ClusterClient's SCAN reads one node), sorted, each
// once (a key of a slot being migrated may be on two).
func scanMasters(ctx context.Context, cc *redis.ClusterClient, match string) ([]string, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		var keys []string
		iter := node.Scan(ctx, 0, match, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s on %s: %w", match, node.Options().Addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			seen[k] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

// topicOfMeta returns T of a key ns:{T}:meta.
func topicOfMeta(ns, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, ns+":{")
	if !ok {
		return "", false
	}
	t, ok := strings.CutSuffix(rest, "}:meta")
	if !ok || transport.ValidateTopic(t) != nil {
		return "", false
	}
	return t, true
}

// clusterSubscribers counts the subscribers of each channel in chans and
// the pattern subscriptions over every node of cc, masters and replicas: a
// plain subscriber may be connected to any node (PUBLISH reaches them
// all), a sharded one to any node of its slot's shard, and PUBSUB counts
// the clients of the node it runs on.
func clusterSubscribers(ctx context.Context, cc *redis.ClusterClient, chans []string) (map[string]int64, int64, error) {
	const chunk = 500 // channels per PUBSUB call
	var mu sync.Mutex
	subs := make(map[string]int64, len(chans))
	var numpat int64
	err := cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		pipe := node.Pipeline()
		var counts []*redis.MapStringIntCmd
		for lo := 0; lo < len(chans); lo += chunk {
			part := chans[lo:min(lo+chunk, len(chans))]
			counts = append(counts, pipe.PubSubNumSub(ctx, part...), pipe.PubSubShardNumSub(ctx, part...))
		}
		np := pipe.PubSubNumPat(ctx)
		if cmds, err := pipe.Exec(ctx); err != nil {
			for _, c := range cmds { // name the refused one: PUBSUB SHARDNUMSUB needs its own ACL right
				if c.Err() != nil {
					return fmt.Errorf("PUBSUB %s on %s: %w", strings.ToUpper(fmt.Sprint(c.Args()[1])), node.Options().Addr, c.Err())
				}
			}
			return fmt.Errorf("PUBSUB on %s: %w", node.Options().Addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range counts {
			for ch, n := range c.Val() {
				subs[ch] += n
			}
		}
		numpat += np.Val()
		return nil
	})
	return subs, numpat, err
}

// slotMap is which master serves which hash slots.
type slotMap struct {
	ranges []slotRange
	byAddr map[string]*masterStats
	first  map[string]int // each master's lowest slot
}

type slotRange struct {
	start, end int
	master     *masterStats
}

// readSlotMap reads the slot map with CLUSTER SHARDS, or CLUSTER SLOTS on
// Redis 6.2, which has no SHARDS.
func readSlotMap(ctx context.Context, cc *redis.ClusterClient) (*slotMap, error) {
	m := &slotMap{byAddr: map[string]*masterStats{}, first: map[string]int{}}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown subcommand") {
		//lint:ignore SA1019 the fallback for Redis 6.2, before CLUSTER SHARDS
		slots, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
		}
		for _, s := range slots {
			if len(s.Nodes) > 0 { // the master comes first
				m.add(s.Nodes[0].Addr, s.Start, s.End)
			}
		}
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SHARDS: %w", err)
	}
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role != "master" {
				continue
			}
			host := n.Endpoint
			if host == "" || host == "?" {
				host = n.IP
			}
			addr := net.JoinHostPort(host, strconv.FormatInt(n.Port, 10))
			if len(sh.Slots) == 0 { // a master added, not yet given slots
				m.add(addr, hashslot.Count, hashslot.Count-1)
			}
			for _, r := range sh.Slots {
				m.add(addr, int(r.Start), int(r.End))
			}
		}
	}
	return m, nil
}

// add records that addr serves the slots start to end (none when end <
// start).
func (m *slotMap) add(addr string, start, end int) {
	ms := m.byAddr[addr]
	if ms == nil {
		ms = &masterStats{Addr: addr}
		m.byAddr[addr] = ms
		m.first[addr] = start
	}
	if end < start {
		return
	}
	m.first[addr] = min(m.first[addr], start)
	ms.Slots += end - start + 1
	m.ranges = append(m.ranges, slotRange{start: start, end: end, master: ms})
}

// master is the master serving slot; nil when none does.
func (m *slotMap) master(slot int) *masterStats {
	for _, r := range m.ranges {
		if slot >= r.start && slot <= r.end {
			return r.master
		}
	}
	return nil
}

// masters returns the masters in the order of their lowest slot.
func (m *slotMap) masters() []masterStats {
	out := make([]masterStats, 0, len(m.byAddr))
	for _, ms := range m.byAddr {
		out = append(out, *ms)
	}
	sort.Slice(out, func(i, j int) bool { return m.first[out[i].Addr] < m.first[out[j].Addr] })
	return out
}

func headOf(ctx context.Context, rdb redis.Cmdable, ns, topic string) (transport.Position, error) {
	v, err := rdb.HMGet(ctx, ns+":{"+topic+"}:meta", "epoch", "seq").Result()
	if err != nil {
		return transport.Position{}, err
	}
	epoch, _ := v[0].(string)
	s, _ := v[1].(string)
	seq, _ := strconv.ParseUint(s, 10, 64)
	return transport.Position{Epoch: epoch, Seq: seq}, nil
}

// streamIDTime is the time in a stream id's millisecond part.
func streamIDTime(id string) *time.Time {
	sid, ok := transport.ParseStreamID(id)
	if !ok {
		return nil
	}
	t := sid.Time().UTC()
	return &t
}

func printStats(w io.Writer, rep *statsReport, addr string, watch time.Duration) error {
	every := ""
	if watch > 0 {
		every = fmt.Sprintf(", every %v", watch)
	}
	cluster := len(rep.Masters) > 0
	if cluster {
		fmt.Fprintf(w, "Redis Cluster of %d masters (through %s), namespace %q, %s%s\n\n", len(rep.Masters), addr, rep.Namespace, formatTime(rep.Time), every)
	} else {
		fmt.Fprintf(w, "Redis %s, namespace %q, %s%s\n\n", addr, rep.Namespace, formatTime(rep.Time), every)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// The last cell of a row ends with the line, not with a tab: no
	// padding after it.
	head := "TOPIC\tEPOCH\tHEAD\tBACKLOG\tOLDEST\tNEWEST\tSPAN\tMEMORY\tSUBS"
	if cluster {
		head += "\tSLOT\tMASTER"
	}
	fmt.Fprintln(tw, head)
	if len(rep.Topics) == 0 {
		fmt.Fprintln(tw, "(no topics)")
	}
	for _, t := range rep.Topics {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d", t.Topic, t.Epoch, t.Head, t.Backlog,
			optTime(t.Oldest), optTime(t.Newest), humanSpan(t.SpanSeconds), humanBytes(t.MemoryBytes), t.Subscribers)
		if cluster {
			slot, master := "-", "-"
			if t.Slot != nil {
				slot = strconv.Itoa(*t.Slot)
			}
			if t.Master != "" {
				master = t.Master
			}
			fmt.Fprintf(tw, "\t%s\t%s", slot, master)
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cluster {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MASTER\tSLOTS\tTOPICS\tBACKLOG")
		for _, m := range rep.Masters {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", m.Addr, m.Slots, m.Topics, m.Backlog)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nPattern subscriptions on the cluster's nodes (PUBSUB NUMPAT, summed): %d\n\n", rep.PatternSubscriptions)
	} else {
		fmt.Fprintf(w, "\nPattern subscriptions on the server (PUBSUB NUMPAT): %d\n\n", rep.PatternSubscriptions)
	}
	if len(rep.Consumers) == 0 {
		fmt.Fprintln(w, "Durable consumers: none")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSUMER\tTOPIC\tCHECKPOINT\tLAG")
		for _, c := range rep.Consumers {
			lag := "?"
			if c.Lag != nil {
				lag = strconv.FormatUint(*c.Lag, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", c.Consumer, c.Topic, c.Seq, lag)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.Groups) == 0 {
		_, err := fmt.Fprintln(w, "\nConsumer groups: none")
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tMEMBERS\tPARTITIONS\tLAG")
	for _, g := range rep.Groups {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", g.Group, g.Members, g.Partitions, lagText(g.Lag, g.Unknown))
	}
	return tw.Flush()
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return formatTime(*t)
}

func humanSpan(s float64) string {
	if s <= 0 {
		return "0s"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func humanBytes(n int64) string {
	switch {
	case n < 0:
		return "-"
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1024*1024))
}
