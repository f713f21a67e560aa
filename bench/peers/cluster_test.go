package main

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// The starter of the cluster cases: a healthy cluster of 3 masters with a
// replica each, a graceful failover that swaps a shard's roles, and every
// process gone after stop.
func TestClusterStartsFailsOverAndStops(t *testing.T) {
	ctx := context.Background()
	c, err := startCluster(ctx, "redis-server", 3)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()
	for s := range 3 {
		m, r, err := c.roles(ctx, s)
		if err != nil || m != s || r != 3+s {
			t.Fatalf("shard %d: master %d, replica %d, %v; want %d and %d", s, m, r, err, s, 3+s)
		}
	}
	for i := range 2 {
		sent, done, _, err := c.failover(ctx, 1)
		if err != nil {
			t.Fatalf("failover %d: %v", i+1, err)
		}
		t.Logf("failover %d of shard 1: %v", i+1, done.Sub(sent))
		if err := c.waitSynced(ctx); err != nil {
			t.Fatal(err)
		}
		m, _, err := c.roles(ctx, 1)
		if want := []int{4, 1}[i]; err != nil || m != want {
			t.Fatalf("after failover %d, shard 1's master is node %d (%v), want %d", i+1, m, err, want)
		}
	}
	var pids []int
	for _, n := range c.nodes {
		pids = append(pids, n.cmd.Process.Pid)
	}
	c.stop()
	stopped = true
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still there after stop: %v", pid, err)
		}
	}
	for _, n := range c.nodes {
		if _, err := os.Stat(n.dir); !os.IsNotExist(err) {
			t.Errorf("%s still there after stop", n.dir)
		}
	}
}
