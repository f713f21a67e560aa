package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/hashslot"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// On a Redis Cluster, stats reached through any one node shows every
// topic of every master, each with its slot and the master that holds its
// keys, counts plain, sharded and pattern subscribers on every node, finds
// consumers on every master and sums each master's topics and backlog;
// also with the documented CLI user plus the documented cluster rules.
func TestStatsOnAClusterShowsEveryTopicWithItsMaster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	cc := cl.Client(t)
	ctx := context.Background()
	nodes := make([]*redis.Client, len(cl.Addrs()))
	for i, a := range cl.Addrs() {
		nodes[i] = redis.NewClient(&redis.Options{Addr: a})
		defer nodes[i].Close()
	}

	// Slots: orders 105, returns 658, prices 3628, emails 3728, stock
	// 3902 (node 0); refunds 7042, shipments 8069, payments 8507, carts
	// 9321 (node 1); reviews 11676, invoices 13262, users 14124 (node 2).
	topics := []string{"carts", "emails", "invoices", "orders", "payments", "prices", "refunds", "returns", "reviews", "shipments", "stock", "users"}
	tr, err := redistransport.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b, err := bus.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	heads := map[string]transport.Position{}
	for i, topic := range topics {
		for range i + 1 { // topic i holds i+1 events
			e, err := envelope.NewRaw("x", []byte(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			if heads[topic], err = b.PublishEnvelope(ctx, topic, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The CLI publishes through any node, too (before the cluster client,
	// a topic of another master's slot failed with MOVED).
	u := "redis://" + cl.Addrs()[2]
	ok(t, "", "--redis", u, "publish", "orders", "--type", "x", "--data", "{}")
	heads["orders"] = transport.Position{Epoch: heads["orders"].Epoch, Seq: heads["orders"].Seq + 1}
	// A topic missing from ns:topics is still found on its master.
	if err := cc.ZRem(ctx, "durabus:topics", "stock").Err(); err != nil {
		t.Fatal(err)
	}
	// Subscribers: plain on orders and users, sharded on users, a pattern.
	plain, err := tr.Subscribe(ctx, "orders", "users")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	shTr, err := redistransport.New(cc, redistransport.WithShardedPubSub(true))
	if err != nil {
		t.Fatal(err)
	}
	defer shTr.Close()
	sharded, err := shTr.Subscribe(ctx, "users")
	if err != nil {
		t.Fatal(err)
	}
	defer sharded.Close()
	pat, err := tr.SubscribePattern(ctx, "pay*")
	if err != nil {
		t.Fatal(err)
	}
	defer pat.Close()
	// Consumers on two masters: billing (its hash's slot) on invoices,
	// mailer on emails, each 1 event behind.
	for name, topic := range map[string]string{"billing": "invoices", "mailer": "emails"} {
		h := heads[topic]
		if err := tr.SaveCheckpoints(ctx, name, map[string]transport.Position{topic: {Epoch: h.Epoch, Seq: h.Seq - 1, ID: "0-1"}}); err != nil {
			t.Fatal(err)
		}
	}

	// stats computes slots itself, as CLUSTER KEYSLOT does.
	for _, k := range []string{"", "123456789", "somekey", "foo{hash_tag}", "foo{}{bar}", "foo{{bar}}zap", "{user1000}.following", "durabus:{orders}", "durabus:{order.placed:p7}:log", "durabus:consumer:billing"} {
		if want := int(cc.ClusterKeySlot(ctx, k).Val()); hashslot.Of(k) != want {
			t.Errorf("hashslot.Of(%q) = %d, CLUSTER KEYSLOT says %d", k, hashslot.Of(k), want)
		}
	}
	// Where each topic's keys really are: the node that has its log.
	holder := map[string]string{}
	for _, topic := range topics {
		for i, n := range nodes {
			if n.Exists(ctx, "durabus:{"+topic+"}:log").Val() == 1 {
				holder[topic] = cl.Addrs()[i]
			}
		}
	}

	check := func(who, url string) {
		t.Helper()
		var rep statsReport
		if err := json.Unmarshal([]byte(ok(t, "", "--redis", url, "--json", "stats")), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Topics) != len(topics) {
			t.Fatalf("%s: stats shows %d topics, want %d: %+v", who, len(rep.Topics), len(topics), rep.Topics)
		}
		perMaster := map[string]int{}
		for i, ts := range rep.Topics {
			want := topics[i]
			slot := int(cc.ClusterKeySlot(ctx, "durabus:{"+want+"}").Val())
			if ts.Topic != want || ts.Slot == nil || *ts.Slot != slot || ts.Master != holder[want] || ts.Master == "" ||
				ts.Backlog != int64(heads[want].Seq) || ts.Head != heads[want].Seq || ts.MemoryBytes <= 0 {
				t.Errorf("%s: topic %d: %+v (slot %v), want %s in slot %d on %s with %d events", who, i, ts, ts.Slot, want, slot, holder[want], heads[want].Seq)
			}
			perMaster[ts.Master]++
			subs := map[string]int64{"orders": 1, "users": 2}[want]
			if ts.Subscribers != subs {
				t.Errorf("%s: %s has %d subscribers, want %d", who, want, ts.Subscribers, subs)
			}
			if (ts.LastPublish == nil) != (want == "stock") {
				t.Errorf("%s: %s last publish %v", who, want, ts.LastPublish)
			}
		}
		if rep.PatternSubscriptions != 1 {
			t.Errorf("%s: %d pattern subscriptions, want 1", who, rep.PatternSubscriptions)
		}
		slots := 0
		for _, m := range rep.Masters {
			slots += m.Slots
			if m.Topics != perMaster[m.Addr] || m.Topics == 0 {
				t.Errorf("%s: master %+v, want %d topics", who, m, perMaster[m.Addr])
			}
		}
		if len(rep.Masters) != 3 || slots != 16384 {
			t.Errorf("%s: masters %+v, want 3 serving 16384 slots", who, rep.Masters)
		}
		if len(rep.Consumers) != 2 || rep.Consumers[0].Consumer != "billing" || rep.Consumers[1].Consumer != "mailer" {
			t.Fatalf("%s: consumers %+v", who, rep.Consumers)
		}
		for _, c := range rep.Consumers {
			if c.Lag == nil || *c.Lag != 1 {
				t.Errorf("%s: consumer %+v, want lag 1", who, c)
			}
		}
	}
	check("through node 0", "redis://"+cl.Addrs()[0])
	check("through node 2", u)

	human := ok(t, "", "--redis", u, "stats")
	t.Logf("durabus stats on the cluster:\n%s", human)
	for _, want := range []string{"Redis Cluster of 3 masters (through " + cl.Addrs()[2] + ")", "SLOT", "SLOTS  TOPICS  BACKLOG", "(PUBSUB NUMPAT, summed): 1"} {
		if !strings.Contains(human, want) {
			t.Errorf("stats lacks %q", want)
		}
	}
	for _, line := range strings.Split(human, "\n") {
		if strings.TrimRight(line, " ") != line {
			t.Errorf("stats line with trailing spaces: %q", line)
		}
		if f := strings.Fields(line); len(f) > 0 && holder[f[0]] != "" && f[len(f)-1] != holder[f[0]] {
			t.Errorf("stats line of %s does not end with its master %s: %q", f[0], holder[f[0]], line)
		}
	}

	// The documented users, with the documented rules added for a
	// cluster, set on every node (ACLs are per node): the library's
	// minimal user publishes and tails, the CLI user runs stats.
	setUser := func(name, pw, rules string) {
		for _, n := range nodes {
			args := []any{"ACL", "SETUSER", name, "on", ">" + pw}
			for _, r := range strings.Fields(rules) {
				args = append(args, r)
			}
			if err := n.Do(ctx, args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	setUser("app", "app-pw", docACL(t, "durabus")+" "+docClusterRules(t, "durabus"))
	setUser("cli", "cli-pw", docACL(t, "durabus-cli")+" "+docClusterRules(t, "durabus-cli"))
	app := "redis://app:app-pw@" + cl.Addrs()[1]
	ok(t, "", "--redis", app, "publish", "users", "--type", "x", "--data", "{}")
	heads["users"] = transport.Position{Epoch: heads["users"].Epoch, Seq: heads["users"].Seq + 1}
	if out := ok(t, "", "--redis", app, "tail", "users", "--since", "beginning", "--until", fmt.Sprint(heads["users"].Seq)); strings.Count(out, "\n") != int(heads["users"].Seq) {
		t.Errorf("tail as the minimal user on the cluster printed:\n%s", out)
	}
	check("as the documented CLI user", "redis://cli:cli-pw@"+cl.Addrs()[1])

	// The console shows the same masters (last: it follows a pattern).
	srv := startServe(t, u, nil)
	resp, err := http.Get(srv.url + "topics")
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("console topics page: %d, %v", resp.StatusCode, err)
	}
	for _, topic := range topics {
		row := regexp.MustCompile(`(?s)<tr data-name="` + regexp.QuoteMeta(topic) + `">.*?</tr>`).Find(page)
		if !strings.Contains(string(row), `<td data-label="Master"><code>`+holder[topic]+`</code>`) {
			t.Errorf("console row of %s does not show its master %s: %s", topic, holder[topic], row)
		}
	}
}

// docClusterRules returns the rules that docs/operations.md says to add to
// user name on a Redis Cluster, in a line "ACL SETUSER name RULES".
func docClusterRules(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	prefix := "ACL SETUSER " + name + " "
	for _, line := range strings.Split(string(b), "\n") {
		if rules, ok := strings.CutPrefix(line, prefix); ok {
			return rules
		}
	}
	t.Fatalf("docs/operations.md has no line %q…", prefix)
	return ""
}
