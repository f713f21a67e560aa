package redistransport_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// aclRules is the minimal ACL of a durabus user (also in docs/operations.md).
const aclRules = "resetchannels ~durabus:* &durabus:* -@all " +
	"+evalsha +eval +hmget +time +xrevrange +xadd +xtrim +hset +get +set +publish " +
	"+hget +xrange +exists +zrange +zadd +hgetall +hincrby +hkeys +hdel +hvals +pttl +pexpire +xgroup|create +xgroup|destroy +xinfo|groups " +
	"+subscribe +psubscribe +unsubscribe +punsubscribe +ping"

func TestACLMinimalUser(t *testing.T) {
	srv := redistest.Start(t,
		// Redis checks a PSUBSCRIBE pattern literally against the channel
		// rules: each pattern durabus subscribes to must be listed.
		redistest.WithACL("app on >app-secret "+aclRules+" &durabus:{acl.*}"),
		redistest.WithACL("other on >other-secret ~other:* &other:* +@all"))
	client := func(user, pw string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: user, Password: pw})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ctx := testCtx(t)
	// Everything durabus does, with the idempotency window and age
	// retention on (they use GET, SET, TIME and XTRIM).
	tr := newTransport(t, client("app", "app-secret"),
		redistransport.WithIdempotency(time.Minute), redistransport.WithMaxAge(time.Hour))
	sub, err := tr.Subscribe(ctx, "acl.a")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	psub, err := tr.SubscribePattern(ctx, "acl.*")
	if err != nil {
		t.Fatalf("SubscribePattern: %v", err)
	}
	defer psub.Close()
	m := message("acl.a", 1)
	p1, err := tr.Publish(ctx, m)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if again, err := tr.Publish(ctx, m); err != nil || again != p1 {
		t.Fatalf("re-Publish: %v, %v; want %v", again, err, p1)
	}
	if _, err := tr.PublishBatch(ctx, []transport.Message{message("acl.a", 2), message("acl.b", 1)}); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for _, s := range []transport.Subscription{sub, psub} {
		if ev := waitKind(t, s, transport.Frame, 5*time.Second); ev.Delivery.Position != p1 {
			t.Fatalf("frame %v, want %v", ev.Delivery.Position, p1)
		}
	}
	if page, err := tr.Range(ctx, "acl.a", transport.Position{}, 10); err != nil || len(page.Events) != 2 {
		t.Fatalf("Range: %d events, %v", len(page.Events), err)
	}
	if _, err := tr.Seek(ctx, "acl.a", time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("Seek: %v", err)
	}
	if _, err := tr.Head(ctx, "acl.a"); err != nil {
		t.Fatalf("Head: %v", err)
	}
	if topics, err := tr.Topics(ctx, "acl.*"); err != nil || len(topics) != 2 {
		t.Fatalf("Topics: %v, %v", topics, err)
	}
	if _, complete, err := tr.LogEpochs(ctx, "acl.a"); err != nil || !complete {
		t.Fatalf("LogEpochs: complete %v, %v (the lineage record needs XGROUP)", complete, err)
	}
	// A consumer group member: heartbeats, members, the index, leaving.
	if ms, err := tr.Heartbeat(ctx, "acl-group", transport.GroupMember{ID: "m1"}, time.Minute); err != nil || len(ms) != 1 {
		t.Fatalf("Heartbeat: %v, %v", ms, err)
	}
	if ms, err := tr.GroupMembers(ctx, "acl-group"); err != nil || len(ms) != 1 {
		t.Fatalf("GroupMembers: %v, %v", ms, err)
	}
	if gs, err := tr.Groups(ctx); err != nil || len(gs) != 1 {
		t.Fatalf("Groups: %v, %v", gs, err)
	}
	if err := tr.LeaveGroup(ctx, "acl-group", "m1"); err != nil {
		t.Fatalf("LeaveGroup: %v", err)
	}
	if err := tr.SaveCheckpoints(ctx, "billing", map[string]transport.Position{"acl.a": p1}); err != nil {
		t.Fatalf("SaveCheckpoints: %v", err)
	}
	if cps, err := tr.LoadCheckpoints(ctx, "billing"); err != nil || cps["acl.a"] != p1 {
		t.Fatalf("LoadCheckpoints: %v, %v", cps, err)
	}
	// A durable consumer's lease and fenced checkpoints.
	claim, err := tr.ClaimConsumer(ctx, "billing", "h1", time.Minute)
	if err != nil {
		t.Fatalf("ClaimConsumer: %v", err)
	}
	if err := tr.SaveClaimed(ctx, claim, map[string]transport.Position{"acl.a": p1}); err != nil {
		t.Fatalf("SaveClaimed: %v", err)
	}
	if err := tr.RenewConsumer(ctx, claim, time.Minute); err != nil {
		t.Fatalf("RenewConsumer: %v", err)
	}
	if err := tr.ReleaseConsumer(ctx, claim); err != nil {
		t.Fatalf("ReleaseConsumer: %v", err)
	}

	// A user without rights on durabus:* gets an error that says so.
	other := newTransport(t, client("other", "other-secret"))
	_, err = other.Publish(ctx, message("acl.a", 3))
	if err == nil || !strings.Contains(err.Error(), "NOPERM") || !strings.Contains(err.Error(), "docs/operations.md") {
		t.Fatalf("Publish as a user without rights: %v", err)
	}
	t.Logf("Publish without rights: %v", err)
	if _, err := other.Subscribe(ctx, "acl.a"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("Subscribe as a user without rights: %v", err)
	}
	if _, err := other.Range(ctx, "acl.a", transport.Position{}, 1); err == nil || errors.Is(err, transport.ErrUnknownTopic) {
		t.Fatalf("Range as a user without rights: %v", err)
	}
}

// A command refused inside the publish script is named, with the ACL line
// to read; one refused before the script's first write proves that nothing
// was written.
func TestACLRefusalInScriptNamesTheCommand(t *testing.T) {
	without := func(cmd string) string {
		return strings.Replace(aclRules, " +"+cmd+" ", " ", 1)
	}
	srv := redistest.Start(t,
		redistest.WithACL("noxadd on >pw "+without("xadd")),
		redistest.WithACL("nopublish on >pw "+without("publish")))
	ctx := testCtx(t)
	for _, tc := range []struct {
		user, want string
		unknown    bool // the outcome is unknown: the event may be in the log
	}{
		{"noxadd", "may not run XADD in a durabus script (add +xadd to its ACL)", false},
		{"nopublish", "may not run PUBLISH or SPUBLISH in a durabus script (add +publish +spublish to its ACL)", true},
	} {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: tc.user, Password: "pw"})
		t.Cleanup(func() { _ = c.Close() })
		tr := newTransport(t, c)
		for _, topic := range []string{"acl.new", "acl.new"} { // a new topic, then an existing one
			_, err := tr.Publish(ctx, message(topic, 1))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "docs/operations.md") {
				t.Fatalf("%s: Publish: %v; want an error saying %q and pointing to docs/operations.md", tc.user, err, tc.want)
			}
			if got := errors.Is(err, redistransport.ErrUnknownOutcome); got != tc.unknown {
				t.Errorf("%s: errors.Is(err, ErrUnknownOutcome) = %v, want %v: %v", tc.user, got, tc.unknown, err)
			}
		}
		if tc.user == "noxadd" {
			if n := srv.Client(t).Exists(ctx, "durabus:{acl.new}:log", "durabus:{acl.new}:meta").Val(); n != 0 {
				t.Errorf("a publish refused at its XADD left %d key(s) behind", n)
			}
		}
	}
}
