package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

type statsOpts struct {
	watch    time.Duration
	watchSet bool // --watch was given
}

// topicStats is one topic in the output of stats.
type topicStats struct {
	Topic string `json:"topic"`
	Epoch string `json:"epoch"`
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
	// Subscribers is PUBSUB NUMSUB of the topic's channel.
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
	// whole server, not only of this namespace.
	PatternSubscriptions int64           `json:"pattern_subscriptions"`
	Consumers            []consumerStats `json:"consumers"`
	// Groups are the consumer groups with a topic matching the pattern;
	// durabus groups shows their members and partitions.
	Groups []groupSummary `json:"groups"`
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
		rep, err := collectStats(ctx, c.rdb, c.ns, pattern)
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

// collectStats reads the stats of the topics matching pattern.
func collectStats(ctx context.Context, rdb *redis.Client, ns, pattern string) (*statsReport, error) {
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
	sort.Slice(all, func(i, j int) bool { // by name, not by last publish
		a, _ := all[i].Member.(string)
		b, _ := all[j].Member.(string)
		return a < b
	})
	var names []string
	var scores []float64
	for _, z := range all {
		name, _ := z.Member.(string)
		if transport.Match(pattern, name) {
			names = append(names, name)
			scores = append(scores, z.Score)
		}
	}
	pcs := make([]cmds, len(names))
	pipe := rdb.Pipeline()
	for i, name := range names {
		ch := ns + ":{" + name + "}"
		logKey := ch + ":log"
		pcs[i] = cmds{
			meta:   pipe.HMGet(ctx, ch+":meta", "epoch", "seq"),
			xlen:   pipe.XLen(ctx, logKey),
			first:  pipe.XRangeN(ctx, logKey, "-", "+", 1),
			last:   pipe.XRevRangeN(ctx, logKey, "+", "-", 1),
			mem:    pipe.MemoryUsage(ctx, logKey),
			numsub: pipe.PubSubNumSub(ctx, ch),
		}
	}
	numpat := pipe.PubSubNumPat(ctx)
	if _, err := pipe.Exec(ctx); err != nil && ctx.Err() != nil {
		return nil, err
	}
	if err := numpat.Err(); err != nil {
		return nil, fmt.Errorf("PUBSUB NUMPAT: %w", err)
	}
	rep.PatternSubscriptions = numpat.Val()
	heads := map[string]transport.Position{}
	for i, name := range names {
		pc := pcs[i]
		ts := topicStats{Topic: name, MemoryBytes: -1}
		if err := pc.meta.Err(); err != nil {
			return nil, fmt.Errorf("topic %q: %w", name, err)
		}
		if v := pc.meta.Val(); len(v) == 2 {
			ts.Epoch, _ = v[0].(string)
			s, _ := v[1].(string)
			ts.Head, _ = strconv.ParseUint(s, 10, 64)
		}
		for _, c := range []redis.Cmder{pc.xlen, pc.first, pc.last, pc.numsub} {
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
		ts.Subscribers = pc.numsub.Val()[ns+":{"+name+"}"]
		if scores[i] > 0 {
			t := time.UnixMilli(int64(scores[i])).UTC()
			ts.LastPublish = &t
		}
		if ts.Epoch != "" {
			heads[name] = transport.Position{Epoch: ts.Epoch, Seq: ts.Head}
		}
		rep.Topics = append(rep.Topics, ts)
	}

	prefix := ns + ":consumer:"
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("scan %s*: %w", prefix, err)
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

func headOf(ctx context.Context, rdb *redis.Client, ns, topic string) (transport.Position, error) {
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
	fmt.Fprintf(w, "Redis %s, namespace %q, %s%s\n\n", addr, rep.Namespace, formatTime(rep.Time), every)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// The last cell of a row ends with the line, not with a tab: no
	// padding after it.
	fmt.Fprintln(tw, "TOPIC\tEPOCH\tHEAD\tBACKLOG\tOLDEST\tNEWEST\tSPAN\tMEMORY\tSUBS")
	if len(rep.Topics) == 0 {
		fmt.Fprintln(tw, "(no topics)")
	}
	for _, t := range rep.Topics {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", t.Topic, t.Epoch, t.Head, t.Backlog,
			optTime(t.Oldest), optTime(t.Newest), humanSpan(t.SpanSeconds), humanBytes(t.MemoryBytes), t.Subscribers)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPattern subscriptions on the server (PUBSUB NUMPAT): %d\n\n", rep.PatternSubscriptions)
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
