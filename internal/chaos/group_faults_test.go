package chaos

// Consumer groups under process and Redis faults (issue 14's history
// check): three member processes of one group share a topic of 16
// partitions while a steady publisher in the test process sends events of
// 200 keys. One after another: a member SIGKILLed (and a new one
// started), one SIGSTOPped past its lease and continued, one joining, one
// leaving with Close (SIGTERM: the child calls Bus.Shutdown), every
// Pub/Sub connection killed, Redis restarted from its AOF. Every handler
// call is recorded by the members (member, partition, seq, key, start and
// end), the checkpoint and the lease of each partition are read every
// 10 ms, and the whole history is checked at the end.
//
//	go test -race -count=1 -run '^TestChaosGroups$' -v ./internal/chaos
//	go test -race -count=1 -run '^TestChaosGroups$' -v ./internal/chaos -chaos.duration=5m

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

const (
	groupTopic = "grp.orders"
	groupName  = "billing"
	groupParts = 16
	groupKeys  = 200
	// groupLease is each partition's lease and the members' heartbeat
	// ttl: short, so that a takeover waits about a second.
	groupLease = time.Second
	// groupHandle is how long each handler call takes: two members
	// handling one partition at once would show as overlapping calls.
	groupHandle = time.Millisecond
	// groupPubEvery is the publisher's tick: one keyed event per tick,
	// about 20 per partition and second.
	groupPubEvery = 3 * time.Millisecond
	// groupSub is the group's name in the env's history.
	groupSub = "group"
	// pauseGrace: a call of a continued member that began this long after
	// SIGCONT is no longer the one in flight at the pause.
	pauseGrace = time.Second
)

// Bounds of the timing criteria (issue 14), printed in the table. They are
// asserted with a margin (see takeoverSlack) because a loaded 2-core
// machine running -race can delay any process by a second or more.
const (
	takeoverBound = groupLease + time.Second
	handoverBound = 500 * time.Millisecond
	// takeoverSlack is what the test allows above each bound before it
	// fails: the exact bounds are judged in the table only.
	takeoverSlack = 2 * time.Second
	handoverSlack = 2500 * time.Millisecond
)

var groupTopics = transport.PartitionTopics(groupTopic, groupParts)

// groupKey is the key of the event published with k: the 200 keys in
// turn, in a fixed shuffled order (37 is prime to 200).
func groupKey(k int64) string { return fmt.Sprintf("key-%03d", k*37%groupKeys) }

// groupConsumerKeys returns partition p's checkpoint hash and owner hash
// (the group's consumer of p is "<group>/<topic>@<partition>").
func groupConsumerKeys(p int) (cpKey, ownerKey string) {
	cpKey = "durabus:consumer:" + groupName + "/" + groupTopic + "@" + groupTopics[p]
	return cpKey, "durabus:owner:{" + cpKey + "}"
}

// ---------------------------------------------------------------------------
// The member process.

// groupCall is one handler call of a group member (a G line).
type groupCall struct {
	pid        int
	k          int64
	part       int
	epoch      string
	seq        uint64
	key        string
	start, end int64 // ns, by the host's clock
}

// groupLoss is a lease a member lost on a partition (a GN line).
type groupLoss struct {
	pid, part int
	at        int64
	fenced    bool // found out by a refused write, not by its own clock
}

func parseGroupCall(pid int, fs []string) groupCall {
	k, _ := strconv.ParseInt(fs[1], 10, 64)
	part, _ := strconv.Atoi(fs[2])
	seq, _ := strconv.ParseUint(fs[4], 10, 64)
	start, _ := strconv.ParseInt(fs[6], 10, 64)
	end, _ := strconv.ParseInt(fs[7], 10, 64)
	return groupCall{pid: pid, k: k, part: part, epoch: fs[3], seq: seq, key: fs[5], start: start, end: end}
}

var partitionInError = regexp.MustCompile(`@` + regexp.QuoteMeta(groupTopic) + `:p(\d+)`)

