package redistest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the name under which [StartSentinels] monitors the
// master; pass it as redis.FailoverOptions.MasterName.
const SentinelMasterName = "durabus"

// sentinelReadyTimeout bounds how long StartSentinels waits for the
// sentinels to know the master, its replicas and each other.
const sentinelReadyTimeout = 30 * time.Second

// sentinelConf is the monitoring part of a sentinel's config file.
type sentinelConf struct {
	master          string // "127.0.0.1:PORT"
	quorum          int
	downAfter       time.Duration
	failoverTimeout time.Duration
	authPass        string
}

func (c *sentinelConf) write(line func(format string, args ...any)) {
	host, port, _ := net.SplitHostPort(c.master)
	name := SentinelMasterName
	line("sentinel monitor %s %s %s %d", name, host, port, c.quorum)
	line("sentinel down-after-milliseconds %s %d", name, c.downAfter.Milliseconds())
	line("sentinel failover-timeout %s %d", name, c.failoverTimeout.Milliseconds())
	line("sentinel parallel-syncs %s 1", name)
	if c.authPass != "" {
		line("sentinel auth-pass %s %s", name, quote(c.authPass))
	}
}

// SentinelOption configures the sentinels started by [StartSentinels].
type SentinelOption func(*sentinelConf)

// WithDownAfter sets down-after-milliseconds: how long the master must not
// answer before a sentinel thinks it is down. Default 1 s, so a failover
// takes a few seconds. Much less risks false failovers on a loaded machine.
func WithDownAfter(d time.Duration) SentinelOption {
	return func(c *sentinelConf) { c.downAfter = d }
}

// WithFailoverTimeout sets failover-timeout. Default 30 s. Sentinel waits
// twice this long before it retries a failed failover, and re-points a
// replica that follows another address than the master (which ends a
// [Server.PauseReplication]) once this long has passed.
func WithFailoverTimeout(d time.Duration) SentinelOption {
	return func(c *sentinelConf) { c.failoverTimeout = d }
}

// Sentinels is a group of redis-server --sentinel processes that monitor one
// master under [SentinelMasterName]. Its methods are safe for concurrent use.
type Sentinels struct {
	nodes    []*Server
	conf     sentinelConf
	password string // the data servers' password
}

