package main

// The private Redis Cluster of the cluster cases (issue 15), and the
// standalone pair they are compared with.
//
// startCluster starts 2×masters redis-server processes on loopback, each
// with cluster-enabled yes and persistence off (as startRedis), on a port
// whose cluster bus port (port+10000) is free too: masters 0..m-1, then
// replica i of master i. It gives master i the i-th even share of the 16384
// slots (CLUSTER ADDSLOTSRANGE, with distinct config epochs as redis-cli
// --cluster create sets them), joins every node with CLUSTER MEET, attaches
// each replica with CLUSTER REPLICATE, and returns once every node reports
// cluster_state:ok, knows every node and sees every slot served, and every
// replica is in sync. The standalone pair (startPair) is one master and
// one replica with the same settings but cluster-enabled no, so that the
// comparison isolates what cluster mode costs: replication is paid on both
// sides.
//
// stop kills every process by the PID it was started with (never by name),
// waits for it and removes its directory; startCluster and startPair call
// it themselves when they fail half-way.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	clusterSlots = 16384
	// clusterNodeTimeout is cluster-node-timeout, in ms. A graceful
	// failover does not wait for it, but a master votes about the
	// replacement of a given master at most once in twice that time.
	clusterNodeTimeout = 1000
	// clusterReady bounds the wait for a healthy cluster: a fresh master
	// says cluster_state:ok only about 2 s after it starts.
	clusterReady = 30 * time.Second
	// failoverTimeout bounds one graceful failover and the resync after it.
	failoverTimeout = 30 * time.Second
)

// cluster is a private Redis Cluster: shard i is served by nodes[i] and
// nodes[masters+i], either of which may be its master after failovers.
type cluster struct {
	masters  int
	nodes    []*server
	admin    []*redis.Client // one per node, same order
	ids      []string        // node ids, same order
	replaced []time.Time     // when a failover last replaced each node as master
	elected  []time.Time     // when each node last ran for master
}

func (c *cluster) stop() {
	for _, a := range c.admin {
		_ = a.Close()
	}
	for _, n := range c.nodes {
		n.stop()
	}
}

// addrs returns every node's address (masters first): a ClusterClient's
// seeds.
func (c *cluster) addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// newAdmin returns a client for one node, for INFO, ROLE and CLUSTER.
func newAdmin(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
}

// startCluster starts masters masters with one replica each (see the file
// comment).
func startCluster(ctx context.Context, bin string, masters int) (c *cluster, err error) {
	if masters < 1 || masters > 64 {
		return nil, fmt.Errorf("cluster: %d masters, want 1..64", masters)
	}
	c = &cluster{masters: masters}
	defer func() {
		if err != nil {
			c.stop()
			c = nil
		}
	}()
	for range 2 * masters {
		s, err := startRedisWith(bin, 65535-10000, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout))
		if err != nil {
			return c, fmt.Errorf("cluster node: %w", err)
		}
		s.name = "redis cluster node"
		c.nodes = append(c.nodes, s)
		c.admin = append(c.admin, newAdmin(s.addr))
	}
	ctx, cancel := context.WithTimeout(ctx, clusterReady)
	defer cancel()
	for i, a := range c.admin {
		id, err := a.ClusterMyID(ctx).Result()
		if err != nil {
			return c, fmt.Errorf("CLUSTER MYID on %s: %w", c.nodes[i].addr, err)
		}
		c.ids = append(c.ids, id)
	}
	for i := range masters {
		lo, hi := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		if err := c.admin[i].Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err(); err != nil {
			return c, fmt.Errorf("CLUSTER SET-CONFIG-EPOCH on %s: %w", c.nodes[i].addr, err)
		}
		if err := c.admin[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err(); err != nil {
			return c, fmt.Errorf("CLUSTER ADDSLOTSRANGE %d %d on %s: %w", lo, hi, c.nodes[i].addr, err)
		}
	}
	for _, n := range c.nodes[1:] {
		if err := c.admin[0].ClusterMeet(ctx, "127.0.0.1", strings.TrimPrefix(n.addr, "127.0.0.1:")).Err(); err != nil {
			return c, fmt.Errorf("CLUSTER MEET %s: %w", n.addr, err)
		}
	}
	// A replica can follow a master only once it knows it.
	for i := range masters {
		r := masters + i
		if err := until(ctx, "replica "+c.nodes[r].addr+" knows its master", func() (string, bool) {
			err := c.admin[r].ClusterReplicate(ctx, c.ids[i]).Err()
			if err != nil {
				return err.Error(), false
			}
			return "", true
		}); err != nil {
			return c, err
		}
	}
	if err := until(ctx, "cluster ready", c.notReady); err != nil {
		return c, err
	}
	return c, nil
}

