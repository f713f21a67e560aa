package middleware_test

import (
	"context"
	"errors"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
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
