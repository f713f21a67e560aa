package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport/memtransport"
)

func TestDeadLetter(t *testing.T) {
	tests := []struct {
		name      string
		h         *script
		pubErr    error
		cancel    bool
		wantErr   error
		wantDead  bool
		wantTries string
	}{
		{"success publishes nothing", &script{}, nil, false, nil, false, ""},
		{"spent retries are dead-lettered", &script{errs: []error{errBoom, errBoom, errBoom}}, nil, false, nil, true, "3"},
		{"permanent error at once", &script{errs: []error{&bus.DeliveryError{Topic: "orders", Err: bus.ErrNoUpcaster}}}, nil, false, nil, true, "1"},
		{"publish failure returns both errors", &script{errs: []error{errBoom, errBoom, errBoom}}, errors.New("redis down"), false, errBoom, false, ""},
		{"stopping bus: no dead letter", &script{errs: []error{errBoom}}, nil, true, errBoom, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &recordingPublisher{err: tt.pubErr}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				cancel()
			}
			m := msg(t, 42)
			h := bus.Chain(tt.h, middleware.DeadLetter(p), middleware.Retry(fastRetry(3)))
			err := h.Handle(ctx, m)
			if (tt.wantErr == nil) != (err == nil) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.pubErr != nil && !errors.Is(err, tt.pubErr) {
				t.Fatalf("err = %v, want the publish error too", err)
			}
			if got := len(p.envs) == 1; got != tt.wantDead {
				t.Fatalf("dead letters = %d, want %v", len(p.envs), tt.wantDead)
			}
			if !tt.wantDead {
				return
			}
			e := p.envs[0]
			if p.topics[0] != "orders.dead" || e.ID != m.ID || e.Type != m.Type || string(e.Data) != string(m.Data) {
				t.Fatalf("dead letter to %q: %+v", p.topics[0], e)
			}
			x := e.Extensions
			if x[bus.ExtDeadTopic] != "orders" || x[bus.ExtDeadSeq] != "42" || x[bus.ExtDeadEpoch] != "ep" ||
				x[bus.ExtDeadAttempts] != tt.wantTries || x[bus.ExtDeadError] == "" || x[bus.ExtDeadTime] == "" {
				t.Fatalf("extensions = %v", x)
			}
			if err := e.Validate(); err != nil {
				t.Fatalf("dead letter invalid: %v", err)
			}
			if m.Extensions != nil {
				t.Fatalf("the original message was changed: %v", m.Extensions)
			}
		})
	}
}

func TestDeadLettersDoNotFeedAPatternThatMatchesThem(t *testing.T) {
	// "order.*" also matches "order.placed.dead": without care a failing
	// handler behind DeadLetter would dead-letter its own dead letters.
	mem, _ := memtransport.New()
	defer mem.Close()
	b, _ := bus.New(mem, bus.WithFollowerOptions(replay.WithHeadCheck(20*time.Millisecond)))
	var calls atomic.Int64
	b.Handle("order.*", bus.HandlerFunc(func(context.Context, *bus.Message) error {
		calls.Add(1)
		return middleware.Permanent(errors.New("always fails"))
	}), bus.Use(middleware.DeadLetter(b)))
	dead := make(chan *bus.Message, 10)
	b.Handle("*.dead", bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		dead <- m
		return errors.New("the dead-letter handler fails too")
	}), bus.Use(middleware.DeadLetter(b)))
	go b.Run(context.Background())
	defer b.Close()
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Publish(context.Background(), placed{N: 1})
	select {
	case m := <-dead:
		if m.Topic != "order.placed.dead" {
			t.Errorf("dead letter on %q", m.Topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
	time.Sleep(200 * time.Millisecond) // room for a wrong chain
	topics, _ := mem.Topics(context.Background(), "*")
	if fmt.Sprint(topics) != "[order.placed order.placed.dead]" || calls.Load() != 1 {
		t.Errorf("topics %v after %d calls; want [order.placed order.placed.dead] after 1", topics, calls.Load())
	}
}