// until calls check every 20 ms until it reports done or ctx ends; the
// error names what was awaited and check's last reason.
func until(ctx context.Context, what string, check func() (why string, done bool)) error {
	for {
		why, done := check()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up (%v): %s", what, ctx.Err(), why)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// notReady says why the cluster is not yet healthy (see startCluster), or
// reports done.
func (c *cluster) notReady() (string, bool) {
	ctx := context.Background()
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		"cluster_slots_ok":       strconv.Itoa(clusterSlots),
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
		"cluster_size":           strconv.Itoa(c.masters),
	}
	for i, a := range c.admin {
		info, err := a.ClusterInfo(ctx).Result()
		if err != nil {
			return c.nodes[i].addr + ": " + err.Error(), false
		}
		got := fields(info)
		for k, v := range want {
			if got[k] != v {
				return fmt.Sprintf("%s: %s:%s, want %s", c.nodes[i].addr, k, got[k], v), false
			}
		}
	}
	for i, a := range c.admin {
		if why := replicaNotInSync(ctx, a); why != "" && why != "master" {
			return c.nodes[i].addr + ": " + why, false
		}
	}
	// Each shard has one master and one replica.
	for s := range c.masters {
		if _, _, err := c.roles(ctx, s); err != nil {
			return err.Error(), false
		}
	}
	return "", true
}

// fields parses INFO-style "key:value" lines.
func fields(info string) map[string]string {
	got := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			got[k] = v
		}
	}
	return got
}

// replicaNotInSync returns "master" for a master, "" for a replica whose
// link is up with no sync in progress, else why not.
func replicaNotInSync(ctx context.Context, a *redis.Client) string {
	info, err := a.Info(ctx, "replication").Result()
	if err != nil {
		return err.Error()
	}
	f := fields(info)
	switch {
	case f["role"] == "master":
		return "master"
	case f["master_link_status"] != "up":
		return "master_link_status:" + f["master_link_status"]
	case f["master_sync_in_progress"] != "0":
		return "master_sync_in_progress:" + f["master_sync_in_progress"]
	}
	return ""
}

// role returns "master" or "slave" from ROLE.
func role(ctx context.Context, a *redis.Client) (string, error) {
	v, err := a.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("ROLE: empty reply")
	}
	s, _ := v[0].(string)
	return s, nil
}

// roles returns the node indexes of shard s's master and replica.
func (c *cluster) roles(ctx context.Context, s int) (master, replica int, err error) {
	a, b := s, c.masters+s
	ra, err := role(ctx, c.admin[a])
	if err != nil {
		return 0, 0, fmt.Errorf("ROLE on %s: %w", c.nodes[a].addr, err)
	}
	rb, err := role(ctx, c.admin[b])
	if err != nil {
		return 0, 0, fmt.Errorf("ROLE on %s: %w", c.nodes[b].addr, err)
	}
	switch {
	case ra == "master" && rb == "slave":
		return a, b, nil
	case ra == "slave" && rb == "master":
		return b, a, nil
	}
	return 0, 0, fmt.Errorf("shard %d: %s is %s and %s is %s, want one master and one replica", s, c.nodes[a].addr, ra, c.nodes[b].addr, rb)
}

