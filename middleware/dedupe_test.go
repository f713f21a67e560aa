package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/middleware/redisdedupe"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport/memtransport"
)

// stores returns a memory store and a Redis store (on a private server).
func stores(t *testing.T) map[string]func(t *testing.T) middleware.DedupeStore {
	return map[string]func(t *testing.T) middleware.DedupeStore{
		"memory": func(*testing.T) middleware.DedupeStore { return middleware.NewMemoryStore(0, 0) },
		"redis": func(t *testing.T) middleware.DedupeStore {
			srv := redistest.Start(t)
			s, err := redisdedupe.New(srv.Client(t), "billing")
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
	mem, _ := memtransport.New()
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

// deadlineStore is a MemoryStore that records the deadline of the ctx
// Commit and Abort get.
type deadlineStore struct {
	*middleware.MemoryStore
	mu   sync.Mutex
	save map[string]time.Time // "commit" or "abort" → deadline
}

func (s *deadlineStore) record(ctx context.Context, op string) {
	dl, _ := ctx.Deadline()
	s.mu.Lock()
	s.save[op] = dl
	s.mu.Unlock()
}

func (s *deadlineStore) Commit(ctx context.Context, id, token string) error {
	s.record(ctx, "commit")
	return s.MemoryStore.Commit(ctx, id, token)
}

func (s *deadlineStore) Abort(ctx context.Context, id, token string) error {
	s.record(ctx, "abort")
	return s.MemoryStore.Abort(ctx, id, token)
}

// A handler slower than the bound of Commit/Abort still gets its claim
// committed (or released): the bound starts when the handler returns.
// Before the fix, a 5.1 s handler left Commit a ctx already past its
// deadline, and Redis would have run the event again after the lease.
func TestDedupeSaveBoundStartsAfterHandler(t *testing.T) {
	const bound = 20 * time.Millisecond
	defer middleware.SetDedupeSaveTimeout(bound)()
	for op, result := range map[string]error{"commit": nil, "abort": errBoom} {
		t.Run(op, func(t *testing.T) {
			store := &deadlineStore{MemoryStore: middleware.NewMemoryStore(0, 0), save: map[string]time.Time{}}
			var returned time.Time
			h := middleware.Dedupe(store)(bus.HandlerFunc(func(context.Context, *bus.Message) error {
				<-time.After(3 * bound) // slower than the bound
				returned = time.Now()
				return result
			}))
			if err := h.Handle(context.Background(), msg(t, 1)); !errors.Is(err, result) {
				t.Fatalf("err = %v, want %v", err, result)
			}
			store.mu.Lock()
			dl, ok := store.save[op]
			store.mu.Unlock()
			if !ok {
				t.Fatalf("%s was not called", op)
			}
			if !dl.After(returned) {
				t.Fatalf("%s's ctx expired %v before the handler returned: the bound must start after it", op, returned.Sub(dl))
			}
		})
	}
}
