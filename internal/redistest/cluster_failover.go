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

// Failover makes master's first live replica (in the order of
// [Cluster.Nodes]) take over its slots with a graceful CLUSTER FAILOVER,
// sent to the replica: master pauses its clients until the replica has
// caught up, so no acknowledged write is lost (writes wait out the switch,
// then clients follow the MOVED redirection). It returns the promoted
// replica once every live node agrees that it serves master's slots and
// that master now follows it as a replica, and the cluster is healthy as
// [Cluster.WaitOK] defines it.
//
// Redis lets a replica run an election only 4 node timeouts (at least 4 s)
// after its previous one, and the masters vote to replace one master at
// most once per two node timeouts. So when this Cluster saw the replica
// promoted, or master replaced, less than that ago, Failover first waits
// out the rest (up to 12 s with the default node timeout: failing one shard
// back and forth takes that long per round trip); a failover Redis gives
// up on anyway is asked for again after 7 s. It fails the test after 60 s,
// or at once if master is not a live master serving slots or has no live
// replica. Otherwise it takes about 1 s.
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
	mid, pid := c.idOf[master], c.idOf[promoted]
	// Sent earlier, the failover would keep master's clients paused while
	// the replica waits for Redis to let it run an election.
	time.Sleep(time.Until(c.readyAt(promoted, master)))
	send()
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
	c.promotedOver(promoted, master)
	return promoted
}

// ForceFailover crashes master (SIGKILL by PID, as [Server.Kill]) and waits
// until the cluster has promoted one of its replicas, which it returns:
// every live node agrees that the replica serves master's slots and the
// cluster is healthy as [Cluster.WaitOK] defines it. The killed node stays
// down; [Cluster.Rejoin] brings it back. Writes master acknowledged before
// the replica had them are lost, as in production. Promotion takes the node
// timeout (until the masters mark master failed) plus about 1.5-2 s; with
// the default 3 s it takes about 5 s. When Redis would not yet let the
// replica win an election (see [Cluster.Failover]), it first waits so that
// it will by then. It fails the test after 60 s, or at once if master is
// not a live master serving slots, has no live replica, or the other live
// masters are no majority of the masters serving slots (so a cluster needs
// at least 3 masters for it).
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
	// Marking master failed, and electing its replica, takes the votes of
	// a majority of the masters that serve slots; master's is lost.
	v := c.anyView(t)
	serving, voters := 0, 0
	for _, n := range v.nodes {
		if len(n.slots) > 0 {
			serving++
			if s := c.byID[n.id]; s != master && s != nil && live(s) {
				voters++
			}
		}
	}
	if voters <= serving/2 {
		t.Fatalf("redistest: ForceFailover %s: only %d of the %d masters serving slots would be left to vote, not a majority (start at least 3 masters)", master.Addr(), voters, serving)
	}
	// So that the election, a node timeout and more after the kill, can
	// win at once and the outage stays as short as in production.
	var ready time.Time
	for _, r := range replicas {
		if at := c.readyAt(r, master); live(r) && at.After(ready) {
			ready = at
		}
	}
	time.Sleep(time.Until(ready.Add(-c.nodeTimeout)))
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
	c.promotedOver(promoted, master)
	return promoted
}

// promotedOver records that the node promoted has just won an election to
// replace the master old.
func (c *Cluster) promotedOver(promoted, old *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.elected[c.idOf[promoted]] = now
	c.replaced[c.idOf[old]] = now
}

// readyAt returns when Redis lets candidate, a replica of master, start an
// election that can win, as far as this Cluster knows: a replica starts a
// new election only 2*max(2*node timeout, 2 s) after its previous one
// (before that it logs "Failover attempt expired"), and a master votes to
// replace one master at most once per two node timeouts. Both are counted
// from when the last election was seen won, which is after it was held.
func (c *Cluster) readyAt(candidate, master *Server) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at time.Time
	if e, ok := c.elected[c.idOf[candidate]]; ok {
		at = e.Add(2 * max(2*c.nodeTimeout, 2*time.Second))
	}
	if r, ok := c.replaced[c.idOf[master]]; ok && r.Add(2*c.nodeTimeout).After(at) {
		at = r.Add(2 * c.nodeTimeout)
	}
	if at.IsZero() {
		return at
	}
	// For the clock of the node that ran the cron a moment earlier.
	return at.Add(200 * time.Millisecond)
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
	// A restarted node has no memory of its past elections.
	c.mu.Lock()
	delete(c.elected, id)
	c.mu.Unlock()
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
