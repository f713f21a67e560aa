package redisdedupe_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/middleware/redisdedupe"
	"github.com/durabus/durabus/transport/memtransport"
)

// The claim → run → commit protocol with this store is tested beside
// Dedupe, in package middleware (TestDedupe runs every case on both
// stores).

func TestStoreLayoutAndExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	// A lease and a window long enough that the steps meant to fall
	// inside them do so on a loaded machine (100 ms did not); their ends
	// are waited for, not slept through.
	const lease, window = time.Second, 1500 * time.Millisecond
	s, err := redisdedupe.New(rdb, "billing", redisdedupe.WithWindow(window), redisdedupe.WithLease(lease))
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

// New accepts exactly the consumer names bus.WithConsumer accepts, and
// reports every invalid option at once, wrapping bus.ErrInvalidOption.
func TestNewNamesAndOptions(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	mem, _ := memtransport.New()
	defer mem.Close()
	for _, name := range []string{"billing", "billing@orders.*", "svc{eu}", "a", strings.Repeat("x", 400), "", "two words", "tab\t", "é", strings.Repeat("x", 401)} {
		_, busErr := bus.New(mem, bus.WithConsumer(name))
		busRefused := busErr != nil
		_, err := redisdedupe.New(rdb, name)
		if (err != nil) != busRefused {
			t.Errorf("consumer %q: redisdedupe.New err %v, bus.WithConsumer err %v: they must agree", name, err, busErr)
		}
		if err != nil && !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("consumer %q: err %v does not wrap bus.ErrInvalidOption", name, err)
		}
	}
	_, err := redisdedupe.New(nil, "bad name", redisdedupe.WithWindow(-1), redisdedupe.WithLease(0), redisdedupe.WithNamespace("a b"))
	if !errors.Is(err, bus.ErrInvalidOption) {
		t.Fatalf("err = %v, want one wrapping bus.ErrInvalidOption", err)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 5 {
		t.Fatalf("err = %v, want the 5 problems (client, name, namespace, window, lease) joined", err)
	}
}

var _ middleware.DedupeStore = (*redisdedupe.Store)(nil)
