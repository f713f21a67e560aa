package redistest

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// syncTimeout bounds how long WaitInSync (and StartReplica, PauseReplication)
// wait for a replica to catch up with its master.
const syncTimeout = 30 * time.Second

// replLink is the proxy that PauseReplication puts between a replica and its
// master.
type replLink struct {
	proxy    *Proxy
	upstream string // the master's own address
}

// StartReplica starts a redis-server that replicates master (replicaof
// 127.0.0.1 <master port>, masterauth = master's password), and waits until
// it is in sync ([Server.WaitInSync]). The replica gets master's options
// (password, ACL, AOF, args), so it can take over as master after a
// failover, followed by opts. It is stopped in t.Cleanup like any [Server].
//
// The replica connects to master directly, so Sentinel sees a plain
// replica. [Server.PauseReplication] makes it lag.
func StartReplica(t testing.TB, master *Server, opts ...Option) *Server {
	t.Helper()
	if master.cfg.cluster || master.cfg.sentinel != nil {
		t.Fatalf("redistest: StartReplica: %s is a cluster node or a sentinel", master.Addr())
	}
	base := master.cfg.clone()
	inherit := func(c *config) {
		*c = base.clone()
		c.replicaOf = master.Addr()
	}
	r := Start(t, append([]Option{inherit}, opts...)...)
	r.WaitInSync(t)
	return r
}

// WaitInSync waits until the server, a replica, has its master link up, no
// sync in progress, and has applied everything its master had written when
// the wait began (slave_repl_offset >= the master's master_repl_offset). It
// fails the test after 30 s, or at once if the server is not a replica.
func (s *Server) WaitInSync(t testing.TB) {
	t.Helper()
	s.linkMu.Lock()
	link := s.link
	s.linkMu.Unlock()
	s.waitInSync(t, link)
}

func (s *Server) waitInSync(t testing.TB, link *replLink) {
	t.Helper()
	deadline := time.Now().Add(syncTimeout)
	for {
		why, fatal := s.notInSync(link)
		if why == "" {
			return
		}
		if fatal || time.Now().After(deadline) {
			t.Fatalf("redistest: replica %s not in sync after %v: %s\n%s", s.Addr(), syncTimeout, why, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notInSync returns why the replica is not in sync with its master, or "";
// fatal reports that waiting will not help (it is no replica).
func (s *Server) notInSync(link *replLink) (why string, fatal bool) {
	ri, err := info(s.Addr(), s.cfg.password, "replication")
	if err != nil {
		return "replica: " + err.Error(), false
	}
	if ri["role"] != "slave" {
		return "role:" + ri["role"] + ", not a replica", true
	}
	master := masterAddr(ri, link)
	mi, err := info(master, s.cfg.password, "replication")
	if err != nil {
		return "master " + master + ": " + err.Error(), false
	}
	want, _ := strconv.ParseInt(mi["master_repl_offset"], 10, 64)
	// Read the replica again, after the master, so the offset it must
	// reach was taken first.
	ri, err = info(s.Addr(), s.cfg.password, "replication")
	if err != nil {
		return "replica: " + err.Error(), false
	}
	got, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
	switch {
	case ri["master_link_status"] != "up":
		return "master_link_status:" + ri["master_link_status"], false
	case ri["master_sync_in_progress"] != "0":
		return "master_sync_in_progress:" + ri["master_sync_in_progress"], false
	case got < want:
		return fmt.Sprintf("slave_repl_offset %d < master %s master_repl_offset %d", got, master, want), false
	}
	return "", false
}

// masterAddr returns the address of the master a replica's INFO names, seen
// through link's proxy if it replicates through it.
func masterAddr(ri map[string]string, link *replLink) string {
	addr := net.JoinHostPort(ri["master_host"], ri["master_port"])
	if link != nil && addr == link.proxy.Addr() {
		return link.upstream
	}
	return addr
}

// PauseReplication makes the replica lag: from when it returns, nothing its
// master writes reaches it, yet its master link stays up (master_link_status
// up, as in a network stall; the link would time out only after
// repl-timeout, 60 s), so the master acknowledges writes the replica lacks,
// and Sentinel still counts the replica as a good candidate for promotion.
// Writes acknowledged before the call are on the replica.
//
// It routes the replica's link through an in-process proxy (REPLICAOF to the
// proxy, then [Server.WaitInSync]) and black-holes the proxy. The master is
// whichever one the replica follows at the time, so it also works on a
// former master that Sentinel turned into a replica.
//
// Sentinel re-points a replica it sees following an address other than the
// master's (+fix-slave-config) once its failover-timeout (30 s by default,
// [WithFailoverTimeout]) has passed since it noticed the change, which ends
// the lag: keep pauses shorter than that. [Server.ResumeReplication] reports
// it if it happened.
func (s *Server) PauseReplication(t testing.TB) {
	t.Helper()
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	ri, err := info(s.Addr(), s.cfg.password, "replication")
	if err != nil {
		t.Fatalf("redistest: PauseReplication %s: %v", s.Addr(), err)
	}
	if ri["role"] != "slave" {
		t.Fatalf("redistest: PauseReplication %s: role:%s, not a replica", s.Addr(), ri["role"])
	}
	cur := net.JoinHostPort(ri["master_host"], ri["master_port"])
	if s.link == nil || cur != s.link.proxy.Addr() {
		if s.link == nil || s.link.upstream != cur {
			p, err := newProxy(cur)
			if err != nil {
				t.Fatal(err)
			}
			s.owner.Cleanup(p.tp.Stop)
			if s.link != nil {
				s.link.proxy.tp.Stop()
			}
			s.link = &replLink{proxy: p, upstream: cur}
		}
		host, port, _ := net.SplitHostPort(s.link.proxy.Addr())
		if _, err := command(s.Addr(), s.cfg.password, "REPLICAOF", host, port); err != nil {
			t.Fatalf("redistest: PauseReplication %s: REPLICAOF %s %s: %v", s.Addr(), host, port, err)
		}
	}
	s.waitInSync(t, s.link)
	s.link.proxy.Blackhole(t)
}

// ResumeReplication ends [Server.PauseReplication]: the stalled link is
// closed and the replica reconnects through the proxy and catches up (a
// partial resync from the master's backlog when it still holds the gap). It
// does not wait; call [Server.WaitInSync] for that. If the server is still a
// replica but no longer follows the proxy (Sentinel re-pointed it during the
// pause), the test fails with an error, because the pause did not hold.
// Resuming a replica that was never paused does nothing.
func (s *Server) ResumeReplication(t testing.TB) {
	t.Helper()
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.link == nil {
		return
	}
	s.link.proxy.Heal(t)
	ri, err := info(s.Addr(), s.cfg.password, "replication")
	if err != nil || ri["role"] != "slave" {
		return // down, paused or promoted: nothing to check
	}
	if cur := net.JoinHostPort(ri["master_host"], ri["master_port"]); cur != s.link.proxy.Addr() {
		t.Errorf("redistest: replica %s follows %s directly, not the paused link %s: something (Sentinel's +fix-slave-config after failover-timeout?) re-pointed it, so the pause did not hold", s.Addr(), cur, s.link.proxy.Addr())
	}
}

// Role returns the server's role as INFO replication reports it: "master"
// or "slave". It fails the test if the server does not answer.
func (s *Server) Role(t testing.TB) string {
	t.Helper()
	ri, err := info(s.Addr(), s.cfg.password, "replication")
	if err != nil {
		t.Fatalf("redistest: INFO replication on %s: %v", s.Addr(), err)
	}
	return strings.TrimSpace(ri["role"])
}