// failover runs a graceful CLUSTER FAILOVER on shard s's replica, once
// shard s is ready for one (waitShard, and the masters' vote delay below,
// neither timed). It returns when the command was first sent, when the
// failover was seen complete (the replica says it is master, the old master
// says it is a replica, and the new master sees cluster_state:ok), and how
// many times the command was sent again: Redis drops a manual failover
// whose election does not end within 5 s (CLUSTER_MF_TIMEOUT).
func (c *cluster) failover(ctx context.Context, s int) (sent, completed time.Time, resent int, err error) {
	ctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	if err := c.waitShard(ctx, s); err != nil {
		return sent, completed, 0, err
	}
	m, r, err := c.roles(ctx, s)
	if err != nil {
		return sent, completed, 0, err
	}
	// Two rate limits of Redis's elections: a master votes about the
	// replacement of a given master at most once in 2 × cluster-node-timeout,
	// and a replica starts an election at most once in 2 × max(2 ×
	// cluster-node-timeout, 2 s) (else a manual failover waits for its
	// next chance, seconds later). Wait for both, untimed.
	if c.replaced == nil {
		c.replaced, c.elected = make([]time.Time, len(c.nodes)), make([]time.Time, len(c.nodes))
	}
	const margin = 300 * time.Millisecond
	if w := max(time.Until(c.replaced[m].Add(2*clusterNodeTimeout*time.Millisecond+margin)),
		time.Until(c.elected[r].Add(2*max(2*clusterNodeTimeout*time.Millisecond, 2*time.Second)+margin))); w > 0 {
		time.Sleep(w)
	}
	done := func() (string, bool) {
		rr, err := role(ctx, c.admin[r])
		if err != nil || rr != "master" {
			return fmt.Sprintf("%s is %s (%v)", c.nodes[r].addr, rr, err), false
		}
		rm, err := role(ctx, c.admin[m])
		if err != nil || rm != "slave" {
			return fmt.Sprintf("%s is %s (%v)", c.nodes[m].addr, rm, err), false
		}
		info, err := c.admin[r].ClusterInfo(ctx).Result()
		if err != nil || fields(info)["cluster_state"] != "ok" {
			return fmt.Sprintf("%s: cluster_state:%s (%v)", c.nodes[r].addr, fields(info)["cluster_state"], err), false
		}
		return "", true
	}
	sent = time.Now()
	for try := 0; ; try++ {
		c.replaced[m], c.elected[r] = time.Now(), time.Now()
		if err := c.admin[r].ClusterFailover(ctx).Err(); err != nil {
			return sent, completed, try, fmt.Errorf("CLUSTER FAILOVER on %s: %w", c.nodes[r].addr, err)
		}
		tctx, tcancel := context.WithTimeout(ctx, 6*time.Second)
		err = until(tctx, "failover of shard "+strconv.Itoa(s), done)
		tcancel()
		if err == nil {
			return sent, time.Now(), try, nil
		}
		if ctx.Err() != nil || try == 2 {
			return sent, completed, try, fmt.Errorf("%w\nreplica %s:\n%s\nmaster %s:\n%s", err, c.nodes[r].addr, c.nodes[r].logTail(8), c.nodes[m].addr, c.nodes[m].logTail(8))
		}
	}
}

// waitShard waits until shard s can fail over gracefully: its replica's
// link is up with no sync in progress, and every node's CLUSTER NODES
// agrees on which of its two nodes replicates which (a master ignores the
// failover request of a replica it does not yet know as its own).
func (c *cluster) waitShard(ctx context.Context, s int) error {
	return until(ctx, "shard "+strconv.Itoa(s)+" ready", func() (string, bool) {
		m, r, err := c.roles(ctx, s)
		if err != nil {
			return err.Error(), false
		}
		if why := replicaNotInSync(ctx, c.admin[r]); why != "" {
			return c.nodes[r].addr + ": " + why, false
		}
		want := map[string]string{c.ids[m]: "-", c.ids[r]: c.ids[m]} // whose replica ("-": a master)
		for i, a := range c.admin {
			nodes, err := a.ClusterNodes(ctx).Result()
			if err != nil {
				return c.nodes[i].addr + ": " + err.Error(), false
			}
			for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
				f := strings.Fields(line)
				if len(f) < 8 {
					continue
				}
				if w, ok := want[f[0]]; ok && (w != f[3] || strings.Contains(f[2], "fail")) {
					return fmt.Sprintf("%s sees %s as %s of %s", c.nodes[i].addr, f[0], f[2], f[3]), false
				}
			}
		}
		return "", true
	})
}

// waitSynced waits until every shard can fail over gracefully (waitShard).
func (c *cluster) waitSynced(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, failoverTimeout)
	defer cancel()
	for s := range c.masters {
		if err := c.waitShard(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// pair is the standalone comparison of the cluster cases: a master and
// its replica, cluster-enabled no.
type pair struct {
	master, replica *server
	admin, radmin   *redis.Client
}

func (p *pair) stop() {
	if p.admin != nil {
		_ = p.admin.Close()
	}
	if p.radmin != nil {
		_ = p.radmin.Close()
	}
	p.replica.stop()
	p.master.stop()
}

// startPair starts a standalone master and a replica of it, and waits
// until the replica is in sync.
func startPair(ctx context.Context, bin string) (p *pair, err error) {
	p = &pair{}
	defer func() {
		if err != nil {
			p.stop()
			p = nil
		}
	}()
	if p.master, err = startRedis(bin); err != nil {
		return p, err
	}
	p.admin = newAdmin(p.master.addr)
	host, port, _ := strings.Cut(p.master.addr, ":")
	if p.replica, err = startRedisWith(bin, 0, "--replicaof", host, port); err != nil {
		return p, err
	}
	p.radmin = newAdmin(p.replica.addr)
	ctx, cancel := context.WithTimeout(ctx, clusterReady)
	defer cancel()
	return p, until(ctx, "standalone replica in sync", func() (string, bool) {
		why := replicaNotInSync(ctx, p.radmin)
		return why, why == ""
	})
}