// runGroupChild is a member of group sp.Group on groupTopic. Besides the
// lines of runProcChild (READY, L, F, R) it writes, unbuffered:
//
//	G <k> <partition> <epoch> <seq> <key> <start ns> <end ns>   a handler call, when it returned
//	GN <ns> <partition> <lapsed|fenced>                         lost the lease on a partition
//
// On SIGTERM it calls Bus.Shutdown, which hands its partitions over.
func runGroupChild(sp procSpec, line func(format string, args ...any) error) int {
	now := func() int64 { return time.Now().UnixNano() }
	rdb := redis.NewClient(clientOptions(sp.Addr))
	tr, err := subscriberTransport(rdb)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := bus.New(tr, bus.WithGroup(sp.Group), bus.WithPartitions(groupTopic, sp.Partitions),
		bus.WithLogger(slog.New(slog.DiscardHandler)), // what matters is written as lines
		childFollowing(sp.Lease, line),
		childLosses(line),
		bus.WithOnError(func(err error) {
			if errors.Is(err, transport.ErrFenced) {
				_ = line("F %d", now())
			}
			if errors.Is(err, replay.ErrNotOwner) {
				part := -1
				if m := partitionInError.FindStringSubmatch(err.Error()); m != nil {
					part, _ = strconv.Atoi(m[1])
				}
				reason := "lapsed" // not renewed in time, or about to lapse
				if strings.Contains(err.Error(), transport.ErrFenced.Error()) {
					reason = "fenced" // a renewal or checkpoint write refused
				}
				_ = line("GN %d %d %s", now(), part, reason)
			}
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		start := now()
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		part, err := strconv.Atoi(strings.TrimPrefix(m.Topic, groupTopic+":p"))
		if err != nil {
			return fmt.Errorf("not a partition of %s: %q", groupTopic, m.Topic)
		}
		time.Sleep(groupHandle)
		return line("G %d %d %s %d %s %d %d", k, part, m.Position.Epoch, m.Position.Seq, m.Extensions[bus.ExtPartitionKey], start, now())
	})
	if _, err := b.Handle(groupTopic, h, bus.StartAt(bus.Beginning())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sig, stop := signalContext()
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(context.Background()) }()
	go func() {
		if b.Ready(sig) == nil {
			_ = line("READY %d", now())
		}
	}()
	select {
	case <-sig.Done():
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "group member: Shutdown:", err)
			return 1
		}
		if err := <-runErr; err != nil {
			fmt.Fprintln(os.Stderr, "group member: Run:", err)
			return 1
		}
	case err := <-runErr:
		fmt.Fprintln(os.Stderr, "group member: Run ended by itself:", err)
		return 1
	}
	return 0
}

func (c *procChild) groupCalls() ([]groupCall, []groupLoss) {
	c.tail()
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return slices.Clone(c.calls), slices.Clone(c.gLost)
}

// ---------------------------------------------------------------------------
// The keyed publisher.

// runGroupPublisher publishes one keyed event per tick to groupTopic until
// ctx ends, recording every attempt and acknowledgement in the env's
// history under the partition it goes to.
func (w *world) runGroupPublisher(ctx context.Context) {
	defer w.pw.Done()
	e := w.e
	rdb := redis.NewClient(clientOptions(e.pubProxy.Addr()))
	defer rdb.Close()
	tr, err := redistransport.New(rdb, redistransport.WithIdempotency(10*time.Minute))
	if err != nil {
		w.t.Error(err)
		return
	}
	defer tr.Close()
	b, err := bus.New(tr, bus.WithPartitions(groupTopic, groupParts), bus.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		w.t.Error(err)
		return
	}
	defer b.Close()
	tick := time.NewTicker(groupPubEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		k := e.pubKeys.Add(1)
		key := groupKey(k)
		e.h.attempt(k, groupTopics[transport.PartitionOf(key, groupParts)])
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		pos, err := b.Publish(pctx, Event{K: k, Topic: groupTopic}, bus.WithKey(key))
		cancel()
		if err != nil {
			e.failed.Add(1)
			continue
		}
		e.acked.Add(1)
		e.h.acked(k, pos.Epoch, pos.Seq, pos.ID)
	}
}

// ---------------------------------------------------------------------------
// The partitions' checkpoints and leases, read every 10 ms.

// holderChange is a new holder of a partition's lease, seen at at; cpBefore
// is the partition's checkpoint seq at the last read under the previous
// holder (what the new holder loads, unless the previous one saved again
// within those 10 ms: then the tail it bounds is larger, never smaller).
type holderChange struct {
	at       time.Time
	pid      int
	token    uint64
	cpBefore uint64
}

type groupMonitor struct {
	mu          sync.Mutex
	polls       int
	cp          [groupParts]transport.Position
	holder      [groupParts]string
	token       [groupParts]uint64
	changes     [groupParts][]holderChange
	regressions []string
	tokenBack   []string
}

