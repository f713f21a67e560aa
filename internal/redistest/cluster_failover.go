package redistest

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// manualFailoverTimeout is how long Redis lets a CLUSTER FAILOVER run
// before it gives up (CLUSTER_MF_TIMEOUT); Failover sends it again after
// that.
const manualFailoverTimeout = 5 * time.Second

// Failover makes one of master's live replicas take over its slots with a
// graceful CLUSTER FAILOVER, sent to the replica: the master stops its
// clients until the replica has caught up, so no acknowledged write is lost
// (writes wait out the switch, and clients then follow the MOVED
// redirection). It returns the promoted replica once every live node agrees
// that it serves master's slots, that master now follows it as a replica,
// and the cluster is healthy as [Cluster.WaitOK] defines it. A failover
// Redis gives up on (a master votes for a replica of the same master at
// most once per two node timeouts) is asked for again. It fails the test
// after 60 s, or at once if master is not a live master serving slots or
// has no live replica. It usually takes well under a second.
func (c *Cluster) Failover(t testing.TB, master *Server) (promoted *Server) {
	t.Helper()
	slots, replicas := c.shard(t, master, "Failover")
	for _, r := range replicas {
		if live(r) {
			promoted = r
			break
		}
	}
	if promoted == nil {
		t.Fatalf("redistest: Failover %s: it has no live replica", master.Addr())
	}
	resend := max(manualFailoverTimeout+time.Second, 2*c.nodeTimeout+time.Second)
	var sent time.Time
	send := func() {
		if _, err := c.do(promoted, "CLUSTER", "FAILOVER"); err != nil {
			t.Fatalf("redistest: Failover %s: CLUSTER FAILOVER on its replica %s: %v", master.Addr(), promoted.Addr(), err)
		}
		sent = time.Now()
	}
	send()
	mid, pid := c.idOf[master], c.idOf[promoted]
	c.wait(t, fmt.Sprintf("graceful failover of %s to its replica %s", master.Addr(), promoted.Addr()), func(states []*nodeState) string {
		v := states[0].view
		if why := c.notServedBy(v, slots, pid); why != "" {
			// The cluster is healthy with the old roles: Redis gave up.
			if time.Since(sent) > resend {
				send()
			}
			return why
		}
		if got := v.masterOf(mid); got != pid {
			return fmt.Sprintf("%s: sees the old master %s as %s, want replica of %s", v.from.Addr(), master.Addr(), c.roleText(v.roles(map[string]bool{mid: true})[mid]), promoted.Addr())
		}
		return ""
	})
	return promoted
}

// ForceFailover crashes master (SIGKILL by PID, as [Server.Kill]) and waits
// until the cluster has promoted one of its replicas, which it returns:
// every live node agrees that the replica serves master's slots and the
// cluster is healthy as [Cluster.WaitOK] defines it. The killed node stays
// down; [Cluster.Rejoin] brings it back. Writes master acknowledged before
// the replica had them are lost, as in production. Promotion takes the node
// timeout (until the masters mark master failed) plus about 1.5-2 s; with
// the default 3 s it takes about 5 s. It fails the test after 60 s, or at
// once if master is not a live master serving slots or has no live replica.
func (c *Cluster) ForceFailover(t testing.TB, master *Server) (promoted *Server) {
	t.Helper()
	slots, replicas := c.shard(t, master, "ForceFailover")
	var ids []string
	for _, r := range replicas {
		if live(r) {
			ids = append(ids, c.idOf[r])
		}
	}
	if len(ids) == 0 {
		t.Fatalf("redistest: ForceFailover %s: it has no live replica", master.Addr())
	}
	master.Kill(t)
	c.wait(t, fmt.Sprintf("forced failover of killed %s", master.Addr()), func(states []*nodeState) string {
		v := states[0].view
		owner := v.owners()[slots[0]]
		if !slices.Contains(ids, owner) {
			return fmt.Sprintf("%s: slot %d served by %s, not by a replica of %s", v.from.Addr(), slots[0], c.addrOf(owner), master.Addr())
		}
		if why := c.notServedBy(v, slots, owner); why != "" {
			return why
		}
		promoted = c.byID[owner]
		return ""
	})
	return promoted
}

// Rejoin restarts node, a cluster node that was killed or stopped, on its
// port and dir; nodes.conf keeps its identity. A former master whose slots
// a replica took over learns so from the others and rejoins as that
// replica's replica (resyncing its data from it); any other node rejoins in
// the role it had. It returns once the cluster is healthy as
// [Cluster.WaitOK] defines it, with node live and, if a replica, in sync.
// It fails the test after 60 s (plus Restart's 10 s), or at once if node
// is running.
func (c *Cluster) Rejoin(t testing.TB, node *Server) {
	t.Helper()
	id := c.id(t, node)
	if node.Running() {
		t.Fatalf("redistest: Rejoin %s: it is running; Rejoin restarts a killed or stopped node", node.Addr())
	}
	node.Restart(t)
	c.wait(t, fmt.Sprintf("rejoin of %s", node.Addr()), func(states []*nodeState) string {
		for _, st := range states {
			if st.srv == node {
				return ""
			}
		}
		return fmt.Sprintf("%s (%s) is not live", node.Addr(), id)
	})
}

// shard returns the slots master serves and the replicas that follow it, as
// master itself sees them, failing the test if master is not a live master
// serving slots.
func (c *Cluster) shard(t testing.TB, master *Server, op string) (slots []int, replicas []*Server) {
	t.Helper()
	id := c.id(t, master)
	if !live(master) {
		t.Fatalf("redistest: %s %s: it is not live (stopped or paused)", op, master.Addr())
	}
	v, err := c.viewOf(master)
	if err != nil {
		t.Fatalf("redistest: %s %s: CLUSTER NODES: %v", op, master.Addr(), err)
	}
	me := v.myself()
	if me == nil || me.id != id {
		t.Fatalf("redistest: %s %s: CLUSTER NODES names no myself entry %s", op, master.Addr(), id)
	}
	slots = v.slotsOf(id)
	if me.master != "" || len(slots) == 0 {
		t.Fatalf("redistest: %s %s: it is not a master serving slots (it is %s, serving %d slots)", op, master.Addr(), c.roleText(v.roles(map[string]bool{id: true})[id]), len(slots))
	}
	return slots, c.replicasIn(t, v, master)
}

// notServedBy returns the first of slots that v does not see served by
// node id, or "" if it sees id serve them all.
func (c *Cluster) notServedBy(v *clusterView, slots []int, id string) string {
	owners := v.owners()
	for _, s := range slots {
		if owners[s] != id {
			return fmt.Sprintf("%s: slot %d served by %s, want %s", v.from.Addr(), s, c.addrOf(owners[s]), c.addrOf(id))
		}
	}
	return ""
}
