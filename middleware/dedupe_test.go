package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport/memtransport"
)

// stores returns a memory store and a Redis store (on a private server).
func stores(t *testing.T) map[string]func(t *testing.T) middleware.DedupeStore {
	return map[string]func(t *testing.T) middleware.DedupeStore{
		"memory": func(*testing.T) middleware.DedupeStore { return middleware.NewMemoryStore(0, 0) },
		"redis": func(t *testing.T) middleware.DedupeStore {
			srv := redistest.Start(t)
			s, err := middleware.NewRedisStore(srv.Client(t), "billing")
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

func TestDedupe(t *testing.T) {
	type step struct {
		err      error // what the handler returns
		panics   bool
		wantCall bool
		wantErr  bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"second delivery dropped", []step{{wantCall: true}, {wantCall: false}, {wantCall: false}}},
		{"failure not marked, retry runs", []step{{err: errBoom, wantCall: true, wantErr: true}, {wantCall: true}, {wantCall: false}}},
		{"panic releases the claim", []step{{panics: true, wantCall: true, wantErr: true}, {wantCall: true}, {wantCall: false}}},
	}
	for sname, mk := range stores(t) {
		for _, tt := range tests {
			t.Run(sname+"/"+tt.name, func(t *testing.T) {
				store := mk(t)
				m := msg(t, 1)
				for i, st := range tt.steps {
					called := false
					h := bus.Chain(bus.HandlerFunc(func(context.Context, *bus.Message) error {
						called = true
						if st.panics {
							panic("kaput")
						}
						return st.err
					}), middleware.Dedupe(store), middleware.Recover())
					err := h.Handle(context.Background(), m)
					if called != st.wantCall || (err != nil) != st.wantErr {
						t.Fatalf("step %d: called %v err %v, want called %v err %v", i, called, err, st.wantCall, st.wantErr)
					}
				}
			})
		}
		t.Run(sname+"/in flight elsewhere", func(t *testing.T) {
			store := mk(t)
			m := msg(t, 1)
			inside := make(chan struct{})
			release := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- middleware.Dedupe(store)(bus.HandlerFunc(func(context.Context, *bus.Message) error {
					close(inside)
					<-release
					return nil
				})).Handle(context.Background(), m)
			}()
			<-inside
			err := middleware.Dedupe(store)(&script{}).Handle(context.Background(), m)
			close(release)
			if !errors.Is(err, middleware.ErrInFlight) || middleware.IsPermanent(err) {
				t.Fatalf("concurrent call: err = %v, want retryable ErrInFlight", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
		t.Run(sname+"/no id passes through", func(t *testing.T) {
			m := msg(t, 1)
			m.Envelope.ID = ""
			s := &script{}
			h := middleware.Dedupe(mk(t))(s)
			_ = h.Handle(context.Background(), m)
			_ = h.Handle(context.Background(), m)
			if s.calls.Load() != 2 {
				t.Fatalf("calls = %d", s.calls.Load())
			}
		})
	}
}

func TestMemoryStoreBounded(t *testing.T) {
	s := middleware.NewMemoryStore(10, time.Hour)
	ctx := context.Background()
	for i := range 25 {
		id := fmt.Sprintf("id-%d", i)
		tok, _, err := s.Claim(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Commit(ctx, id, tok)
	}
	if s.Len() != 10 {
		t.Fatalf("Len = %d, want 10", s.Len())
	}
	if _, done, _ := s.Claim(ctx, "id-24"); !done {
		t.Fatal("most recent id forgotten")
	}
	if _, done, _ := s.Claim(ctx, "id-0"); done {
		t.Fatal("least recent id still remembered beyond the bound")
	}
}

func TestRedisStoreLayoutAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	// A lease and a window long enough that the steps meant to fall
	// inside them do so on a loaded machine (100 ms did not); their ends
	// are waited for, not slept through.
	const lease, window = time.Second, 1500 * time.Millisecond
	s, err := middleware.NewRedisStore(rdb, "billing", middleware.WithDedupeWindow(window), middleware.WithDedupeLease(lease))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id := "0190c1b2-0000-7000-8000-000000000001"
	if k := s.Key(id); k != "durabus:dedupe:billing:"+id {
		t.Fatalf("key = %q", k)
	}
	tok, done, err := s.Claim(ctx, id)
	if err != nil || done {
		t.Fatalf("claim: %v %v", done, err)
	}
	expired := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for rdb.Exists(ctx, s.Key(id)).Val() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the key has not expired after 30 s (PTTL %v)", what, rdb.PTTL(ctx, s.Key(id)).Val())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// A claim whose holder died expires after the lease.
	if ttl := rdb.PTTL(ctx, s.Key(id)).Val(); ttl <= 0 || ttl > lease {
		t.Fatalf("claim ttl = %v, want the lease %v", ttl, lease)
	}
	expired("lease")
	if _, _, err := s.Claim(ctx, id); err != nil {
		t.Fatalf("claim after lease: %v", err)
	}
	// A stale token cannot abort the new claim.
	if err := s.Abort(ctx, id, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(ctx, id); !errors.Is(err, middleware.ErrInFlight) {
		t.Fatalf("claim while the new claim lives: %v", err)
	}
	if err := s.Commit(ctx, id, ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := rdb.Get(ctx, s.Key(id)).Result(); v != "done" {
		t.Fatalf("value = %q", v)
	}
	if ttl := rdb.PTTL(ctx, s.Key(id)).Val(); ttl <= 0 || ttl > window {
		t.Fatalf("ttl = %v, want the window %v", ttl, window)
	}
	expired("window")
	if _, done, _ := s.Claim(ctx, id); done {
		t.Fatal("id remembered after the window")
	}
}

func TestNewRedisStoreInvalid(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := middleware.NewRedisStore(srv.Client(t), "bad name{x}", middleware.WithDedupeWindow(-1)); err == nil {
		t.Fatal("want an error for a bad consumer name and window")
	}
	if _, err := middleware.NewRedisStore(nil, "ok"); err == nil {
		t.Fatal("want an error for a nil client")
	}
}

func TestMemoryStoreWindow(t *testing.T) {
	s := middleware.NewMemoryStore(10, 500*time.Millisecond)
	ctx := context.Background()
	tok, _, _ := s.Claim(ctx, "a")
	_ = s.Commit(ctx, "a", tok)
	if _, done, _ := s.Claim(ctx, "a"); !done {
		t.Fatal("id not remembered within the window")
	}
	time.Sleep(600 * time.Millisecond) // past the window: waiting longer only helps
	if _, done, err := s.Claim(ctx, "a"); done || err != nil {
		t.Fatalf("after the window: done %v err %v", done, err)
	}
}

type placed struct{ N int }

func (placed) EventType() string { return "order.placed" }

func TestDedupeIsPerSubscription(t *testing.T) {
	// One store for the whole bus: the typed and the pattern subscription
	// each handle every event once.
	mem := memtransport.New()
	defer mem.Close()
	store := middleware.NewMemoryStore(1000, time.Hour)
	b, _ := bus.New(mem, bus.WithMiddleware(middleware.Dedupe(store)),
		bus.WithFollowerOptions(replay.WithHeadCheck(20*time.Millisecond)))
	var typed, pattern atomic.Int64
	bus.Subscribe(b, func(context.Context, *placed) error { typed.Add(1); return nil })
	b.Handle("order.*", bus.HandlerFunc(func(context.Context, *bus.Message) error { pattern.Add(1); return nil }))
	go b.Run(context.Background())
	defer b.Close()
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		b.Publish(context.Background(), placed{N: i})
	}
	deadline := time.Now().Add(10 * time.Second)
	for (typed.Load() < 20 || pattern.Load() < 20) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if typed.Load() != 20 || pattern.Load() != 20 {
		t.Errorf("typed handled %d, pattern %d; want 20 each", typed.Load(), pattern.Load())
	}
}
