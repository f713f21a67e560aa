package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
)

// groupsReport is the output of groups: the consumer groups of a
// namespace at one time (Redis's clock).
type groupsReport struct {
	Namespace string        `json:"namespace"`
	Time      time.Time     `json:"time"`
	Groups    []groupReport `json:"groups"`
}

// groupReport is one consumer group of one subscription: the membership
// name "<group>/<key>" of transport.GroupStore, its live members and the
// topics (partitions) it shares.
type groupReport struct {
	// Group is the membership name, "<group>/<key>".
	Group string `json:"group"`
	// Name is the group name given to bus.WithGroup, Key the
	// subscription's topic or pattern.
	Name string `json:"name"`
	Key  string `json:"key"`
	// Members are the live members, by id, as their last heartbeat said.
	Members []transport.GroupMember `json:"members"`
	// Partitions are the topics the group shares: the partitions of a
	// partitioned topic, the topics a pattern matches, or the topic.
	Partitions []partitionReport `json:"partitions"`
	// Lag is the sum of the known lags; Unknown counts the partitions
	// whose lag is not known (no checkpoint, epoch changed).
	Lag     uint64 `json:"lag"`
	Unknown int    `json:"unknown"`
}

// partitionReport is one topic of a group: who owns it, the group's
// checkpoint and the topic's head.
type partitionReport struct {
	Topic string `json:"topic"`
	// Owners are the members whose last heartbeat names the topic: one,
	// or none between a release and the next claim; two only for the
	// moment of a handover.
	Owners []string `json:"owners"`
	// Consumer is the durable consumer of the topic, "<group>/<key>@<topic>".
	Consumer string `json:"consumer"`
	// Checkpoint is the group's saved position; absent when it has none.
	Checkpoint *transport.Position `json:"checkpoint,omitempty"`
	// Head is the topic's last position; absent when it has no log.
	Head *transport.Position `json:"head,omitempty"`
	// Lag is Head.Seq − Checkpoint.Seq in one epoch; null when unknown,
	// Note then says why.
	Lag *uint64 `json:"lag"`
	// AgeSeconds is how long the first event after the checkpoint has
	// waited (the report's time minus its publish time); 0 when caught up.
	AgeSeconds float64 `json:"age_seconds"`
	// Note is "epoch changed" (the checkpoint is of an older log), "no
	// checkpoint" or "no log".
	Note string `json:"note,omitempty"`
}

func init() {
	register(&command{
		name:    "groups",
		args:    "[PATTERN]",
		summary: "show consumer groups: members, partitions owned, lag",
		help: `Shows the consumer groups of the namespace (bus.WithGroup) whose names
match PATTERN (a glob over "<group>/<key>", key the subscription's topic or
pattern; default all): the live members of each (id, host, when it started,
its last heartbeat), and each partition the group shares (the partitions of
a partitioned topic, the topics of a pattern) with its owner, the group's
checkpoint, the topic's head, the lag (head seq − checkpoint seq; "epoch
changed" when the checkpoint is of an older log) and the age of the oldest
event not yet handled (0 when caught up). Times are Redis's clock.

--json prints one object.`,
		run: runGroups,
	})
}

func runGroups(ctx context.Context, e *env, _ any, args []string) error {
	if len(args) > 1 {
		return usagef("groups: want at most one PATTERN, got %d arguments", len(args))
	}
	pattern := "*"
	if len(args) == 1 {
		pattern = args[0]
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return usagef("groups: PATTERN %q: %v", pattern, err)
	}
	c, err := connect(ctx, e)
	if err != nil {
		return err
	}
	defer c.Close()
	rep, err := collectGroups(ctx, c, pattern)
	if err != nil {
		return err
	}
	if e.json {
		return writeJSONLine(e.stdout, rep)
	}
	return printGroups(e.stdout, rep, c.addr)
}

// collectGroups reads the groups whose membership names match the glob
// pattern, through the transport's GroupStore and the topics' heads and
// checkpoints.
func collectGroups(ctx context.Context, c *conn, pattern string) (*groupsReport, error) {
	now, err := c.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("TIME: %w", err)
	}
	rep := &groupsReport{Namespace: c.ns, Time: now.UTC().Truncate(time.Millisecond), Groups: []groupReport{}}
	names, err := c.tr.Groups(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if !matchGroup(pattern, name) {
			continue
		}
		g, err := collectGroup(ctx, c, name, rep.Time)
		if err != nil {
			return nil, err
		}
		rep.Groups = append(rep.Groups, g)
	}
	return rep, nil
}

// matchGroup reports whether the group name matches the glob pattern,
// where '*' and '?' also match the '/' between group and key.
func matchGroup(pattern, name string) bool {
	ok, err := path.Match(strings.ReplaceAll(pattern, "/", "\x00"), strings.ReplaceAll(name, "/", "\x00"))
	return err == nil && ok
}

