package redistest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestKeySlot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"", 0},
		{"123456789", 0x31C3 % 16384}, // the CRC-16/XMODEM check value
		{"foo", 12182},
		{"bar", 5061},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"user1000", 3443},
		{"foo{}{bar}", 8363}, // empty first tag: the whole key is hashed
		{"foo{{bar}}zap", 4015},
		{"foo{bar}{zap}", 5061},
	} {
		if got := redistest.KeySlot(tc.key); got != tc.want {
			t.Errorf("KeySlot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

// clusterKeys are keys spread over all three masters' slots.
func clusterKeys() []string {
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprintf("durabus:%d", i)
	}
	return keys
}

// checkKeys reads every key through a new cluster client and fails the
// test if one does not hold its own name.
func checkKeys(t *testing.T, c *redistest.Cluster, keys []string) {
	t.Helper()
	ctx := context.Background()
	cc := c.Client(t)
	for _, k := range keys {
		if got, err := cc.Get(ctx, k).Result(); err != nil || got != k {
			t.Fatalf("GET %s (slot %d, master %s) = %q, %v; want %q", k, redistest.KeySlot(k), c.MasterOfKey(t, k).Addr(), got, err, k)
		}
	}
}

// TestClusterWithReplicas runs one cluster of 3 masters with a replica each
// (with a password, so masterauth and MIGRATE AUTH are exercised) through a
// graceful failover, a forced failover, a rejoin and a slot migration under
// writes.
func TestClusterWithReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const password = "cluster-secret"
	start := time.Now()
	c := redistest.StartCluster(t, 3, redistest.WithReplicas(1), redistest.WithNodeOptions(redistest.WithPassword(password)))
	t.Logf("cluster of 3 masters + 3 replicas ready in %v", time.Since(start).Round(time.Millisecond))

	masters := c.Masters(t)
	if !slices.Equal(masters, c.Nodes()[:3]) {
		t.Fatalf("Masters() = %v, want the first 3 of Nodes() %v", addrs(masters), c.Addrs())
	}
	for i, m := range masters {
		if r := c.ReplicasOf(t, m); len(r) != 1 || r[0] != c.Nodes()[3+i] || r[0].Role(t) != "slave" {
			t.Fatalf("ReplicasOf(%s) = %v, want [%s] as a replica", m.Addr(), addrs(r), c.Nodes()[3+i].Addr())
		}
	}

	t.Run("KeySlotMatchesServer", func(t *testing.T) {
		rdb := masters[0].Client(t)
		for _, k := range []string{"a", "durabus:orders", "durabus:{orders}:log", "{orders}", "x{}y", "{a}{b}", "é"} {
			want, err := rdb.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := redistest.KeySlot(k); got != int(want) {
				t.Errorf("KeySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
			}
			// StartCluster gives master i the slots i*16384/3 ..
			// (i+1)*16384/3-1.
			i := 0
			for (i+1)*16384/3 <= int(want) {
				i++
			}
			if m := c.MasterOfKey(t, k); m != masters[i] {
				t.Errorf("MasterOfKey(%q) (slot %d) = %s, want %s", k, want, m.Addr(), masters[i].Addr())
			}
		}
	})

	keys := clusterKeys()
	cc := c.Client(t)
	for _, k := range keys {
		if err := cc.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	for _, m := range masters {
		if n, err := m.Client(t).DBSize(ctx).Result(); err != nil || n == 0 {
			t.Fatalf("master %s holds %d keys (%v); want some", m.Addr(), n, err)
		}
	}

	t.Run("Failover", func(t *testing.T) {
		old := masters[0]
		replica := c.ReplicasOf(t, old)[0]
		begin := time.Now()
		promoted := c.Failover(t, old)
		t.Logf("graceful failover of %s to %s took %v", old.Addr(), promoted.Addr(), time.Since(begin).Round(time.Millisecond))
		if promoted != replica {
			t.Fatalf("Failover promoted %s, want its replica %s", promoted.Addr(), replica.Addr())
		}
		if got := c.Masters(t); got[0] != promoted {
			t.Fatalf("Masters() = %v, want %s first", addrs(got), promoted.Addr())
		}
		if role := old.Role(t); role != "slave" {
			t.Fatalf("old master %s has role %s, want slave", old.Addr(), role)
		}
		if r := c.ReplicasOf(t, promoted); len(r) != 1 || r[0] != old {
			t.Fatalf("ReplicasOf(promoted) = %v, want [%s]", addrs(r), old.Addr())
		}
		checkKeys(t, c, keys)

		// And back: the old master, now a replica, takes over again.
		begin = time.Now()
		if back := c.Failover(t, promoted); back != old {
			t.Fatalf("failing back promoted %s, want %s", back.Addr(), old.Addr())
		}
		t.Logf("failback to %s took %v", old.Addr(), time.Since(begin).Round(time.Millisecond))
		if got := c.Masters(t); !slices.Equal(got, masters) {
			t.Fatalf("Masters() after failback = %v, want %v", addrs(got), addrs(masters))
		}
		checkKeys(t, c, keys)
	})

	t.Run("ForceFailoverAndRejoin", func(t *testing.T) {
		victim := masters[1]
		replica := c.ReplicasOf(t, victim)[0]
		// What the replica has applied survives; writes it lacked at the
		// kill could be lost, so the check keeps to synced ones.
		replica.WaitInSync(t)
		begin := time.Now()
		promoted := c.ForceFailover(t, victim)
		t.Logf("forced failover of killed %s to %s took %v (node timeout 3 s)", victim.Addr(), promoted.Addr(), time.Since(begin).Round(time.Millisecond))
		if promoted != replica {
			t.Fatalf("ForceFailover promoted %s, want its replica %s", promoted.Addr(), replica.Addr())
		}
		if victim.Running() {
			t.Fatalf("the killed master %s runs again", victim.Addr())
		}
		if m := c.MasterOfSlot(t, 16384/2); m != promoted {
			t.Fatalf("MasterOfSlot(8192) = %s, want %s", m.Addr(), promoted.Addr())
		}
		checkKeys(t, c, keys)
		if err := c.Client(t).Set(ctx, "durabus:after-force", "x", 0).Err(); err != nil {
			t.Fatalf("SET after the forced failover: %v", err)
		}

		begin = time.Now()
		c.Rejoin(t, victim)
		t.Logf("rejoin of %s took %v", victim.Addr(), time.Since(begin).Round(time.Millisecond))
		if role := victim.Role(t); role != "slave" {
			t.Fatalf("rejoined %s has role %s, want slave", victim.Addr(), role)
		}
		if r := c.ReplicasOf(t, promoted); len(r) != 1 || r[0] != victim {
			t.Fatalf("ReplicasOf(%s) = %v, want [%s]", promoted.Addr(), addrs(r), victim.Addr())
		}
		want, _ := promoted.Client(t).DBSize(ctx).Result()
		if got, err := victim.Client(t).DBSize(ctx).Result(); err != nil || got != want {
			t.Fatalf("rejoined replica %s holds %d keys (%v), its master %d", victim.Addr(), got, err, want)
		}
	})

	t.Run("MigrateSlotUnderWrites", func(t *testing.T) {
		const tag = "{migrating}"
		slot := redistest.KeySlot(tag)
		src := c.MasterOfSlot(t, slot)
		var to *redistest.Server
		for _, m := range c.Masters(t) {
			if m != src {
				to = m
				break
			}
		}
		wc := c.Client(t)
		// Keys already in the slot: several MIGRATE batches.
		for i := range 1000 {
			k := fmt.Sprintf("durabus:%s:pre:%d", tag, i)
			if err := wc.Set(ctx, k, k, 0).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
		}
		var (
			mu       sync.Mutex
			acked    []string
			writeErr error
			stop     = make(chan struct{})
			done     = make(chan struct{})
		)
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// New keys and overwrites of keys not yet moved.
				k := fmt.Sprintf("durabus:%s:w:%d", tag, i)
				if i%2 == 1 {
					k = fmt.Sprintf("durabus:%s:pre:%d", tag, 999-i/2%1000)
				}
				if err := wc.Set(ctx, k, k, 0).Err(); err != nil {
					mu.Lock()
					writeErr = fmt.Errorf("SET %s: %w", k, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}()
		written := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(acked)
		}
		waitFor(t, 30*time.Second, "writer started", func() error {
			if n := written(); n < 50 {
				return fmt.Errorf("%d writes acknowledged", n)
			}
			return nil
		})
		before := written()
		begin := time.Now()
		c.MigrateSlot(t, slot, to)
		took := time.Since(begin)
		during := written() - before
		// Writes go on after the move too, through the new owner.
		after := written()
		waitFor(t, 30*time.Second, "writes after the move", func() error {
			if n := written() - after; n < 50 {
				return fmt.Errorf("%d writes acknowledged since", n)
			}
			return nil
		})
		close(stop)
		<-done
		t.Logf("MigrateSlot %d from %s to %s took %v with %d writes acknowledged meanwhile", slot, src.Addr(), to.Addr(), took.Round(time.Millisecond), during)
		if writeErr != nil {
			t.Fatalf("writer failed: %v", writeErr)
		}
		if m := c.MasterOfSlot(t, slot); m != to {
			t.Fatalf("MasterOfSlot(%d) = %s, want %s", slot, m.Addr(), to.Addr())
		}
		if n, err := src.Client(t).ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != 0 {
			t.Fatalf("source %s still holds %d keys of slot %d (%v)", src.Addr(), n, slot, err)
		}
		checkKeys(t, c, acked)
		n, err := to.Client(t).ClusterCountKeysInSlot(ctx, slot).Result()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("target %s holds %d keys of slot %d after %d acknowledged writes", to.Addr(), n, slot, len(acked))
		checkKeys(t, c, keys)
	})
}

func addrs(servers []*redistest.Server) []string {
	a := make([]string, len(servers))
	for i, s := range servers {
		a[i] = s.Addr()
	}
	return a
}
