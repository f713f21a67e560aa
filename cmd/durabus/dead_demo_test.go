package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport/redistransport"
)

func TestDeadListAndRequeue(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	ctx := context.Background()
	tr, err := redistransport.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b, err := bus.New(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	e, err := envelope.NewRaw("order.placed", []byte(`{"id":7}`))
	if err != nil {
		t.Fatal(err)
	}
	pos, err := b.PublishEnvelope(ctx, "orders", e)
	if err != nil {
		t.Fatal(err)
	}
	m := &bus.Message{Envelope: e, Topic: "orders", Position: pos}
	if _, err := b.PublishEnvelope(ctx, bus.DeadLetterTopic("orders"), bus.NewDeadLetter(m, errors.New("card declined"), 3)); err != nil {
		t.Fatal(err)
	}

	out := ok(t, "", "--redis", u, "dead", "list", "orders")
	for _, want := range []string{"order.placed", e.ID, "orders#1", `"card declined"`, "  3  "} {
		if !strings.Contains(out, want) {
			t.Errorf("dead list lacks %q:\n%s", want, out)
		}
	}
	recs := jsonLines(t, ok(t, "", "--redis", u, "--json", "dead", "list", "orders"))
	if len(recs) != 1 || recs[0].Topic != "orders.dead" || recs[0].Seq != 1 {
		t.Errorf("dead list --json: %+v", recs)
	}
	if out := ok(t, "", "--redis", u, "dead", "requeue", "orders"); out != "requeued 1 dead letter(s) of \"orders\"\n" {
		t.Errorf("dead requeue printed %q", out)
	}
	if out := ok(t, "", "--redis", u, "dead", "list", "orders"); !strings.HasPrefix(out, "no dead letters") {
		t.Errorf("dead list after requeue printed %q", out)
	}
	back := jsonLines(t, ok(t, "", "--redis", u, "replay", "orders"))
	if len(back) != 2 || back[1].Seq != 2 || !strings.Contains(string(back[1].Event), e.ID) || strings.Contains(string(back[1].Event), "deaderror") {
		t.Errorf("the requeued event in orders: %+v", back)
	}
}

// TestDemoLosesNothing runs the demo as make demo does: a private
// redis-server, three connection kills and a restart.
func TestDemoLosesNothing(t *testing.T) {
	t.Parallel()
	out := ok(t, "", "demo")
	for _, want := range []string{
		"private redis-server",
		"fault 1: CLIENT KILL",
		"fault 3: CLIENT KILL",
		"subscriber restarted",
		"published           4500",
		"lost                0",
		"demo.orders     1500       1500",
		"result: OK",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestDemoOnGivenRedisCleansUp runs a short demo on a given Redis: it uses
// its own namespace, kills only its subscriber's connections and deletes
// its keys at the end.
func TestDemoOnGivenRedisCleansUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	other := rdb.Subscribe(ctx, "someone.else")
	defer other.Close()
	if _, err := other.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "", nil, "--redis", redisURL(srv), "--json", "demo", "--topics", "2", "--events", "400", "--rate", "400")
	var sum struct {
		Published, Delivered int
		Lost                 int
		OK                   bool
		Topics               []struct {
			InOrder bool `json:"in_order"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || r.code != 0 {
		t.Fatalf("demo --json: exit %d, %v, stdout %q, stderr %q", r.code, err, r.stdout, r.stderr)
	}
	if !sum.OK || sum.Published != 800 || sum.Delivered < 800 || sum.Lost != 0 || len(sum.Topics) != 2 || !sum.Topics[0].InOrder {
		t.Errorf("demo --json summary: %+v", sum)
	}
	if !strings.Contains(r.stderr, "namespace \"durabus.demo.") || !strings.Contains(r.stderr, "fault 1: CLIENT KILL") {
		t.Errorf("demo progress on stderr:\n%s", r.stderr)
	}
	if keys := rdb.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("demo left keys behind: %v", keys)
	}
	if n := rdb.PubSubNumSub(ctx, "someone.else").Val()["someone.else"]; n != 1 {
		t.Errorf("demo killed another client's subscription: NUMSUB %d", n)
	}
}