func collectGroup(ctx context.Context, c *conn, name string, now time.Time) (groupReport, error) {
	g := groupReport{Group: name, Members: []transport.GroupMember{}, Partitions: []partitionReport{}}
	// The key is a topic or a pattern, which hold no '/'; the group name
	// may.
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		g.Name, g.Key = name[:i], name[i+1:]
	}
	members, err := c.tr.GroupMembers(ctx, name)
	if err != nil {
		return g, err
	}
	g.Members = members
	owners := map[string][]string{}
	for _, m := range members {
		for _, t := range m.Owns {
			owners[t] = append(owners[t], m.ID)
		}
	}
	topics, err := groupTopics(ctx, c, g.Key)
	if err != nil {
		return g, fmt.Errorf("group %q: %w", name, err)
	}
	known := map[string]bool{}
	for _, t := range topics {
		known[t] = true
	}
	var extra []string // owned, though not (or no longer) among the topics found
	for t := range owners {
		if !known[t] {
			extra = append(extra, t)
		}
	}
	sort.Strings(extra)
	for _, t := range append(topics, extra...) {
		p, err := collectPartition(ctx, c, name, t, now)
		if err != nil {
			return g, fmt.Errorf("group %q: topic %q: %w", name, t, err)
		}
		p.Owners = owners[t]
		if p.Owners == nil {
			p.Owners = []string{}
		}
		if p.Lag != nil {
			g.Lag += *p.Lag
		} else if p.Note != "no log" {
			g.Unknown++
		}
		g.Partitions = append(g.Partitions, p)
	}
	return g, nil
}

// groupTopics returns the topics a group of key shares, as a member works
// them out: the topics matching a pattern (without dead-letter topics,
// unless the pattern asks for them), the recorded partitions of a topic,
// or the topic itself.
func groupTopics(ctx context.Context, c *conn, key string) ([]string, error) {
	switch {
	case key == "":
		return nil, nil
	case transport.IsPattern(key):
		all, err := c.tr.Topics(ctx, key)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, t := range all {
			if strings.HasSuffix(key, bus.DeadSuffix) || !strings.HasSuffix(t, bus.DeadSuffix) {
				out = append(out, t)
			}
		}
		sort.Strings(out)
		return out, nil
	case transport.ValidateTopic(key) != nil:
		return nil, nil
	}
	n, err := c.tr.Partitions(ctx, key)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		return transport.PartitionTopics(key, n), nil
	}
	return []string{key}, nil
}

// collectPartition reads the group's checkpoint of topic, the topic's head
// and, when the group is behind, the first event after the checkpoint.
func collectPartition(ctx context.Context, c *conn, group, topic string, now time.Time) (partitionReport, error) {
	p := partitionReport{Topic: topic, Consumer: group + "@" + topic}
	cps, err := c.tr.LoadCheckpoints(ctx, p.Consumer)
	if err != nil {
		return p, err
	}
	if cp, ok := cps[topic]; ok {
		p.Checkpoint = &cp
	}
	head, err := c.tr.Head(ctx, topic)
	switch {
	case errors.Is(err, transport.ErrUnknownTopic):
		p.Note = "no log"
		return p, nil
	case err != nil:
		return p, err
	}
	p.Head = &head
	switch {
	case p.Checkpoint == nil:
		p.Note = "no checkpoint"
		return p, nil
	case p.Checkpoint.Epoch != head.Epoch:
		p.Note = "epoch changed"
		return p, nil
	}
	lag := uint64(0)
	if head.Seq > p.Checkpoint.Seq {
		lag = head.Seq - p.Checkpoint.Seq
	}
	p.Lag = &lag
	if lag == 0 {
		return p, nil
	}
	page, err := c.tr.Range(ctx, topic, *p.Checkpoint, 1)
	if err != nil && !errors.Is(err, transport.ErrUnknownTopic) {
		return p, err
	}
	if len(page.Events) > 0 {
		if t := streamIDTime(page.Events[0].Position.ID); t != nil && now.After(*t) {
			p.AgeSeconds = now.Sub(*t).Seconds()
		}
	}
	return p, nil
}

func printGroups(w io.Writer, rep *groupsReport, addr string) error {
	fmt.Fprintf(w, "Redis %s, namespace %q, %s\n", addr, rep.Namespace, formatTime(rep.Time))
	if len(rep.Groups) == 0 {
		_, err := fmt.Fprintln(w, "\nConsumer groups: none")
		return err
	}
	for _, g := range rep.Groups {
		fmt.Fprintf(w, "\nGroup %s: %s, %s, lag %s\n", g.Group, plural(len(g.Members), "member"),
			plural(len(g.Partitions), "partition"), lagText(g.Lag, g.Unknown))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  MEMBER\tHOST\tSTARTED\tLAST HEARTBEAT\tOWNS")
		if len(g.Members) == 0 {
			fmt.Fprintln(tw, "  (no live members)")
		}
		for _, m := range g.Members {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s (%s ago)\t%d\n", m.ID, m.Host, formatTime(m.Started),
				formatTime(m.Seen), humanAge(rep.Time.Sub(m.Seen).Seconds()), len(m.Owns))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PARTITION\tOWNER\tCHECKPOINT\tHEAD\tLAG\tAGE")
		for _, p := range g.Partitions {
			owner := "-"
			if len(p.Owners) > 0 {
				owner = strings.Join(p.Owners, ",")
			}
			cp, head := "-", "-"
			if p.Checkpoint != nil {
				cp = strconv.FormatUint(p.Checkpoint.Seq, 10)
			}
			if p.Head != nil {
				head = strconv.FormatUint(p.Head.Seq, 10)
			}
			lag := p.Note
			if p.Lag != nil {
				lag = strconv.FormatUint(*p.Lag, 10)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.Topic, owner, cp, head, lag, humanAge(p.AgeSeconds))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// lagText is a group's total lag for humans: "12", or "12 (+2 unknown)"
// when the lag of 2 partitions is not known.
func lagText(lag uint64, unknown int) string {
	s := strconv.FormatUint(lag, 10)
	if unknown > 0 {
		s += fmt.Sprintf(" (+%d unknown)", unknown)
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// humanAge is a duration in seconds, rounded for reading: 0s, 850ms, 3.2s,
// 4m10s.
func humanAge(s float64) string {
	if s <= 0 {
		return "0s"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
