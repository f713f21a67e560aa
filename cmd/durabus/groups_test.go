package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// groupOrder is the event of the groups test; Key is its partition key.
type groupOrder struct {
	Key string `json:"key"`
}

func (groupOrder) EventType() string { return "orders" }

// Two members of group billing share the 4 partitions of orders; the
// handler of key "stuck" blocks, so that its partition lags by exactly the
// 3 events of that key while the others catch up. groups (and the groups
// section of stats) then show both members, every partition once with its
// owner, lag 3 and an age on the stuck partition, 0 elsewhere.
func TestGroupsShowsMembersPartitionsAndLag(t *testing.T) {
	t.Parallel()
	const n, group = 4, "billing/orders"
	srv := redistest.Start(t)
	u := redisURL(srv)
	ctx := context.Background()

	release := make(chan struct{})
	member := func() *redistransport.Transport {
		tr, err := redistransport.New(srv.Client(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		b, err := bus.New(tr, bus.WithPartitions("orders", n), bus.WithGroup("billing"), bus.WithLogger(slog.New(slog.DiscardHandler)),
			bus.WithFollowerOptions(replay.WithCheckpointEvery(1, 10*time.Millisecond), replay.WithHeadCheck(50*time.Millisecond)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Subscribe(b, func(ctx context.Context, e *groupOrder) error {
			if e.Key == "stuck" {
				select {
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		t.Cleanup(func() {
			b.Close()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := b.Ready(rctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}
		return tr
	}
	tr := member()
	member()
	t.Cleanup(func() { close(release) }) // runs before the buses close

	var members []transport.GroupMember
	waitFor(t, "both members to own partitions, each partition one owner", func() bool {
		ms, err := tr.GroupMembers(ctx, group)
		if err != nil || len(ms) != 2 {
			return false
		}
		owner := map[string]int{}
		for _, m := range ms {
			if len(m.Owns) == 0 {
				return false
			}
			for _, p := range m.Owns {
				owner[p]++
			}
		}
		for _, p := range transport.PartitionTopics("orders", n) {
			if owner[p] != 1 {
				return false
			}
		}
		members = ms
		return true
	})

	pub, err := bus.New(tr, bus.WithPartitions("orders", n))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		k := fmt.Sprintf("k%d", i)
		if _, err := pub.Publish(ctx, groupOrder{Key: k}, bus.WithKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := pub.Publish(ctx, groupOrder{Key: "stuck"}, bus.WithKey("stuck")); err != nil {
			t.Fatal(err)
		}
	}
	stuck := transport.PartitionTopic("orders", transport.PartitionOf("stuck", n))

	var rep groupsReport
	defer func() {
		if t.Failed() {
			b, _ := json.MarshalIndent(rep, "", "  ")
			t.Logf("last report: %s", b)
		}
	}()
	waitFor(t, "groups to report lag 3 on "+stuck+" and 0 on the others", func() bool {
		rep = groupsReport{}
		if err := json.Unmarshal([]byte(ok(t, "", "--redis", u, "--json", "groups")), &rep); err != nil || len(rep.Groups) != 1 {
			return false
		}
		for _, p := range rep.Groups[0].Partitions {
			want := uint64(0)
			if p.Topic == stuck {
				want = 3
			}
			if p.Lag == nil || *p.Lag != want {
				return false
			}
		}
		return true
	})
	g := rep.Groups[0]
	if g.Group != group || g.Name != "billing" || g.Key != "orders" || g.Lag != 3 || g.Unknown != 0 || len(g.Members) != 2 {
		t.Errorf("groups --json: %+v", g)
	}
	if len(g.Partitions) != n {
		t.Fatalf("groups --json has %d partitions, want %d: %+v", len(g.Partitions), n, g.Partitions)
	}
	for i, p := range g.Partitions {
		if p.Topic != transport.PartitionTopic("orders", i) || len(p.Owners) != 1 || p.Consumer != group+"@"+p.Topic || p.Checkpoint == nil || p.Head == nil {
			t.Errorf("partition %d: %+v", i, p)
		}
		if (p.Topic == stuck) != (p.AgeSeconds > 0) {
			t.Errorf("partition %s: age %vs, want > 0 only on the stuck partition", p.Topic, p.AgeSeconds)
		}
	}

	human := ok(t, "", "--redis", u, "groups")
	for _, m := range members {
		if !strings.Contains(human, m.ID) {
			t.Errorf("groups does not name member %s:\n%s", m.ID, human)
		}
	}
	if !strings.Contains(human, "Group billing/orders: 2 members, 4 partitions, lag 3\n") {
		t.Errorf("groups lacks the group's summary line:\n%s", human)
	}
	rows := map[string]int{}
	for _, line := range strings.Split(human, "\n") {
		if strings.TrimRight(line, " ") != line {
			t.Errorf("groups line with trailing spaces: %q", line)
		}
		if f := strings.Fields(line); len(f) == 6 && strings.HasPrefix(f[0], "orders:p") {
			rows[f[0]]++
			if lag := f[4]; (f[0] == stuck) != (lag == "3") || (f[0] != stuck && lag != "0") {
				t.Errorf("groups row %q: lag %s", line, lag)
			}
		}
	}
	for _, p := range transport.PartitionTopics("orders", n) {
		if rows[p] != 1 {
			t.Errorf("groups shows partition %s in %d rows, want 1:\n%s", p, rows[p], human)
		}
	}
	var st statsReport
	if err := json.Unmarshal([]byte(ok(t, "", "--redis", u, "--json", "stats")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 1 || st.Groups[0] != (groupSummary{Group: group, Members: 2, Partitions: n, Lag: 3}) {
		t.Errorf("stats --json groups: %+v", st.Groups)
	}
	if out := ok(t, "", "--redis", u, "stats", stuck); !regexp.MustCompile(`\nGROUP +MEMBERS +PARTITIONS +LAG\nbilling/orders +2 +1 +3\n`).MatchString(out) {
		t.Errorf("stats %s lacks the group's line with 1 partition and lag 3:\n%s", stuck, out)
	}
	if out := ok(t, "", "--redis", u, "groups", "other/*"); !strings.Contains(out, "Consumer groups: none") {
		t.Errorf("groups other/* printed:\n%s", out)
	}
}