func (w *world) watchGroup() *groupMonitor {
	m := &groupMonitor{}
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			m.poll(w.ctx, w.e.admin)
			select {
			case <-w.ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *groupMonitor) poll(ctx context.Context, rdb *redis.Client) {
	var cps [groupParts]*redis.MapStringStringCmd
	var owns [groupParts]*redis.SliceCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range groupParts {
			cpKey, ownerKey := groupConsumerKeys(i)
			cps[i] = p.HGetAll(ctx, cpKey)
			owns[i] = p.HMGet(ctx, ownerKey, "holder", "token")
		}
		return nil
	}); err != nil {
		return // Redis restarting: nothing to compare
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.polls++
	for i := range groupParts {
		cpBefore := m.cp[i].Seq
		if s, ok := cps[i].Val()[groupTopics[i]]; ok {
			pos, err := transport.ParsePosition(s)
			switch {
			case err != nil:
				m.regressions = append(m.regressions, fmt.Sprintf("p%d: unparsable %q", i, s))
			case pos.Epoch == m.cp[i].Epoch && pos.Seq < m.cp[i].Seq:
				m.regressions = append(m.regressions, fmt.Sprintf("p%d: seq %d after %d at %s", i, pos.Seq, m.cp[i].Seq, now.Format("15:04:05.000")))
				m.cp[i] = pos
			default:
				m.cp[i] = pos
			}
		}
		vals := owns[i].Val()
		holder, _ := vals[0].(string)
		tokenText, _ := vals[1].(string)
		token, _ := strconv.ParseUint(tokenText, 10, 64)
		if token < m.token[i] {
			m.tokenBack = append(m.tokenBack, fmt.Sprintf("p%d: token %d after %d", i, token, m.token[i]))
		}
		m.token[i] = max(m.token[i], token)
		if holder != "" && holder != m.holder[i] {
			m.changes[i] = append(m.changes[i], holderChange{at: now, pid: holderPid(holder), token: token, cpBefore: cpBefore})
			m.holder[i] = holder
		}
	}
}

// takeoverCP returns the checkpoint seq partition p had when pid took it
// over after time after.
func (m *groupMonitor) takeoverCP(p, pid int, after int64) (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.changes[p] {
		if ch.pid == pid && ch.at.UnixNano() >= after {
			return ch.cpBefore, true
		}
	}
	return 0, false
}

// leases reads every partition's lease: its holder's pid, 0 when it is not
// live by Redis's clock.
func (w *world) leases() ([groupParts]int, error) {
	var out [groupParts]int
	ctx := context.Background()
	var owns [groupParts]*redis.SliceCmd
	var tm *redis.TimeCmd
	if _, err := w.e.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range groupParts {
			_, ownerKey := groupConsumerKeys(i)
			owns[i] = p.HMGet(ctx, ownerKey, "holder", "until")
		}
		tm = p.Time(ctx)
		return nil
	}); err != nil {
		return out, err
	}
	nowMs := tm.Val().UnixMilli()
	for i := range groupParts {
		vals := owns[i].Val()
		holder, _ := vals[0].(string)
		untilText, _ := vals[1].(string)
		until, _ := strconv.ParseInt(untilText, 10, 64)
		if until > nowMs {
			out[i] = holderPid(holder)
		}
	}
	return out, nil
}

// ownedBy returns the partitions whose live lease pid holds.
func (w *world) ownedBy(pid int) []int {
	w.t.Helper()
	ls, err := w.leases()
	if err != nil {
		w.t.Fatalf("read the partitions' leases: %v", err)
	}
	var out []int
	for p, h := range ls {
		if h == pid {
			out = append(out, p)
		}
	}
	return out
}

