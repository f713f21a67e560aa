package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// docACL returns the ACL rules of the user that docs/operations.md
// documents in a line "user NAME on >CHANGE-ME RULES", without the
// password: the test runs what the documentation says.
func docACL(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	prefix := "user " + name + " on >CHANGE-ME "
	for _, line := range strings.Split(string(b), "\n") {
		if rules, ok := strings.CutPrefix(line, prefix); ok {
			return rules
		}
	}
	t.Fatalf("docs/operations.md has no line %q…", prefix)
	return ""
}

// Every command works with the ACL users of docs/operations.md: the
// library's minimal user for all but stats and groups (refused with a
// message naming the command and the documentation), the CLI user for all but demo and
// bench, the demo user for those two. None of them may set a client name.
func TestEveryCommandWithTheDocumentedACLUsers(t *testing.T) {
	t.Parallel()
	minimal, cliRules, demoRules := docACL(t, "durabus"), docACL(t, "durabus-cli"), docACL(t, "durabus-demo")
	for _, r := range []string{minimal, cliRules, demoRules} {
		if strings.Contains(r, "client|setname") && r != demoRules {
			t.Fatalf("a documented user may set a client name: %q", r)
		}
	}
	srv := redistest.Start(t,
		redistest.WithACL("app on >app-pw "+minimal+" &durabus:{acl.*}"),
		redistest.WithACL("cli on >cli-pw "+cliRules+" &durabus:{acl.*}"),
		redistest.WithACL("demo on >demo-pw "+demoRules))
	app, cliURL := "redis://app:app-pw@"+srv.Addr(), "redis://cli:cli-pw@"+srv.Addr()

	for _, u := range []string{app, cliURL} {
		ok(t, "{\"n\":1}\n{\"n\":2}\n", "--redis", u, "publish", "acl.orders", "--type", "order.placed", "-")
		if out := ok(t, "", "--redis", u, "tail", "acl.orders", "--since", "beginning", "--until", "2"); strings.Count(out, "\n") != 2 {
			t.Errorf("tail of a topic printed:\n%s", out)
		}
		if out := ok(t, "", "--redis", u, "tail", "acl.*", "--since", "beginning", "--until", "+1s"); !strings.Contains(out, "acl.orders") {
			t.Errorf("tail of a pattern printed:\n%s", out)
		}
		if recs := jsonLines(t, ok(t, "", "--redis", u, "replay", "acl.orders")); len(recs) < 2 {
			t.Errorf("replay printed %d events", len(recs))
		}
		ok(t, "", "--redis", u, "dead", "list", "acl.orders")
		ok(t, "", "--redis", u, "dead", "requeue", "acl.orders")
	}
	// A group member's heartbeat and checkpoint, written as the admin: a
	// group billing of one member on acl.orders, 1 event handled of 4.
	ctx := context.Background()
	admin, err := redistransport.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Heartbeat(ctx, "billing/acl.orders", transport.GroupMember{ID: "m1", Host: "h", Started: time.Now(), Owns: []string{"acl.orders"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	head, err := admin.Head(ctx, "acl.orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.SaveCheckpoints(ctx, "billing/acl.orders@acl.orders", map[string]transport.Position{"acl.orders": {Epoch: head.Epoch, Seq: 1}}); err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", nil, "--redis", app, "stats")
	oneErrorLine(t, r, 1, "NOPERM")
	if !strings.Contains(r.stderr, `"ACL: the CLI" in docs/operations.md`) {
		t.Errorf("stats refused without pointing to the documentation: %q", r.stderr)
	}
	// groups needs nothing beyond the minimal line (its HVALS is there for
	// the members themselves).
	if out := ok(t, "", "--redis", app, "groups"); !strings.Contains(out, "billing/acl.orders") {
		t.Errorf("groups as the minimal user: %q", out)
	}
	var rep statsReport
	if err := json.Unmarshal([]byte(ok(t, "", "--redis", cliURL, "--json", "stats")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Topics) != 1 || rep.Topics[0].Backlog != 4 || rep.Topics[0].MemoryBytes <= 0 {
		t.Errorf("stats as the CLI user: %+v", rep.Topics)
	}
	if len(rep.Groups) != 1 || rep.Groups[0].Members != 1 || rep.Groups[0].Lag != head.Seq-1 {
		t.Errorf("stats as the CLI user: groups %+v, want 1 member and lag %d", rep.Groups, head.Seq-1)
	}
	var groups groupsReport
	if err := json.Unmarshal([]byte(ok(t, "", "--redis", cliURL, "--json", "groups")), &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups.Groups) != 1 || len(groups.Groups[0].Members) != 1 || len(groups.Groups[0].Partitions) != 1 ||
		groups.Groups[0].Partitions[0].Lag == nil || *groups.Groups[0].Partitions[0].Lag != head.Seq-1 || groups.Groups[0].Partitions[0].AgeSeconds <= 0 {
		t.Errorf("groups as the CLI user: %+v", groups.Groups)
	}

	demoURL := "redis://demo:demo-pw@" + srv.Addr()
	if r := cli(t, "", nil, "--redis", demoURL, "--json", "demo", "--topics", "1", "--events", "300", "--rate", "300"); r.code != 0 || !strings.Contains(r.stdout, `"ok":true`) {
		t.Errorf("demo as the demo user: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	ok(t, "", "--redis", demoURL, "bench", "--rounds", "1", "--duration", "20ms", "--events", "1000")
}
