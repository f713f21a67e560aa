package redistest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/hashslot"
)

// clusterSlots is the number of hash slots in a Redis Cluster.
const clusterSlots = hashslot.Count

const (
	// defaultNodeTimeout is the cluster-node-timeout unless WithNodeTimeout
	// says otherwise. A killed master is promoted away about 1.5-2 s after
	// this (failure reports, the replica's 0.5-1 s election delay, the
	// vote), so a forced failover takes about 4-5 s; a node is suspected
	// only after it has not answered a cluster-bus ping for this long,
	// which a redis-server that is merely starved on a loaded 2-core
	// machine (or stalled by an fsync under appendfsync always) does not
	// come near.
	defaultNodeTimeout = 3 * time.Second
	// clusterWaitTimeout bounds every wait of a Cluster: start, WaitOK,
	// failovers, Rejoin and MigrateSlot. Healthy runs take seconds.
	clusterWaitTimeout = 60 * time.Second
	// clusterPoll is how often the waits ask the nodes.
	clusterPoll = 50 * time.Millisecond
)

// ClusterOption configures a cluster started by [StartCluster].
type ClusterOption func(*clusterConfig)

type clusterConfig struct {
	replicas    int
	nodeTimeout time.Duration
	nodeOpts    []Option
}

// WithReplicas gives every master n replicas, attached with CLUSTER
// REPLICATE. Default 0: masters only.
func WithReplicas(n int) ClusterOption {
	return func(c *clusterConfig) { c.replicas = n }
}

// WithNodeTimeout sets cluster-node-timeout: how long a node may leave a
// cluster-bus ping unanswered before the others suspect it, and so the bulk
// of how long [Cluster.ForceFailover] takes (about d + 2 s). Default 3 s.
// Much less risks false failovers on a loaded machine.
func WithNodeTimeout(d time.Duration) ClusterOption {
	return func(c *clusterConfig) { c.nodeTimeout = d }
}

// WithNodeOptions applies server options to every node, for example
// [WithAOF], [WithAOFEverySec] or [WithPassword] (all nodes share the
// password; replicas use it as masterauth, and MigrateSlot as MIGRATE AUTH).
// Default: none.
func WithNodeOptions(opts ...Option) ClusterOption {
	return func(c *clusterConfig) { c.nodeOpts = append(c.nodeOpts, opts...) }
}

// Cluster is a Redis Cluster of [Server] nodes started by [StartCluster]:
// masters, each with the same number of replicas. Its methods are safe for
// concurrent use.
//
// A node is live while it runs and is not paused ([Server.Pause]); the waits
// ask only live nodes. With the defaults (cluster-require-full-coverage
// yes, cluster-allow-reads-when-down no) the whole cluster refuses commands
// (CLUSTERDOWN) while some slot's master is marked failed and not yet
// replaced.
type Cluster struct {
	nodes       []*Server
	byID        map[string]*Server
	idOf        map[*Server]string
	password    string
	nodeTimeout time.Duration

	// When Failover and ForceFailover last saw a node win an election, and
	// the masters vote to replace a master, by node id; see readyAt.
	mu       sync.Mutex
	elected  map[string]time.Time
	replaced map[string]time.Time
}

// StartCluster starts masters*(1+replicas) redis-server processes with
// cluster-enabled yes on free 127.0.0.1 ports (whose cluster bus ports,
// port+10000, are free too). It splits the 16384 slots evenly among the
// masters, joins all nodes with CLUSTER MEET, attaches each master's
// replicas with CLUSTER REPLICATE, and waits, at most 60 s, until the
// cluster is healthy as [Cluster.WaitOK] defines it and every replica
// follows its master. Each node is stopped in t.Cleanup; nodes.conf in each
// node's Dir keeps its identity, role and slots across Restart.
//
// cluster-replica-validity-factor is 0, so a replica is promoted however
// long its link was down. Start-up takes about 3 s, most of it Redis's 2 s
// CLUSTER_WRITABLE_DELAY.
func StartCluster(t testing.TB, masters int, opts ...ClusterOption) *Cluster {
	t.Helper()
	cfg := clusterConfig{nodeTimeout: defaultNodeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case masters < 1 || masters > clusterSlots:
		t.Fatalf("redistest: StartCluster: masters = %d, want 1..%d", masters, clusterSlots)
	case cfg.replicas < 0 || cfg.replicas > 16:
		t.Fatalf("redistest: StartCluster: WithReplicas(%d), want 0..16", cfg.replicas)
	case cfg.nodeTimeout < 100*time.Millisecond:
		t.Fatalf("redistest: StartCluster: WithNodeTimeout(%v), want at least 100ms", cfg.nodeTimeout)
	}
	nodeOpts := append(slices.Clone(cfg.nodeOpts), withCluster(cfg.nodeTimeout))
	total := masters * (1 + cfg.replicas)
	c := &Cluster{
		nodes:       make([]*Server, total),
		byID:        map[string]*Server{},
		idOf:        map[*Server]string{},
		nodeTimeout: cfg.nodeTimeout,
		elected:     map[string]time.Time{},
		replaced:    map[string]time.Time{},
	}
	for i := range c.nodes {
		c.nodes[i] = Start(t, nodeOpts...)
	}
	c.password = c.nodes[0].cfg.password
	for _, n := range c.nodes {
		id, err := c.do(n, "CLUSTER", "MYID")
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", n.Addr(), err)
		}
		c.byID[id.(string)] = n
		c.idOf[n] = id.(string)
	}
	for i, n := range c.nodes[:masters] {
		lo, hi := i*clusterSlots/masters, (i+1)*clusterSlots/masters-1
		// Distinct config epochs, as redis-cli --cluster create sets them,
		// so the nodes need no epoch collision round.
		if _, err := c.do(n, "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			t.Fatalf("redistest: CLUSTER SET-CONFIG-EPOCH on %s: %v", n.Addr(), err)
		}
		if _, err := c.do(n, "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, n.Addr(), err)
		}
	}
	for _, n := range c.nodes[1:] {
		if _, err := c.do(c.nodes[0], "CLUSTER", "MEET", "127.0.0.1", n.Port()); err != nil {
			t.Fatalf("redistest: CLUSTER MEET %s: %v", n.Addr(), err)
		}
	}
	// masterOf[r] is the master replica r is to follow.
	masterOf := map[*Server]*Server{}
	for i, m := range c.nodes[:masters] {
		for j := range cfg.replicas {
			masterOf[c.nodes[masters+i*cfg.replicas+j]] = m
		}
	}
	// A replica accepts CLUSTER REPLICATE once the handshake has told it the
	// master's node id.
	deadline := time.Now().Add(clusterWaitTimeout)
	for _, r := range c.nodes[masters:] {
		for {
			_, err := c.do(r, "CLUSTER", "REPLICATE", c.idOf[masterOf[r]])
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "Unknown node") || time.Now().After(deadline) {
				t.Fatalf("redistest: CLUSTER REPLICATE %s on %s (to follow %s) after %v: %v", c.idOf[masterOf[r]], r.Addr(), masterOf[r].Addr(), clusterWaitTimeout, err)
			}
			time.Sleep(clusterPoll)
		}
	}
	c.wait(t, fmt.Sprintf("cluster of %d masters with %d replicas each", masters, cfg.replicas), func(states []*nodeState) string {
		if len(states) != total {
			return fmt.Sprintf("%d of %d nodes live", len(states), total)
		}
		for r, m := range masterOf {
			if got := states[0].view.masterOf(c.idOf[r]); got != c.idOf[m] {
				return fmt.Sprintf("%s sees %s following %q, want %s (%s)", states[0].srv.Addr(), r.Addr(), got, c.idOf[m], m.Addr())
			}
		}
		return ""
	})
	return c
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in the order of
// [Cluster.Nodes].
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns all the cluster's servers, stopped ones too: first the
// masters as started (node i served the i-th share of the slots), then the
// replicas (replica j of master i at masters+i*replicas+j). Failovers change
// the roles; [Cluster.Masters] and [Cluster.ReplicasOf] tell the current
// ones. The slice is a copy.
func (c *Cluster) Nodes() []*Server {
	return append([]*Server(nil), c.nodes...)
}

// Client returns a new go-redis cluster client seeded with all node
// addresses, closed in t.Cleanup.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: c.password})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// WaitOK waits, at most 60 s, until the cluster is healthy: every live
// node reports cluster_state:ok with all 16384 slots assigned and ok and
// every node of the cluster known; all live nodes agree on the master of
// every slot (a live node) and on every live node's role and master; none
// sees a live node as failing (fail, pfail, handshake, noaddr); and every
// live replica has master_link_status:up with no sync in progress. It fails
// the test with the first thing not yet so (node, field, value).
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	c.wait(t, "cluster ok", func([]*nodeState) string { return "" })
}

// Masters returns the nodes that serve slots, ordered by their lowest slot,
// as the first live node that answers sees them (after [Cluster.WaitOK] all
// live nodes agree).
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	v := c.anyView(t)
	var ms []*Server
	for _, n := range v.nodes {
		if len(n.slots) > 0 {
			ms = append(ms, c.server(t, n.id))
		}
	}
	lowest := func(s *Server) int { return v.slotsOf(c.idOf[s])[0] }
	slices.SortFunc(ms, func(a, b *Server) int { return lowest(a) - lowest(b) })
	return ms
}

// ReplicasOf returns the nodes that follow master, stopped ones included,
// in the order of [Cluster.Nodes], as the first live node that answers
// sees them.
func (c *Cluster) ReplicasOf(t testing.TB, master *Server) []*Server {
	t.Helper()
	return c.replicasIn(t, c.anyView(t), master)
}

// MasterOfSlot returns the node that serves slot (0..16383), as the first
// live node that answers sees it. It fails the test if no node serves it.
func (c *Cluster) MasterOfSlot(t testing.TB, slot int) *Server {
	t.Helper()
	if slot < 0 || slot >= clusterSlots {
		t.Fatalf("redistest: MasterOfSlot(%d): want 0..%d", slot, clusterSlots-1)
	}
	v := c.anyView(t)
	id := v.owners()[slot]
	if id == "" {
		t.Fatalf("redistest: %s sees no master of slot %d", v.from.Addr(), slot)
	}
	return c.server(t, id)
}

// MasterOfKey returns the node that serves key's slot ([KeySlot]), as
// [Cluster.MasterOfSlot] does.
func (c *Cluster) MasterOfKey(t testing.TB, key string) *Server {
	t.Helper()
	return c.MasterOfSlot(t, KeySlot(key))
}

// replicasIn returns the nodes that v lists as following master, in node
// order.
func (c *Cluster) replicasIn(t testing.TB, v *clusterView, master *Server) []*Server {
	t.Helper()
	id := c.id(t, master)
	var rs []*Server
	for _, s := range c.nodes {
		if n := v.node(c.idOf[s]); n != nil && n.master == id {
			rs = append(rs, s)
		}
	}
	return rs
}

// id returns s's node id, failing the test if s is not a node of c.
func (c *Cluster) id(t testing.TB, s *Server) string {
	t.Helper()
	id, ok := c.idOf[s]
	if !ok {
		t.Fatalf("redistest: %s is not a node of this cluster", s.Addr())
	}
	return id
}

// server returns the node with id, failing the test if there is none.
func (c *Cluster) server(t testing.TB, id string) *Server {
	t.Helper()
	s, ok := c.byID[id]
	if !ok {
		t.Fatalf("redistest: node id %s is not a node of this cluster", id)
	}
	return s
}

// do runs one admin command on node s.
func (c *Cluster) do(s *Server, args ...any) (any, error) {
	return command(s.Addr(), c.password, args...)
}

// live reports whether s runs and is not paused.
func live(s *Server) bool { return s.Running() && !s.Paused() }

// anyView returns the CLUSTER NODES view of the first live node that
// answers.
func (c *Cluster) anyView(t testing.TB) *clusterView {
	t.Helper()
	var errs []string
	for _, s := range c.nodes {
		if !live(s) {
			continue
		}
		v, err := c.viewOf(s)
		if err == nil {
			return v
		}
		errs = append(errs, s.Addr()+": "+err.Error())
	}
	t.Fatalf("redistest: no live cluster node answers CLUSTER NODES: %s", strings.Join(errs, "; "))
	return nil
}