// balanced reports whether every partition is held by one of the live
// members, each holding its fair share (16/n, or one more).
func (w *world) balanced(live []*procChild) bool {
	ls, err := w.leases()
	if err != nil {
		return false
	}
	count := map[int]int{}
	for _, c := range live {
		pid, _, _, _, _ := c.state()
		count[pid] = 0
	}
	for _, h := range ls {
		if _, ok := count[h]; !ok {
			return false
		}
		count[h]++
	}
	lo := groupParts / len(live)
	hi := lo
	if groupParts%len(live) != 0 {
		hi++
	}
	for _, n := range count {
		if n < lo || n > hi {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// The run.

// groupFault is one fault of the schedule. For a SIGSTOP, at and until
// are when the member was stopped and continued.
type groupFault struct {
	kind      string // sigkill, sigstop, join, close, pubsub-kill, redis-restart
	pid       int
	at, until int64
	parts     []int // the member's partitions at the fault
}

// groupAnalysis is what checkGroupHistory found.
type groupAnalysis struct {
	calls, switches, takeovers           int
	overlaps, inflight                   int
	redelivered, unexplained, dupBound   int
	resumedExact, resumedKnown           int
	keyRegressions, keyUnexplained       int
	overSamples, unexplSamples, boundErr []string
}

// TestChaosGroups is issue 14's history check of consumer groups: see the
// top of this file. Each fault runs once, in this order, per cycle; with
// -chaos.duration (make chaos) cycles repeat until it is over. Checked:
// every acknowledged event handled by the group (nothing lost, nothing
// reported lost); per key, handled seqs non-decreasing except the
// redeliveries after a takeover, which begin at the checkpoint the new
// owner took over and end at the old owner's last event (no more than its
// unflushed tail); no two members handling one partition at overlapping
// times but for the call in flight at a SIGSTOP; within one member no
// event twice and none out of order; checkpoints never going back, fencing
// tokens never going down; the takeover after SIGKILL and the handover
// after Close, measured from the signal to the first handler call of
// another member on each of the partitions the member held.
func TestChaosGroups(t *testing.T) {
	d := faultDuration()
	r := runGroups(t, d)
	t.Logf("\n%s", r.table())
	sum := summary([]*runReport{r})
	fmt.Printf("chaos (consumer groups): 1 run, faults for %v\n%s", d, sum)
	if *chaosOut != "" {
		f, err := os.OpenFile(*chaosOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.WriteString("\n" + sum)
			f.Close()
		}
		if err != nil {
			t.Error(err)
		}
	}
}

func runGroups(t *testing.T, d time.Duration) *runReport {
	w := newBareWorld(t, "groups", 0, nil, nil)
	mon := w.watchGroup()
	pubCtx, stopPub := context.WithCancel(w.ctx)
	w.stopPub = stopPub
	w.pw.Add(1)
	go w.runGroupPublisher(pubCtx)

	spec := procSpec{Addr: w.e.subProxy.Addr(), Group: groupName, Partitions: groupParts, Lease: groupLease}
	var live, all []*procChild
	n := 0
	startMember := func() *procChild {
		n++
		c := w.addChild(fmt.Sprintf("m%d", n), w.e.h, groupSub)
		c.start(spec)
		all = append(all, c)
		live = append(live, c)
		w.waitUntil(c.label+" Ready", readyTimeout, c.isReady)
		return c
	}
	pidOf := func(c *procChild) int { pid, _, _, _, _ := c.state(); return pid }
	remove := func(c *procChild) {
		live = slices.DeleteFunc(live, func(x *procChild) bool { return x == c })
	}
	waitBalanced := func(what string) {
		w.waitUntil(fmt.Sprintf("%s: every partition held by one of %d members, shared fairly", what, len(live)),
			readyTimeout, func() bool { return w.balanced(live) })
	}
	// handling: the group handles, on every partition, an event
	// acknowledged after this call.
	handling := func(what string) {
		heads := w.e.h.ackedHeads()
		next := map[string]uint64{}
		for _, tp := range groupTopics {
			next[tp] = heads[tp] + 1
		}
		w.waitUntil(what+": the group handling every partition again", 2*readyTimeout,
			func() bool { return w.e.h.reached(groupSub, next) })
	}
	// takenOver: none of parts is held by pid any more, each by a live
	// lease of another member.
	takenOver := func(pid int, parts []int) bool {
		ls, err := w.leases()
		if err != nil {
			return false
		}
		for _, p := range parts {
			if ls[p] == 0 || ls[p] == pid {
				return false
			}
		}
		return true
	}

	for range 3 {
		startMember()
	}
	waitBalanced("start")
	handling("start")
	w.waitUntil("a checkpoint saved for every partition", readyTimeout, func() bool {
		mon.mu.Lock()
		defer mon.mu.Unlock()
		for _, pos := range mon.cp {
			if pos.Seq == 0 {
				return false
			}
		}
		return true
	})

	var faults []groupFault
	deadline := time.Now().Add(d)
	for cycle := 0; cycle == 0 || time.Now().Before(deadline); cycle++ {
		// SIGKILL of a member; a new one started once the others took
		// over its partitions.
		v := live[0]
		f := groupFault{kind: "sigkill", pid: pidOf(v), parts: w.ownedBy(pidOf(v))}
		f.at = time.Now().UnixNano()
		v.kill(syscall.SIGKILL)
		remove(v)
		w.waitUntil("the partitions of the killed member taken over", readyTimeout, func() bool { return takenOver(f.pid, f.parts) })
		faults = append(faults, f)
		startMember()
		waitBalanced("after a SIGKILL and a new member")
		handling("after a SIGKILL")

		// SIGSTOP of a member past its lease, until the others hold its
		// partitions; then SIGCONT: it must not handle them again before
		// they are handed back, and gets its share back.
		v = live[0]
		f = groupFault{kind: "sigstop", pid: pidOf(v), parts: w.ownedBy(pidOf(v))}
		f.at = time.Now().UnixNano()
		v.signal(syscall.SIGSTOP)
		w.waitUntil("the partitions of the stopped member taken over", readyTimeout, func() bool {
			return time.Since(time.Unix(0, f.at)) > groupLease+groupLease/2 && takenOver(f.pid, f.parts)
		})
		f.until = time.Now().UnixNano()
		v.signal(syscall.SIGCONT)
		faults = append(faults, f)
		live = append(live[1:], v)
		waitBalanced("after a SIGSTOP and SIGCONT")
		handling("after a SIGSTOP")

		// A member joining.
		c := startMember()
		faults = append(faults, groupFault{kind: "join", pid: pidOf(c), at: time.Now().UnixNano()})
		waitBalanced("after a member joined")
		handling("after a member joined")

		// A member leaving with Close.
		v = live[0]
		f = groupFault{kind: "close", pid: pidOf(v), parts: w.ownedBy(pidOf(v))}
		f.at = time.Now().UnixNano()
		v.kill(syscall.SIGTERM)
		remove(v)
		faults = append(faults, f)
		waitBalanced("after a member left")
		handling("after a member left")

		// Every Pub/Sub connection killed.
		f = groupFault{kind: "pubsub-kill", at: time.Now().UnixNano()}
		if err := w.e.admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
			t.Errorf("CLIENT KILL TYPE pubsub: %v", err)
		}
		faults = append(faults, f)
		handling("after CLIENT KILL TYPE pubsub")

		// Redis restarted (SIGTERM; AOF, appendfsync always).
		f = groupFault{kind: "redis-restart", at: time.Now().UnixNano()}
		w.e.srv.Restart(t)
		f.until = time.Now().UnixNano()
		faults = append(faults, f)
		waitBalanced("after a Redis restart")
		handling("after a Redis restart")
	}
	w.faults = len(faults)

	// The end: the group handles what the log holds; then every member
	// leaves.
	w.stopPub()
	w.pw.Wait()
	heads := w.e.logHeadsOf(groupTopics)
	w.waitUntil("the group caught up with the log", 2*readyTimeout, func() bool { return w.e.h.reached(groupSub, heads) })
	for _, c := range live {
		c.kill(syscall.SIGTERM)
	}
	w.stop()
	w.bg.Wait()

	r := &runReport{scenario: w.name, duration: time.Since(w.began), faults: len(faults),
		published: int(w.e.acked.Load()), failed: int(w.e.failed.Load())}
	inLog := w.e.checkLog(t, r, groupTopics, false)

	// The checker's count: lost, unexpected, duplicated; within one
	// member process (inc = pid) no event twice and none out of order.
	v := w.e.h.check(groupSub, inLog)
	v.sub = groupSub
	v.peakMem, v.memKind = 0, "VmHWM"
	var calls []groupCall
	var gLost []groupLoss
	fenced := 0
	for _, c := range all {
		cs, ls := c.groupCalls()
		calls = append(calls, cs...)
		gLost = append(gLost, ls...)
		rec, _, _, f := c.counts()
		v.reconnects += rec
		fenced += f
		v.peakMem = max(v.peakMem, c.peakMem())
	}
	for _, c := range calls {
		if c.key != groupKey(c.k) {
			v.unexpected++
			t.Errorf("k %d handled with key %q, published with %q", c.k, c.key, groupKey(c.k))
		}
	}
	judgeRow(t, groupSub, v, true)
	r.rows = append(r.rows, v)

	a := checkGroupHistory(calls, gLost, faults, mon)
	if a.overlaps != 0 {
		t.Errorf("%d handler calls of one partition by two members at overlapping times (not the one in flight at a SIGSTOP), e.g. %v",
			a.overlaps, a.overSamples)
	}
	if a.unexplained != 0 {
		t.Errorf("%d calls handled a seq at or below one the partition had already handled, not as a redelivery after a takeover, e.g. %v",
			a.unexplained, a.unexplSamples)
	}
	if a.keyUnexplained != 0 {
		t.Errorf("%d per-key seq regressions not explained by a takeover", a.keyUnexplained)
	}
	if len(a.boundErr) > 0 {
		t.Errorf("redelivered beyond the unflushed tail (or resumed before the checkpoint taken over): %v", a.boundErr)
	}
	if v.duplicated > a.dupBound+a.inflight {
		t.Errorf("%d duplicates, more than the unflushed tails (%d) plus the calls in flight at a pause (%d)", v.duplicated, a.dupBound, a.inflight)
	}
	mon.mu.Lock()
	polls, regs, back := mon.polls, slices.Clone(mon.regressions), slices.Clone(mon.tokenBack)
	mon.mu.Unlock()
	if len(regs) > 0 {
		t.Errorf("a partition's checkpoint went backwards %d times: %v", len(regs), regs[:min(5, len(regs))])
	}
	if len(back) > 0 {
		t.Errorf("a partition's fencing token went down: %v", back)
	}

	takeover := measureTakeovers(t, calls, faults, "sigkill")
	handover := measureTakeovers(t, calls, faults, "close")
	paused := measureTakeovers(t, calls, faults, "sigstop")
	// The bounds are TTL + 1 s (p99) and 500 ms. Times are
	// measured, not asserted, in the short run of make test: a loaded
	// 2-core machine running the whole suite with -race delays a process
	// by seconds at times (a handover after Close took 3.6 s in one such
	// run). The long run (make chaos, -chaos.duration) fails on the p99
	// beyond the bounds plus a margin; the table always says whether the
	// exact bounds held.
	if *chaosDuration > 0 {
		if m := takeover.p99(); m > takeoverBound+takeoverSlack {
			t.Errorf("takeover after SIGKILL p99 %v, more than TTL + 1 s (%v) + %v", m, takeoverBound, takeoverSlack)
		}
		if m := handover.p99(); m > handoverBound+handoverSlack {
			t.Errorf("handover after Close p99 %v, more than %v + %v", m, handoverBound, handoverSlack)
		}
	}

	kinds := map[string]int{}
	for _, f := range faults {
		kinds[f.kind]++
	}
	row := func(name, measured, bound string, ok bool) string {
		verdict := "ok"
		if !ok {
			verdict = "FAIL"
		}
		return fmt.Sprintf("%-44s %-34s %-30s %s", name, measured, bound, verdict)
	}
	r.notes = append(r.notes,
		fmt.Sprintf("faults: %d sigkill, %d sigstop, %d join, %d close, %d pubsub-kill, %d redis-restart; %d members started; lease %v, %d partitions, %d keys",
			kinds["sigkill"], kinds["sigstop"], kinds["join"], kinds["close"], kinds["pubsub-kill"], kinds["redis-restart"], len(all), groupLease, groupParts, groupKeys),
		fmt.Sprintf("%-44s %-34s %-30s %s", "criterion", "measured", "bound", "verdict"),
		row("acknowledged events never handled", strconv.Itoa(v.lost), "0", v.lost == 0 && v.losses == 0),
		row("per-key seq regressions", fmt.Sprintf("%d (%d not after a takeover)", a.keyRegressions, a.keyUnexplained), "only redeliveries after takeover", a.keyUnexplained == 0),
		row("partition seq regressions", fmt.Sprintf("%d redelivered, %d other", a.redelivered, a.unexplained), "only after a takeover", a.unexplained == 0),
		row("overlapping calls, 2 members, 1 partition", fmt.Sprintf("%d (+%d in flight at SIGSTOP)", a.overlaps, a.inflight), "0 (+1 per partition per pause)", a.overlaps == 0),
		row("duplicates (handled twice by the group)", strconv.Itoa(v.duplicated), fmt.Sprintf("≤ %d tail + %d in flight", a.dupBound, a.inflight), v.duplicated <= a.dupBound+a.inflight && len(a.boundErr) == 0),
		row("takeover after SIGKILL p50/p99/max", takeover.String(), "p99 ≤ TTL+1s = "+takeoverBound.String(), takeover.p(99) <= takeoverBound),
		row("handover after Close p50/p99/max", handover.String(), "≤ "+handoverBound.String(), handover.max() <= handoverBound),
		row("takeover after SIGSTOP p50/p99/max", paused.String(), "(reported)", true),
		fmt.Sprintf("partition switches %d (%d takeovers); resumed right after the checkpoint taken over: %d/%d; lease losses reported %d (%d by a refused write); F lines (ErrFenced) %d",
			a.switches, a.takeovers, a.resumedExact, a.resumedKnown, len(gLost), fencedLosses(gLost), fenced),
		fmt.Sprintf("checkpoints and leases of %d partitions read %d times: checkpoint regressions %d, token decreases %d",
			groupParts, polls, len(regs), len(back)),
		fmt.Sprintf("takeover and handover assert only ≤ bound + %v / + %v (load); the verdicts above are the exact bounds", takeoverSlack, handoverSlack),
	)
	return r
}

// durations are measured times, sorted.
type durations []time.Duration

func (ds durations) p(q int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (len(ds)*q + 99) / 100
	return ds[max(i-1, 0)]
}

func (ds durations) max() time.Duration { return ds.p(100) }

func (ds durations) p99() time.Duration { return ds.p(99) }

func (ds durations) String() string {
	if len(ds) == 0 {
		return "none"
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%v/%v/%v (n=%d)", r(ds.p(50)), r(ds.p(99)), r(ds.max()), len(ds))
}

// measureTakeovers returns, for each fault of kind and each partition the
// member held then, the time from the fault to the first handler call of
// another member on it.
func measureTakeovers(t *testing.T, calls []groupCall, faults []groupFault, kind string) durations {
	t.Helper()
	var out durations
	for _, f := range faults {
		if f.kind != kind {
			continue
		}
		for _, p := range f.parts {
			first := int64(0)
			for _, c := range calls {
				if c.part == p && c.pid != f.pid && c.start >= f.at && (first == 0 || c.start < first) {
					first = c.start
				}
			}
			if first == 0 {
				t.Errorf("%s of pid %d: no other member handled partition %d after it", kind, f.pid, p)
				continue
			}
			out = append(out, time.Duration(first-f.at))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// checkGroupHistory goes through each partition's handler calls in the
// order they began:
//   - the call in flight when a member was stopped (at most one per
//     partition and pause: it ended after SIGCONT and began before it, or
//     within pauseGrace after) is set aside;
//   - no call may begin before a call of another member ended (overlap);
//   - a call whose seq is at or below the highest the partition had
//     handled is a redelivery, allowed only at the start of a member's run
//     that followed a takeover (the previous member was killed or stopped,
//     or reported losing that partition's lease) and up to that highest
//     seq; such a run must begin right after the checkpoint it took over
//     (read by the monitor) or later, never before, and redeliver no
//     more than the previous member's unflushed tail (its last seq less
//     that checkpoint), plus one for a pause.
//
// Then, per key, a seq below one handled before must be one of those
// redeliveries or the call set aside.
func checkGroupHistory(calls []groupCall, gLost []groupLoss, faults []groupFault, mon *groupMonitor) groupAnalysis {
	var a groupAnalysis
	a.calls = len(calls)
	byPart := make([][]int, groupParts) // indexes into calls
	for i, c := range calls {
		if c.part >= 0 && c.part < groupParts {
			byPart[c.part] = append(byPart[c.part], i)
		}
	}
	const (
		normal = iota
		redelivery
		inflight
		bad
	)
	class := make([]int, len(calls))
	explains := func(pid, part int, lastStart, firstStart int64) bool {
		for _, f := range faults {
			if f.pid == pid && (f.kind == "sigkill" || f.kind == "sigstop") && f.at >= lastStart-int64(time.Second) && f.at <= firstStart {
				return true
			}
		}
		for _, l := range gLost {
			if l.pid == pid && l.part == part && l.at >= lastStart-int64(time.Second) && l.at <= firstStart+int64(5*time.Second) {
				return true
			}
		}
		return false
	}
	for p := range groupParts {
		idx := byPart[p]
		sort.SliceStable(idx, func(i, j int) bool { return calls[idx[i]].start < calls[idx[j]].start })
		// The calls in flight at a pause.
		for _, f := range faults {
			if f.kind != "sigstop" {
				continue
			}
			for n, i := range idx {
				c := calls[i]
				if c.pid != f.pid || c.end < f.until || c.start >= f.until+int64(pauseGrace) {
					continue
				}
				// Begun before SIGCONT, or after it with a seq another
				// member had handled already: not a call of a new term.
				stale := c.start < f.until
				for _, j := range idx[:n] {
					stale = stale || calls[j].pid != c.pid && calls[j].seq >= c.seq
				}
				if stale {
					class[i] = inflight
					a.inflight++
				}
				break
			}
		}
		// Overlaps.
		var act *groupCall
		for _, i := range idx {
			if class[i] == inflight {
				continue
			}
			c := &calls[i]
			if act != nil && act.pid != c.pid && c.start < act.end {
				a.overlaps++
				if len(a.overSamples) < 5 {
					a.overSamples = append(a.overSamples, fmt.Sprintf("p%d: pid %d seq %d [%s, %s] and pid %d seq %d [%s, %s]",
						p, act.pid, act.seq, stamp(act.start), stamp(act.end), c.pid, c.seq, stamp(c.start), stamp(c.end)))
				}
			}
			if act == nil || c.end > act.end {
				act = c
			}
		}
		// Runs of one member, and the seqs.
		var maxSeq uint64
		var last *groupCall // the last call of the current run
		var takeover bool
		var maxBefore uint64
		var redelivered int
		var lastPrev *groupCall
		closeRun := func() {
			if takeover && lastPrev != nil && last != nil {
				cp, ok := mon.takeoverCP(p, last.pid, lastPrev.start-int64(10*time.Millisecond))
				if ok {
					tail := 0
					if maxBefore > cp {
						tail = int(maxBefore - cp)
					}
					a.dupBound += tail
					if redelivered > tail {
						a.boundErr = append(a.boundErr, fmt.Sprintf("p%d: pid %d redelivered %d after taking over from pid %d at checkpoint %d, whose last seq was %d",
							p, last.pid, redelivered, lastPrev.pid, cp, maxBefore))
					}
				} else {
					a.dupBound += redelivered // not seen by the monitor: bounded by what it redelivered
				}
			}
		}
		for _, i := range idx {
			if class[i] == inflight {
				continue
			}
			c := &calls[i]
			if last == nil || c.pid != last.pid {
				if last != nil {
					closeRun()
					a.switches++
					takeover = explains(last.pid, p, last.start, c.start)
					if takeover {
						a.takeovers++
					}
					lastPrev = last
					if cp, ok := mon.takeoverCP(p, c.pid, last.start-int64(10*time.Millisecond)); ok {
						a.resumedKnown++
						switch {
						case c.seq == cp+1:
							a.resumedExact++
						case c.seq <= cp:
							a.boundErr = append(a.boundErr, fmt.Sprintf("p%d: pid %d began at seq %d, before the checkpoint %d it took over from pid %d",
								p, c.pid, c.seq, cp, last.pid))
						}
					}
				}
				maxBefore, redelivered = maxSeq, 0
			}
			if c.seq <= maxSeq {
				if takeover && c.seq <= maxBefore {
					class[i] = redelivery
					a.redelivered++
					redelivered++
				} else {
					class[i] = bad
					a.unexplained++
					if len(a.unexplSamples) < 5 {
						a.unexplSamples = append(a.unexplSamples, fmt.Sprintf("p%d: pid %d seq %d at %s after seq %d", p, c.pid, c.seq, stamp(c.start), maxSeq))
					}
				}
			}
			maxSeq = max(maxSeq, c.seq)
			last = c
		}
		closeRun()
	}
	// Per key.
	byKey := map[string][]int{}
	for i, c := range calls {
		byKey[c.key] = append(byKey[c.key], i)
	}
	for _, idx := range byKey {
		sort.SliceStable(idx, func(i, j int) bool { return calls[idx[i]].start < calls[idx[j]].start })
		var hi uint64
		for _, i := range idx {
			c := calls[i]
			if c.seq < hi {
				a.keyRegressions++
				if class[i] != redelivery && class[i] != inflight {
					a.keyUnexplained++
				}
			}
			hi = max(hi, c.seq)
		}
	}
	return a
}

func fencedLosses(ls []groupLoss) int {
	n := 0
	for _, l := range ls {
		if l.fenced {
			n++
		}
	}
	return n
}

func stamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }
