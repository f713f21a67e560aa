package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots in a Redis Cluster.
const clusterSlots = 16384

// clusterReadyTimeout bounds how long StartCluster waits for cluster_state:ok.
// A fresh master reports ok only about 2 s after it starts (Redis's
// CLUSTER_WRITABLE_DELAY), so this is well above that.
const clusterReadyTimeout = 20 * time.Second

// Cluster is a Redis Cluster of masters without replicas, each a [Server]
// started by [StartCluster]. Its methods are safe for concurrent use.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters redis-server processes with cluster-enabled
// yes on free ports (whose cluster bus ports, port+10000, are free too),
// splits the 16384 slots evenly among them, joins them with CLUSTER MEET, and
// waits until every node reports cluster_state:ok, knows all masters and sees
// all slots served. Each node is stopped in t.Cleanup. Nodes can be stopped,
// killed and restarted one by one through [Cluster.Nodes]; nodes.conf in
// each node's Dir keeps its identity and slots across Restart.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 1 || masters > clusterSlots {
		t.Fatalf("redistest: StartCluster: masters = %d, want 1..%d", masters, clusterSlots)
	}
	c := &Cluster{nodes: make([]*Server, masters)}
	for i := range c.nodes {
		c.nodes[i] = Start(t, withCluster())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	admins := make([]*redis.Client, masters)
	for i, n := range c.nodes {
		admins[i] = redis.NewClient(&redis.Options{Addr: n.Addr(), Protocol: 2, DisableIdentity: true})
		defer admins[i].Close()
	}
	for i, admin := range admins {
		lo, hi := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		// Distinct config epochs, as redis-cli --cluster create sets them,
		// so the nodes need no epoch collision round.
		if err := admin.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %v", c.nodes[i].Addr(), err)
		}
		if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, c.nodes[i].Addr(), err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := admins[0].ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.Port())).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", n.Addr(), err)
		}
	}
	for {
		notReady := ""
		for i, admin := range admins {
			if why := clusterNotReady(ctx, admin, masters); why != "" {
				notReady = c.nodes[i].Addr() + ": " + why
				break
			}
		}
		if notReady == "" {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: cluster of %d not ready after %v: %s", masters, clusterReadyTimeout, notReady)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clusterNotReady returns why the node does not see a complete, healthy
// cluster of masters nodes, or "" if it does.
func clusterNotReady(ctx context.Context, admin *redis.Client, masters int) string {
	info, err := admin.ClusterInfo(ctx).Result()
	if err != nil {
		return err.Error()
	}
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		"cluster_slots_ok":       strconv.Itoa(clusterSlots),
		"cluster_known_nodes":    strconv.Itoa(masters),
		"cluster_size":           strconv.Itoa(masters),
	}
	got := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			got[k] = v
		}
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Sprintf("%s:%s, want %s", k, got[k], v)
		}
	}
	return ""
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in node order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the cluster's servers in node order; node i serves the i-th
// share of the slots. The slice is a copy.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Client returns a new go-redis cluster client seeded with all node
// addresses, closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}
