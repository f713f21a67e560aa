package redistest

import (
	"fmt"
	"testing"
	"time"
)

const (
	// migrateBatch is how many keys one GETKEYSINSLOT / MIGRATE round moves.
	migrateBatch = 100
	// migrateTimeout is MIGRATE's own timeout for one batch, in ms.
	migrateTimeout = 5000
)

// MigrateSlot moves slot (0..16383) from the master serving it to the
// master to, the way redis-cli --cluster reshard does: CLUSTER SETSLOT
// IMPORTING on to, MIGRATING on the source, then MIGRATE of the slot's keys
// in batches of 100 (CLUSTER GETKEYSINSLOT until it returns none, so keys
// written meanwhile move too; with the nodes' password as MIGRATE AUTH),
// then SETSLOT NODE on to, on the source, and on every other live master.
//
// It is safe while clients keep writing the slot: during the move the
// source serves the keys it still holds and answers ASK for the others,
// which to accepts; a command on several keys of the slot split between
// the two gets TRYAGAIN (go-redis retries it). It first waits until the
// cluster is healthy ([Cluster.WaitOK]) and returns once every live node
// agrees that to serves slot and the cluster is healthy again. Moving a
// slot to the master that serves it does nothing. It fails the test after
// 60 s for each wait, at once if to is not a live master or a step fails.
func (c *Cluster) MigrateSlot(t testing.TB, slot int, to *Server) {
	t.Helper()
	if slot < 0 || slot >= clusterSlots {
		t.Fatalf("redistest: MigrateSlot(%d): want 0..%d", slot, clusterSlots-1)
	}
	toID := c.id(t, to)
	what := fmt.Sprintf("MigrateSlot %d to %s", slot, to.Addr())
	states := c.wait(t, what+": cluster ok before", func([]*nodeState) string { return "" })
	v := states[0].view
	srcID := v.owners()[slot]
	if srcID == toID {
		return
	}
	if n := v.node(toID); !live(to) || n == nil || n.master != "" || !n.flags["master"] {
		t.Fatalf("redistest: %s: the target is not a live master", what)
	}
	src := c.byID[srcID]
	step := func(s *Server, args ...any) any {
		t.Helper()
		r, err := c.do(s, args...)
		if err != nil {
			t.Fatalf("redistest: %s: %v on %s: %v", what, args, s.Addr(), err)
		}
		return r
	}
	step(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	step(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	deadline := time.Now().Add(clusterWaitTimeout)
	for {
		keys, _ := step(src, "CLUSTER", "GETKEYSINSLOT", slot, migrateBatch).([]any)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to.Port(), "", 0, migrateTimeout}
		if c.password != "" {
			args = append(args, "AUTH", c.password)
		}
		args = append(append(args, "KEYS"), keys...)
		if _, err := c.do(src, args...); err != nil {
			t.Fatalf("redistest: %s: MIGRATE of %d keys (%v ...) from %s: %v", what, len(keys), keys[0], src.Addr(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: %s still holds keys of the slot after %v", what, src.Addr(), clusterWaitTimeout)
		}
	}
	// The target first, so it owns the slot (with a new config epoch)
	// before the source stops redirecting with ASK.
	step(to, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	step(src, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	for _, n := range v.nodes {
		s := c.byID[n.id]
		if n.flags["master"] && s != src && s != to && live(s) {
			step(s, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		}
	}
	c.wait(t, what, func(states []*nodeState) string {
		return c.notServedBy(states[0].view, []int{slot}, toID)
	})
}
