package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/transport"
)

// TestDeadLettersListAndRequeue: three orders fail until their retries are
// spent and land in order.placed.dead; DeadLetters lists them with the
// reason; once the handler is fixed, Requeue re-publishes them with their
// ids in two steps, and the handler gets all three.
func TestDeadLettersListAndRequeue(t *testing.T) {
	mem := newMem(t)
	b, err := bus.New(mem, fast)
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	broken.Store(true)
	var got log[string]
	dl := middleware.DeadLetter(middleware.PublisherFunc(func(ctx context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
		return b.PublishEnvelope(ctx, topic, e)
	}))
	retry := middleware.Retry(middleware.RetryConfig{MaxAttempts: 2, InitialInterval: time.Millisecond})
	_, err = bus.Subscribe(b, func(ctx context.Context, e *OrderPlaced) error {
		if broken.Load() {
			return errors.New("billing down")
		}
		m, _ := bus.MessageFrom(ctx)
		got.add(e.ID + " " + m.ID)
		return nil
	}, bus.Use(dl, retry))
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	ctx := context.Background()
	var ids []string
	for i := 1; i <= 3; i++ {
		e, err := envelope.New("order.placed", OrderPlaced{ID: fmt.Sprint("o-", i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.PublishEnvelope(ctx, "order.placed", e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprint("o-", i, " ", e.ID))
	}
	var dead []*bus.Message
	waitFor(t, "3 dead letters", func() bool {
		dead, err = b.DeadLetters(ctx, "order.placed", 10)
		return err == nil && len(dead) == 3
	})
	for i, m := range dead {
		x := m.Extensions
		if m.Topic != "order.placed.dead" || x[bus.ExtDeadTopic] != "order.placed" || x[bus.ExtDeadSeq] != fmt.Sprint(i+1) ||
			x[bus.ExtDeadAttempts] != "2" || x[bus.ExtDeadError] != "billing down" || m.ID+"" == "" || !slices.ContainsFunc(ids, func(s string) bool { return len(s) > 4 && s[4:] == m.ID }) {
			t.Fatalf("dead letter %d: topic %s id %s ext %v", i, m.Topic, m.ID, x)
		}
	}
	if two, _ := b.DeadLetters(ctx, "order.placed", 2); len(two) != 2 || two[0].ID != dead[0].ID {
		t.Fatalf("limit 2: %d", len(two))
	}

	broken.Store(false)
	if n, err := b.Requeue(ctx, "order.placed", bus.RequeueLimit(2)); n != 2 || err != nil {
		t.Fatalf("Requeue limit 2 = %d, %v", n, err)
	}
	if left, err := b.DeadLetters(ctx, "order.placed", 10); err != nil || len(left) != 1 || left[0].ID != dead[2].ID {
		t.Fatalf("after requeue of 2: %d left, %v", len(left), err)
	}
	if n, err := b.Requeue(ctx, "order.placed"); n != 1 || err != nil {
		t.Fatalf("Requeue rest = %d, %v", n, err)
	}
	if n, err := b.Requeue(ctx, "order.placed"); n != 0 || err != nil {
		t.Fatalf("Requeue again = %d, %v: want nothing left", n, err)
	}
	waitFor(t, "3 requeued orders handled", func() bool { return len(got.get()) == 3 })
	if g := got.get(); !slices.Equal(g, ids) {
		t.Fatalf("handled %v, want %v (same ids, in order)", g, ids)
	}
}

func TestDeadLettersNone(t *testing.T) {
	b, err := bus.New(newMem(t))
	if err != nil {
		t.Fatal(err)
	}
	ms, err := b.DeadLetters(context.Background(), "nothing.here", 10)
	if err != nil || len(ms) != 0 {
		t.Fatalf("DeadLetters = %v, %v", ms, err)
	}
	if n, err := b.Requeue(context.Background(), "nothing.here"); n != 0 || err != nil {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	if _, err := b.DeadLetters(context.Background(), "bad topic", 10); err == nil {
		t.Fatal("want an error for an invalid topic")
	}
}

func TestRequeueNewIDs(t *testing.T) {
	mem := newMem(t)
	b, err := bus.New(mem)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e, _ := envelope.New("order.placed", OrderPlaced{ID: "o-1"}, envelope.WithExtension("correlationid", "c1"))
	m := &bus.Message{Envelope: e, Topic: "order.placed", Position: transport.Position{Epoch: "x", Seq: 7}}
	if _, err := b.PublishEnvelope(ctx, bus.DeadLetterTopic("order.placed"), bus.NewDeadLetter(m, errors.New("no"), 3)); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Requeue(ctx, "order.placed", bus.RequeueNewIDs()); n != 1 || err != nil {
		t.Fatalf("Requeue = %d, %v", n, err)
	}
	page, err := mem.Range(ctx, "order.placed", transport.Position{}, 10)
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("range: %v %v", page, err)
	}
	back, err := envelope.Decode(page.Events[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID == e.ID || back.Extensions["correlationid"] != "c1" || len(back.Extensions) != 1 || string(back.Data) != string(e.Data) {
		t.Fatalf("requeued envelope %+v", back)
	}
}