// StartSentinels starts n sentinels (quorum n/2+1) on free 127.0.0.1 ports,
// each with its sentinel.conf in a t.TempDir(), monitoring master with
// down-after-milliseconds 1 s and failover-timeout 30 s unless opts say
// otherwise, and the master's password as auth-pass. It waits until every
// sentinel sees the master up, knows every replica the master has at the
// time (start them first: a replica started later is found only at the next
// 10 s INFO round) with its link up, and knows the other n-1 sentinels.
// They are stopped in t.Cleanup. n = 1 is enough for failover tests; 3 adds
// leader election (and about 2 s of start-up for the sentinels to meet).
//
// Do not Pause a sentinel for long: one that sees its clock jump by more
// than 2 s enters TILT mode for 30 s and does not fail over.
func StartSentinels(t testing.TB, master *Server, n int, opts ...SentinelOption) *Sentinels {
	t.Helper()
	if n < 1 {
		t.Fatalf("redistest: StartSentinels: n = %d, want >= 1", n)
	}
	conf := sentinelConf{
		master:          master.Addr(),
		quorum:          n/2 + 1,
		downAfter:       time.Second,
		failoverTimeout: 30 * time.Second,
		authPass:        master.cfg.password,
	}
	for _, o := range opts {
		o(&conf)
	}
	g := &Sentinels{conf: conf, password: master.cfg.password}
	for range n {
		c := conf
		g.nodes = append(g.nodes, Start(t, func(cfg *config) { cfg.sentinel = &c }))
	}
	mi, err := info(master.Addr(), master.cfg.password, "replication")
	if err != nil {
		t.Fatalf("redistest: StartSentinels: INFO replication on master %s: %v", master.Addr(), err)
	}
	replicas, _ := strconv.Atoi(mi["connected_slaves"])
	deadline := time.Now().Add(sentinelReadyTimeout)
	for {
		why := g.notReady(replicas)
		if why == "" {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: sentinels not ready after %v: %s", sentinelReadyTimeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// notReady returns why some sentinel does not yet see the master, its
// replicas and the other sentinels, or "".
func (g *Sentinels) notReady(replicas int) string {
	for _, n := range g.nodes {
		v, err := command(n.Addr(), "", "SENTINEL", "MASTER", SentinelMasterName)
		if err != nil {
			return n.Addr() + ": SENTINEL MASTER: " + err.Error()
		}
		m := pairs(v)
		switch {
		case m["flags"] != "master":
			return n.Addr() + ": master flags " + m["flags"]
		case m["num-slaves"] != strconv.Itoa(replicas):
			return fmt.Sprintf("%s: knows %s replicas, want %d", n.Addr(), m["num-slaves"], replicas)
		case m["num-other-sentinels"] != strconv.Itoa(len(g.nodes)-1):
			return fmt.Sprintf("%s: knows %s other sentinels, want %d", n.Addr(), m["num-other-sentinels"], len(g.nodes)-1)
		}
		v, err = command(n.Addr(), "", "SENTINEL", "REPLICAS", SentinelMasterName)
		if err != nil {
			return n.Addr() + ": SENTINEL REPLICAS: " + err.Error()
		}
		list, _ := v.([]any)
		for _, r := range list {
			rm := pairs(r)
			if rm["flags"] != "slave" || rm["master-link-status"] != "ok" {
				return fmt.Sprintf("%s: replica %s:%s has flags %s, master-link-status %s", n.Addr(), rm["ip"], rm["port"], rm["flags"], rm["master-link-status"])
			}
		}
	}
	return ""
}

// MasterName returns [SentinelMasterName].
func (g *Sentinels) MasterName() string { return SentinelMasterName }

// Addrs returns the sentinels' addresses, "127.0.0.1:PORT".
func (g *Sentinels) Addrs() []string {
	addrs := make([]string, len(g.nodes))
	for i, n := range g.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns the sentinel processes, to Pause, Kill or Restart them. The
// slice is a copy.
func (g *Sentinels) Nodes() []*Server { return append([]*Server(nil), g.nodes...) }

// FailoverOptions returns options for redis.NewFailoverClient: the master
// name, the sentinels' addresses and the data servers' password.
func (g *Sentinels) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{
		MasterName:    SentinelMasterName,
		SentinelAddrs: g.Addrs(),
		Password:      g.password,
	}
}

// FailoverClient returns a new redis.NewFailoverClient with
// [Sentinels.FailoverOptions], closed in t.Cleanup.
func (g *Sentinels) FailoverClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(g.FailoverOptions())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterAddr returns the master address the first running sentinel reports
// (SENTINEL GET-MASTER-ADDR-BY-NAME).
func (g *Sentinels) MasterAddr(t testing.TB) string {
	t.Helper()
	for _, n := range g.nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		addr, err := sentinelMaster(n.Addr())
		if err != nil {
			t.Fatalf("redistest: %s: %v", n.Addr(), err)
		}
		return addr
	}
	t.Fatalf("redistest: no sentinel is running")
	return ""
}

// WaitFailover waits until every running sentinel names a master other
// than from and that server reports role:master, and returns its address.
// Kill or Pause the master first (or wait for any failover). With the
// default options it takes about 2-4 s after the master stops answering; it
// fails the test after 2×failover-timeout + 20×down-after + 30 s, long
// enough for Sentinel to retry a failed attempt once.
func (g *Sentinels) WaitFailover(t testing.TB, from string) string {
	t.Helper()
	limit := 2*g.conf.failoverTimeout + 20*g.conf.downAfter + 30*time.Second
	deadline := time.Now().Add(limit)
	for {
		addr, why := g.failedOver(from)
		if why == "" {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: no failover away from %s after %v: %s\n%s", from, limit, why, g.nodes[0].logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failedOver returns the new master, or why there is none yet.
func (g *Sentinels) failedOver(from string) (string, string) {
	agreed := ""
	for _, n := range g.nodes {
		if !n.Running() || n.Paused() {
			continue
		}
		addr, err := sentinelMaster(n.Addr())
		if err != nil {
			return "", n.Addr() + ": " + err.Error()
		}
		if addr == from {
			return "", n.Addr() + " still names " + from
		}
		if agreed != "" && addr != agreed {
			return "", fmt.Sprintf("sentinels disagree: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	if agreed == "" {
		return "", "no sentinel is running"
	}
	ri, err := info(agreed, g.password, "replication")
	if err != nil {
		return "", "new master " + agreed + ": " + err.Error()
	}
	if ri["role"] != "master" {
		return "", "new master " + agreed + " has role:" + ri["role"]
	}
	return agreed, ""
}

// sentinelMaster asks the sentinel at addr for the master's address.
func sentinelMaster(addr string) (string, error) {
	v, err := command(addr, "", "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMasterName)
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	a, _ := v.([]any)
	if len(a) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: reply %v", v)
	}
	return net.JoinHostPort(strings.TrimSpace(fmt.Sprint(a[0])), fmt.Sprint(a[1])), nil
}
