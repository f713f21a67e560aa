package redistransport_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
)

func TestOwnerOneHolderAtATimeAndFencedSaves(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	tr := newTransport(t, rdb)
	ctx := testCtx(t)

	a, err := tr.ClaimConsumer(ctx, "billing", "holder-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !a.New || a.Token != 1 || len(a.Known) != 0 {
		t.Fatalf("first claim = %+v, want a new record with token 1 and no topics", a)
	}
	// A second holder is refused while the lease runs, and learns who holds it.
	_, err = tr.ClaimConsumer(ctx, "billing", "holder-b", time.Minute)
	var held *transport.HeldError
	if !errors.As(err, &held) || !errors.Is(err, transport.ErrHeld) || held.Holder != "holder-a" || held.Remaining <= 0 {
		t.Fatalf("second holder's claim: %v, want a HeldError naming holder-a", err)
	}
	pos := transport.Position{Epoch: "e1", Seq: 7, ID: "1-7"}
	if err := tr.SaveClaimed(ctx, a, map[string]transport.Position{"orders": pos}); err != nil {
		t.Fatal(err)
	}
	if err := tr.RenewConsumer(ctx, a, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Once the lease lapsed, b takes over with a larger token; a is fenced.
	var b transport.Claim
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err = tr.ClaimConsumer(ctx, "billing", "holder-b", time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, transport.ErrHeld) || time.Now().After(deadline) {
			t.Fatalf("claim after the lease lapsed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b.Token <= a.Token || b.New || !slices.Equal(b.Known, []string{"orders"}) {
		t.Fatalf("take-over claim = %+v, want token > %d, the existing record and topic orders", b, a.Token)
	}
	stale := transport.Position{Epoch: "e1", Seq: 3, ID: "1-3"}
	if err := tr.SaveClaimed(ctx, a, map[string]transport.Position{"orders": stale}); !errors.Is(err, transport.ErrFenced) {
		t.Fatalf("stale owner's save: %v, want ErrFenced", err)
	}
	if err := tr.RenewConsumer(ctx, a, time.Minute); !errors.Is(err, transport.ErrFenced) {
		t.Fatalf("stale owner's renewal: %v, want ErrFenced", err)
	}
	cps, err := tr.LoadCheckpoints(ctx, "billing")
	if err != nil || cps["orders"] != pos {
		t.Fatalf("checkpoints = %v, %v; want orders at %v (the stale write refused)", cps, err, pos)
	}
	// Release lets the next holder in at once.
	if err := tr.ReleaseConsumer(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ClaimConsumer(ctx, "billing", "holder-c", time.Minute); err != nil {
		t.Fatalf("claim after release: %v", err)
	}
}

func TestOwnerKeysShareTheCheckpointSlot(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	rdb := c.Client(t)
	tr := newTransport(t, rdb)
	ctx := testCtx(t)
	for _, name := range []string{"billing", "svc@orders.*", "a{b}c"} {
		cl, err := tr.ClaimConsumer(ctx, name, "h", time.Minute)
		if err != nil {
			t.Fatalf("claim %q on a cluster: %v", name, err)
		}
		if err := tr.SaveClaimed(ctx, cl, map[string]transport.Position{"t1": {Epoch: "e", Seq: 1, ID: "1-1"}}); err != nil {
			t.Fatalf("save %q on a cluster: %v", name, err)
		}
	}
}