func (c *Cluster) viewOf(s *Server) (*clusterView, error) {
	v, err := c.do(s, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	str, _ := v.(string)
	return parseClusterNodes(s, str)
}

// nodeState is what one live node reports in one poll.
type nodeState struct {
	srv  *Server
	info map[string]string // CLUSTER INFO
	view *clusterView      // CLUSTER NODES
	repl map[string]string // INFO replication
	err  error
}

// poll asks every live node for its state.
func (c *Cluster) poll() []*nodeState {
	var states []*nodeState
	for _, s := range c.nodes {
		if live(s) {
			states = append(states, c.stateOf(s))
		}
	}
	return states
}

func (c *Cluster) stateOf(s *Server) *nodeState {
	st := &nodeState{srv: s}
	rc, err := dialRESP(s.Addr(), c.password)
	if err != nil {
		st.err = err
		return st
	}
	defer rc.Close()
	text := func(args ...any) string {
		if st.err != nil {
			return ""
		}
		v, err := rc.do(args...)
		if err != nil {
			st.err = fmt.Errorf("%v: %w", args, err)
		}
		str, _ := v.(string)
		return str
	}
	st.info = parseInfo(text("CLUSTER", "INFO"))
	nodes := text("CLUSTER", "NODES")
	st.repl = parseInfo(text("INFO", "replication"))
	if st.err == nil {
		st.view, st.err = parseClusterNodes(s, nodes)
	}
	return st
}

// wait polls until the cluster is healthy (see WaitOK) and cond, asked only
// then, returns ""; it returns the states of that poll. After
// clusterWaitTimeout it fails the test with the last reason, what naming
// the goal.
func (c *Cluster) wait(t testing.TB, what string, cond func([]*nodeState) string) []*nodeState {
	t.Helper()
	start := time.Now()
	for {
		states := c.poll()
		why := c.unhealthy(states)
		if why == "" {
			why = cond(states)
		}
		if why == "" {
			return states
		}
		if time.Since(start) > clusterWaitTimeout {
			t.Fatalf("redistest: %s: not ready after %v: %s", what, clusterWaitTimeout, why)
		}
		time.Sleep(clusterPoll)
	}
}

// unhealthy returns the first reason the polled states are not a healthy
// cluster as WaitOK defines it, or "".
func (c *Cluster) unhealthy(states []*nodeState) string {
	if len(states) == 0 {
		return "no node is live"
	}
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		"cluster_slots_ok":       strconv.Itoa(clusterSlots),
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
	}
	isLive := map[string]bool{}
	for _, st := range states {
		isLive[c.idOf[st.srv]] = true
	}
	var refOwners []string
	var refRoles map[string]string
	for i, st := range states {
		addr := st.srv.Addr()
		if st.err != nil {
			return addr + ": " + st.err.Error()
		}
		for _, k := range []string{"cluster_state", "cluster_slots_assigned", "cluster_slots_ok", "cluster_known_nodes"} {
			if st.info[k] != want[k] {
				return fmt.Sprintf("%s: %s:%s, want %s", addr, k, st.info[k], want[k])
			}
		}
		for _, n := range st.view.nodes {
			s := c.byID[n.id]
			if s == nil {
				return fmt.Sprintf("%s: knows node %s %s, not of this cluster", addr, n.id, n.addr)
			}
			if !isLive[n.id] {
				continue
			}
			for _, f := range []string{"fail", "fail?", "handshake", "noaddr"} {
				if n.flags[f] {
					return fmt.Sprintf("%s: sees %s with flag %s", addr, s.Addr(), f)
				}
			}
		}
		owners := st.view.owners()
		roles := st.view.roles(isLive)
		if i == 0 {
			refOwners, refRoles = owners, roles
			for slot, id := range owners {
				if !isLive[id] {
					return fmt.Sprintf("%s: slot %d served by %s, which is not live", addr, slot, c.addrOf(id))
				}
			}
		} else {
			for slot := range owners {
				if owners[slot] != refOwners[slot] {
					return fmt.Sprintf("slot %d: %s sees it served by %s, %s by %s", slot, states[0].srv.Addr(), c.addrOf(refOwners[slot]), addr, c.addrOf(owners[slot]))
				}
			}
			for id, role := range roles {
				if refRoles[id] != role {
					return fmt.Sprintf("%s: %s sees it as %s, %s as %s", c.addrOf(id), states[0].srv.Addr(), c.roleText(refRoles[id]), addr, c.roleText(role))
				}
			}
		}
		if me := st.view.myself(); me != nil && me.master != "" {
			if v := st.repl["master_link_status"]; v != "up" {
				return fmt.Sprintf("%s (replica of %s): master_link_status:%s, want up", addr, c.addrOf(me.master), v)
			}
			if v := st.repl["master_sync_in_progress"]; v != "0" {
				return fmt.Sprintf("%s (replica of %s): master_sync_in_progress:%s, want 0", addr, c.addrOf(me.master), v)
			}
		}
	}
	return ""
}

// addrOf names a node id by its server's address, for messages.
func (c *Cluster) addrOf(id string) string {
	if s := c.byID[id]; s != nil {
		return s.Addr()
	}
	if id == "" {
		return "no node"
	}
	return "unknown node " + id
}

// roleText turns a roles() value into words, for messages.
func (c *Cluster) roleText(role string) string {
	if m, ok := strings.CutPrefix(role, "replica of "); ok {
		return "replica of " + c.addrOf(m)
	}
	if role == "" {
		return "unknown"
	}
	return role
}
