package chaos

// Process faults: Redis stopped by SIGSTOP, a subscriber process stopped
// until Redis cuts it off for its output buffer, a durable consumer killed
// before its first checkpoint (for each start kind), and two processes
// sharing one durable name. Each runs against the harness's env, publisher,
// in-process subscribers and history checker; the durable subscribers are
// child processes of their own (procChild), which can be given a consumer
// name, a start kind, a lease and a handler that never returns, and which
// timestamp every handler call so that two owners' terms can be compared.
//
//	go test -race -count=1 -run '^TestChaosProcessFaults$' ./internal/chaos
//	go test -race -count=1 -run '^TestChaosProcessFaults$' -v ./internal/chaos -chaos.duration=50s

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// ---------------------------------------------------------------------------
// The durable child process.

// procChildEnv carries a procChild's spec (JSON) to the test binary run
// again as a child.
const procChildEnv = "DURABUS_CHAOS_PROC_CHILD"

// chaosPerTopic makes the durable children follow each topic with a
// subscription of its own (the bus's followers share its lease), as
// TestChaos's child does; false follows them through one pattern
// subscription.
var chaosPerTopic = flag.Bool("chaos.per-topic", true,
	"durable children of TestChaosProcessFaults subscribe per topic (one follower each) instead of through one pattern")

// procLease is the lease of every durable child: short, so that a
// restart after kill -9 or a takeover waits about 2 s, not the default 10.
const procLease = 2 * time.Second

// procSpec configures a durable child.
type procSpec struct {
	Addr     string        `json:"addr"`
	Out      string        `json:"out"`
	Consumer string        `json:"consumer"`
	Start    string        `json:"start"` // new, beginning or since
	Since    time.Time     `json:"since"`
	Lease    time.Duration `json:"lease"`
	// Hold: the handler never returns, so nothing is handled and no
	// checkpoint beyond the saved start is written.
	Hold bool `json:"hold,omitempty"`
	// PerTopic: one subscription per topic instead of one pattern.
	PerTopic bool `json:"pertopic,omitempty"`
	// SmallBuf: a 16 KiB socket receive buffer, so that Redis's output
	// buffer fills soon after the process stops reading.
	SmallBuf bool `json:"smallbuf,omitempty"`
	// Group: a member of this consumer group on the partitioned topic
	// groupTopic with Partitions partitions (runGroupChild) instead of a
	// durable consumer.
	Group      string `json:"group,omitempty"`
	Partitions int    `json:"partitions,omitempty"`
}

func init() {
	if spec := os.Getenv(procChildEnv); spec != "" {
		os.Exit(runProcChild(spec))
	}
}

var lossCodes = map[replay.LossReason]string{
	replay.Trimmed: "trimmed", replay.EpochChanged: "epoch", replay.Missing: "missing",
	replay.RolledBack: "rolledback", replay.CheckpointLost: "cplost",
}

// runProcChild is a durable consumer following every chaos topic through
// one pattern subscription (one follower, one lease per process), or one
// subscription per topic (PerTopic). It
// writes, unbuffered, one line per:
//
//	READY <ns>                                  its bus is Ready
//	D <k> <topic> <epoch> <seq> <id> <ns>       a handled event (ns: when the handler was called)
//	L <topic> <epoch|-> <from> <to> <reason>    a loss report
//	S <ns>                                      waits as a standby (the name is held)
//	N <ns>                                      lost its lease: stopped handling
//	F <ns>                                      a write under its lease was refused (fenced)
//	R                                           a reconnect
func runProcChild(specText string) int {
	var sp procSpec
	if err := json.Unmarshal([]byte(specText), &sp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(sp.Out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	line := func(format string, args ...any) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := fmt.Fprintf(f, format+"\n", args...)
		return err
	}
	now := func() int64 { return time.Now().UnixNano() }
	if sp.Group != "" {
		return runGroupChild(sp, line)
	}
	opts := clientOptions(sp.Addr)
	if sp.SmallBuf {
		opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			return c, err
		}
	}
	rdb := redis.NewClient(opts)
	tr, err := subscriberTransport(rdb)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var start replay.Start
	switch sp.Start {
	case "new":
		start = bus.NewOnly()
	case "beginning":
		start = bus.Beginning()
	case "since":
		start = bus.Since(sp.Since)
	default:
		fmt.Fprintf(os.Stderr, "unknown start %q\n", sp.Start)
		return 1
	}
	b, err := bus.New(tr, bus.WithConsumer(sp.Consumer),
		childFollowing(sp.Lease, line),
		childLosses(line),
		bus.WithOnError(func(err error) {
			var held *transport.HeldError
			switch {
			case errors.As(err, &held):
				_ = line("S %d", now())
			case errors.Is(err, replay.ErrNotOwner):
				_ = line("N %d", now())
			case errors.Is(err, transport.ErrFenced):
				_ = line("F %d", now())
			}
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
		at := now()
		if sp.Hold {
			<-ctx.Done()
			return ctx.Err()
		}
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		return line("D %d %s %s %d %s %d", k, m.Topic, m.Position.Epoch, m.Position.Seq, m.Position.ID, at)
	})
	subs := []string{pattern}
	if sp.PerTopic {
		subs = topics
	}
	for _, s := range subs {
		if _, err := b.Handle(s, h, bus.StartAt(start)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, stop := signalContext()
	defer stop()
	go func() {
		if b.Ready(ctx) == nil {
			_ = line("READY %d", now())
		}
	}()
	if err := b.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// consumerKeys returns the checkpoint hash and the owner hash of a durable
// child's consumer (the bus names a pattern subscription's consumer
// "<name>@<pattern>").
func consumerKeys(consumer string) (cpKey, ownerKey string) {
	cpKey = "durabus:consumer:" + consumer
	if !*chaosPerTopic {
		cpKey += "@" + pattern
	}
	return cpKey, "durabus:owner:{" + cpKey + "}"
}

// ---------------------------------------------------------------------------
// The parent's side of a durable child.

// procDel is one handler call of a durable child.
type procDel struct {
	pid, term int
	k         int64
	topic     string
	epoch     string
	seq       uint64
	id        string
	at        int64 // ns, by the child's clock (the host's)
}

// termBound starts a term (of ownership) of a child process at ns at.
type termBound struct {
	at   int64
	term int
}

// terms numbers the terms of every child of the test binary: a term is one
// process's run from its start or from the loss of its lease. The checker
// treats each as one incarnation (history's inc).
var terms atomic.Int64

type procChild struct {
	w     *world
	label string
	h     *history // where its deliveries and losses go
	sub   string   // its subscriber name in h
	out   string

	mu    sync.Mutex
	cmd   *exec.Cmd
	waitc chan struct{}
	hwm   uint64

	tailMu     sync.Mutex
	off        int64
	partial    string
	pid        int
	procs      int
	bounds     []termBound
	ready      bool
	lastS      int64 // ns of the last S line of this process
	lastN      int64 // ns of the last N line of this process
	notOwner   int   // N lines, all processes
	fenced     int   // F lines, all processes
	standbys   int   // S lines, all processes
	reconnects uint64
	dels       []procDel
	calls      []groupCall // a group member's handler calls (G lines)
	gLost      []groupLoss // a group member's lease losses (GN lines)
}

func (w *world) addChild(label string, h *history, sub string) *procChild {
	c := &procChild{w: w, label: label, h: h, sub: sub, out: w.t.TempDir() + "/" + label + ".log"}
	w.mu.Lock()
	w.kids = append(w.kids, c)
	w.mu.Unlock()
	w.t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	return c
}

func (c *procChild) start(sp procSpec) {
	c.tail() // the previous process's last lines are its own
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		c.w.t.Fatalf("child %s: started while running", c.label)
	}
	sp.Out = c.out
	sp.PerTopic = *chaosPerTopic
	data, err := json.Marshal(sp)
	if err != nil {
		c.w.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), procChildEnv+"="+string(data))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.w.t.Fatal(err)
	}
	c.cmd = cmd
	c.waitc = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(c.waitc)
	c.tailMu.Lock()
	c.pid = cmd.Process.Pid
	c.procs++
	c.bounds = []termBound{{0, int(terms.Add(1))}}
	c.ready, c.lastS, c.lastN = false, 0, 0
	c.tailMu.Unlock()
}

// kill signals the child and waits for it to exit; then reads its output.
func (c *procChild) kill(sig syscall.Signal) {
	c.mu.Lock()
	if c.cmd == nil {
		c.mu.Unlock()
		return
	}
	c.sampleLocked()
	_ = c.cmd.Process.Signal(sig)
	if sig != syscall.SIGKILL {
		_ = c.cmd.Process.Signal(syscall.SIGCONT) // a stopped process must run to exit
	}
	select {
	case <-c.waitc:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.waitc
	}
	c.cmd = nil
	c.mu.Unlock()
	c.tail()
}

func (c *procChild) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		_ = c.cmd.Process.Signal(sig)
	}
}

func (c *procChild) sample() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sampleLocked()
}

func (c *procChild) sampleLocked() {
	if c.cmd == nil {
		return
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			c.hwm = max(c.hwm, kb*1024)
		}
	}
}

func (c *procChild) peakMem() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hwm
}

// termAt returns the term of the current process at ns at.
func (c *procChild) termAt(at int64) int {
	for i := len(c.bounds) - 1; i > 0; i-- {
		if c.bounds[i].at <= at {
			return c.bounds[i].term
		}
	}
	return c.bounds[0].term
}

// tail reads the lines the child appended since the last call.
func (c *procChild) tail() {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	f, err := os.Open(c.out)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return
	}
	data, err := io.ReadAll(bufio.NewReader(f))
	if err != nil {
		return
	}
	c.off += int64(len(data))
	lines := strings.Split(c.partial+string(data), "\n")
	c.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		fs := strings.Fields(l)
		ns := func(i int) int64 { v, _ := strconv.ParseInt(fs[i], 10, 64); return v }
		switch {
		case len(fs) == 1 && fs[0] == "R":
			c.reconnects++
		case len(fs) == 2 && fs[0] == "READY":
			c.ready = true
		case len(fs) == 2 && fs[0] == "S":
			c.standbys++
			c.lastS = ns(1)
		case len(fs) == 2 && fs[0] == "N":
			c.notOwner++
			c.lastN = ns(1)
			c.bounds = append(c.bounds, termBound{ns(1), int(terms.Add(1))})
		case len(fs) == 2 && fs[0] == "F":
			c.fenced++
		case len(fs) == 6 && fs[0] == "L":
			from, _ := strconv.ParseUint(fs[3], 10, 64)
			to, _ := strconv.ParseUint(fs[4], 10, 64)
			epoch := fs[2]
			if epoch == "-" {
				epoch = ""
			}
			reason := replay.LossReason(fs[5])
			for r, code := range lossCodes {
				if code == fs[5] {
					reason = r
				}
			}
			c.h.lost(c.sub, &replay.LossError{Topic: fs[1], Epoch: epoch, From: from, To: to, Reason: reason})
		case len(fs) == 8 && fs[0] == "G":
			gc := parseGroupCall(c.pid, fs)
			c.calls = append(c.calls, gc)
			c.h.delivered(c.sub, delivery{k: gc.k, topic: transport.PartitionTopic(groupTopic, gc.part), epoch: gc.epoch, seq: gc.seq, inc: gc.pid})
		case len(fs) == 4 && fs[0] == "GN":
			p, _ := strconv.Atoi(fs[2])
			c.gLost = append(c.gLost, groupLoss{pid: c.pid, part: p, at: ns(1), fenced: fs[3] == "fenced"})
		case len(fs) == 7 && fs[0] == "D":
			k, _ := strconv.ParseInt(fs[1], 10, 64)
			seq, _ := strconv.ParseUint(fs[4], 10, 64)
			d := procDel{pid: c.pid, k: k, topic: fs[2], epoch: fs[3], seq: seq, id: fs[5], at: ns(6)}
			d.term = c.termAt(d.at)
			c.dels = append(c.dels, d)
			c.h.delivered(c.sub, delivery{k: k, topic: d.topic, epoch: d.epoch, seq: seq, inc: d.term})
		default:
			c.w.t.Errorf("durable child %s wrote %q", c.label, l)
		}
	}
}

// state returns a snapshot of the current process's state.
func (c *procChild) state() (pid int, ready bool, lastS, lastN int64, term int) {
	c.tail()
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return c.pid, c.ready, c.lastS, c.lastN, c.bounds[len(c.bounds)-1].term
}

func (c *procChild) isReady() bool {
	_, ready, _, _, _ := c.state()
	return ready
}

// isStandby: the current process said it waits as a standby, after it last
// lost its lease.
func (c *procChild) isStandby() bool {
	_, _, s, n, _ := c.state()
	return s > 0 && s > n
}

func (c *procChild) delsCopy() []procDel {
	c.tail()
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return slices.Clone(c.dels)
}

func (c *procChild) counts() (reconnects uint64, standbys, notOwner, fenced int) {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return c.reconnects, c.standbys, c.notOwner, c.fenced
}

// ---------------------------------------------------------------------------
// A run: the harness's env, its publisher and in-process subscribers, and
// durable children.

type world struct {
	t     *testing.T
	e     *env
	name  string
	began time.Time

	ctx     context.Context
	stop    context.CancelFunc
	bg      sync.WaitGroup
	stopPub context.CancelFunc
	pw      sync.WaitGroup

	mu   sync.Mutex
	kids []*procChild
	mons []*cpMonitor

	faults int
	recMu  sync.Mutex
	rec    map[string]time.Duration
}

func newWorld(t *testing.T, name string, pad int, setup func(e *env)) *world {
	w := newBareWorld(t, name, pad, setup, func(e *env) {
		e.startInproc(subPlain)
		e.startInproc(subPattern)
	})
	p := w.e.newPublisher()
	pubCtx, stopPub := context.WithCancel(w.ctx)
	w.stopPub = stopPub
	w.pw.Add(1)
	go p.run(pubCtx, *chaosRate, &w.pw)
	// Stopped before the publisher's bus is closed (cleanups run last
	// first).
	t.Cleanup(func() { w.stop(); w.pw.Wait() })
	return w
}

// newBareWorld is a world without a publisher: its env (setup, then
// start, run before the background work), the tailing of its children and
// the heap sampler. Its cleanup stops them and waits for w.pw.
func newBareWorld(t *testing.T, name string, pad int, setup, start func(e *env)) *world {
	w := &world{t: t, name: name, began: time.Now()}
	w.e = newEnv(t, 0)
	w.e.pad = pad
	if setup != nil {
		setup(w.e)
	}
	if start != nil {
		start(w.e)
	}
	w.ctx, w.stop = context.WithCancel(context.Background())
	w.stopPub = func() {}
	w.bg.Add(2)
	go func() { defer w.bg.Done(); w.e.sampleHeap(w.ctx) }()
	go w.tailLoop()
	t.Cleanup(func() { w.stop(); w.pw.Wait(); w.bg.Wait() })
	return w
}

func (w *world) children() []*procChild {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.kids)
}

func (w *world) tailLoop() {
	defer w.bg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		for _, c := range w.children() {
			c.tail()
			if i%5 == 0 {
				c.sample()
			}
		}
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// waitUntil polls cond until it holds; past timeout the test fails.
func (w *world) waitUntil(what string, timeout time.Duration, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAcked waits until n more publishes were acknowledged.
func (w *world) waitAcked(n int64) {
	w.t.Helper()
	target := w.e.acked.Load() + n
	w.waitUntil(fmt.Sprintf("%d more acknowledged publishes", n), readyTimeout, func() bool { return w.e.acked.Load() >= target })
}

// recSub names a subscriber's history for the recovery measurement.
type recSub struct {
	name string
	h    *history
	sub  string
}

// healed measures, in the background, how long each subscriber takes to
// deliver on every topic an event acknowledged after the fault ended.
func (w *world) healed(subs []recSub) {
	heads := w.e.h.ackedHeads()
	start := time.Now()
	for _, s := range subs {
		w.bg.Add(1)
		go func() {
			defer w.bg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !s.h.passed(s.sub, heads) {
				select {
				case <-w.ctx.Done():
					return
				case <-tick.C:
				}
			}
			d := time.Since(start)
			w.recMu.Lock()
			defer w.recMu.Unlock()
			if w.rec == nil {
				w.rec = map[string]time.Duration{}
			}
			w.rec[s.name] = max(w.rec[s.name], d)
		}()
	}
}

// waitRecovered waits until every subscriber in subs has delivered, on
// every topic, an event acknowledged after this call.
func (w *world) waitRecovered(subs []recSub) {
	w.t.Helper()
	heads := w.e.h.ackedHeads()
	for _, s := range subs {
		w.waitUntil(s.name+" delivering again after the fault", 2*readyTimeout, func() bool { return s.h.passed(s.sub, heads) })
	}
}

func (w *world) recovery(name string) time.Duration {
	w.recMu.Lock()
	defer w.recMu.Unlock()
	return w.rec[name]
}

func (w *world) inprocSubs() []recSub {
	return []recSub{{subPlain, w.e.h, subPlain}, {subPattern, w.e.h, subPattern}}
}

// settle ends the run: it stops the publisher, waits until the in-process
// subscribers and the children in waiting have what the log holds, stops
// every child (SIGTERM: it flushes its checkpoints) and the background
// work, checks the in-process subscribers, and returns what the log holds
// and the report with their rows.
func (w *world) settle(waiting []recSub) (map[int64]logEntry, *runReport) {
	t := w.t
	t.Helper()
	w.stopPub()
	w.pw.Wait()
	heads := w.e.logHeads()
	for _, s := range append(w.inprocSubs(), waiting...) {
		deadline := time.Now().Add(90 * time.Second)
		for !s.h.reached(s.sub, heads) {
			if time.Now().After(deadline) {
				t.Errorf("%s: not caught up with %v after 90 s", s.name, heads)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // let late duplicates show
	for _, c := range w.children() {
		c.kill(syscall.SIGTERM)
	}
	w.stop()
	w.bg.Wait()

	r := &runReport{scenario: w.name, duration: time.Since(w.began), faults: w.faults,
		published: int(w.e.acked.Load()), failed: int(w.e.failed.Load())}
	inLog := w.e.checkLog(t, r, topics, false)
	for _, s := range w.e.inproc {
		v := w.e.h.check(s.name, inLog)
		v.recovery = w.recovery(s.name)
		v.reconnects = s.reconnects()
		v.peakMem, v.memKind = w.e.heapMax.Load(), "heap"
		judgeRow(t, v.sub, v, false)
		r.rows = append(r.rows, v)
	}
	return inLog, r
}

// durableRow checks a durable consumer's deliveries (in h under sub)
// against the events of the log after from[topic] (nil: from the first)
// and up to upto[topic] (nil: no bound), with the harness's checker, and
// judges them. label names the row.
func (w *world) durableRow(label string, h *history, sub string, inLog map[int64]logEntry,
	from map[string]transport.Position, upto map[string]uint64) verdict {
	w.t.Helper()
	seqOf := func(k int64, p *pubRecord) uint64 {
		if p.ok {
			return p.seq
		}
		return inLog[k].seq
	}
	inRange := func(topic string, seq uint64) bool {
		if from != nil && seq <= from[topic].Seq {
			return false
		}
		return upto == nil || seq <= upto[topic]
	}
	hc := newHistory()
	w.e.h.mu.Lock()
	for k, p := range w.e.h.pubs {
		if _, logged := inLog[k]; !p.ok && !logged {
			hc.pubs[k] = p // never written: delivering it would be unexpected
			continue
		}
		if inRange(p.topic, seqOf(k, p)) {
			hc.pubs[k] = p
		}
	}
	w.e.h.mu.Unlock()
	h.mu.Lock()
	for _, d := range h.dels[sub] {
		if upto == nil || d.seq <= upto[d.topic] {
			hc.dels[sub] = append(hc.dels[sub], d)
		}
	}
	hc.losses[sub] = slices.Clone(h.losses[sub])
	h.mu.Unlock()
	v := hc.check(sub, inLog)
	v.sub = label
	judgeRow(w.t, label, v, true)
	return v
}

// judgeRow applies the pass criteria of a run without data loss: nothing
// lost, nothing reported lost, nothing unexpected, no reordering and no
// duplicate within one incarnation (for a durable consumer: one term of
// ownership of one process); duplicates across incarnations only for a
// durable consumer (at-least-once across restarts and hand-overs).
func judgeRow(t *testing.T, label string, v verdict, durable bool) {
	t.Helper()
	if v.lost != 0 {
		t.Errorf("%s: %d events never delivered (lost and unreported), e.g. %v", label, v.lost, v.lostSamples)
	}
	if v.losses != 0 {
		t.Errorf("%s: %d loss reports (%d events, exact %v) where nothing was lost", label, v.losses, v.lossEvents, v.lossExact)
	}
	if v.unexpected != 0 {
		t.Errorf("%s: %d unexpected deliveries", label, v.unexpected)
	}
	if v.reordered != 0 {
		t.Errorf("%s: %d deliveries out of order", label, v.reordered)
	}
	if v.dupInRun != 0 {
		t.Errorf("%s: %d duplicates within one process (one term of ownership)", label, v.dupInRun)
	}
	if !durable && v.duplicated != 0 {
		t.Errorf("%s: %d duplicates", label, v.duplicated)
	}
}

// sameLogEntryTwice counts the handler calls of one term that got a log
// entry (topic + stream id) the term had already handled.
func sameLogEntryTwice(dels []procDel) int {
	type key struct {
		term      int
		topic, id string
	}
	seen := map[key]bool{}
	n := 0
	for _, d := range dels {
		k := key{d.term, d.topic, d.id}
		if seen[k] {
			n++
		}
		seen[k] = true
	}
	return n
}

func (w *world) childRowExtras(v *verdict, cs ...*procChild) {
	for _, c := range cs {
		rec, _, _, _ := c.counts()
		v.reconnects += rec
		v.peakMem = max(v.peakMem, c.peakMem())
		var all []procDel
		all = append(all, c.delsCopy()...)
		if n := sameLogEntryTwice(all); n != 0 {
			w.t.Errorf("%s: %d log entries (topic + stream id) handled twice in one term", c.label, n)
		}
	}
	v.memKind = "VmHWM"
}

// ---------------------------------------------------------------------------
// The checkpoint and owner hashes of a durable consumer, read every 10 ms.

type holderObs struct {
	at     time.Time
	holder string
	token  uint64
}

type cpMonitor struct {
	consumer, cpKey, ownerKey string
	cancel                    context.CancelFunc
	done                      chan struct{}

	mu          sync.Mutex
	last        map[string]transport.Position
	polls       int
	regressions []string
	holders     []holderObs
	lastToken   uint64
	tokenBack   []string
}

func (w *world) monitor(consumer string) *cpMonitor {
	m := &cpMonitor{consumer: consumer, last: map[string]transport.Position{}, done: make(chan struct{})}
	m.cpKey, m.ownerKey = consumerKeys(consumer)
	var ctx context.Context
	ctx, m.cancel = context.WithCancel(w.ctx)
	w.mu.Lock()
	w.mons = append(w.mons, m)
	w.mu.Unlock()
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		defer close(m.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			m.poll(ctx, w.e.admin)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// stop ends the polling, after one last poll.
func (m *cpMonitor) stop() {
	m.cancel()
	<-m.done
}

func (m *cpMonitor) poll(ctx context.Context, rdb *redis.Client) {
	var cps *redis.MapStringStringCmd
	var own *redis.SliceCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cps = p.HGetAll(ctx, m.cpKey)
		own = p.HMGet(ctx, m.ownerKey, "holder", "token")
		return nil
	}); err != nil {
		return // Redis stopped or restarting: nothing to compare
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.polls++
	for topic, s := range cps.Val() {
		pos, err := transport.ParsePosition(s)
		if err != nil {
			m.regressions = append(m.regressions, fmt.Sprintf("%s: unparsable %q", topic, s))
			continue
		}
		if prev, ok := m.last[topic]; ok && prev.Epoch == pos.Epoch && pos.Seq < prev.Seq {
			m.regressions = append(m.regressions, fmt.Sprintf("%s: seq %d after %d (epoch %s) at %s",
				topic, pos.Seq, prev.Seq, pos.Epoch, now.Format("15:04:05.000")))
		}
		m.last[topic] = pos
	}
	vals := own.Val()
	holder, _ := vals[0].(string)
	tokenText, _ := vals[1].(string)
	token, _ := strconv.ParseUint(tokenText, 10, 64)
	if token < m.lastToken {
		m.tokenBack = append(m.tokenBack, fmt.Sprintf("token %d after %d", token, m.lastToken))
	}
	m.lastToken = max(m.lastToken, token)
	if holder != "" && (len(m.holders) == 0 || m.holders[len(m.holders)-1].holder != holder) {
		m.holders = append(m.holders, holderObs{at: now, holder: holder, token: token})
	}
}

func (m *cpMonitor) report() (polls int, regressions, tokenBack []string, holders []holderObs) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.polls, slices.Clone(m.regressions), slices.Clone(m.tokenBack), slices.Clone(m.holders)
}

// judgeMonitors fails the test for a checkpoint that went backwards within
// an epoch, or a fencing token that went down.
func (w *world) judgeMonitors(r *runReport) {
	w.t.Helper()
	var polls, regressions, owners int
	for _, m := range w.mons {
		n, regs, back, holders := m.report()
		if len(regs) > 0 {
			w.t.Errorf("%s: the checkpoint went backwards %d times: %v", m.cpKey, len(regs), regs[:min(len(regs), 5)])
		}
		if len(back) > 0 {
			w.t.Errorf("%s: the fencing token went down: %v", m.ownerKey, back)
		}
		polls += n
		regressions += len(regs)
		owners += len(holders)
	}
	r.notes = append(r.notes, fmt.Sprintf("checkpoint and owner hashes of %d consumers read %d times: checkpoint regressions %d, owner changes seen %d",
		len(w.mons), polls, regressions, owners))
}

// holderPid returns the pid in a holder id ("host/pid/random").
func holderPid(holder string) int {
	fs := strings.Split(holder, "/")
	if len(fs) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(fs[len(fs)-2])
	return pid
}

// owner reads the consumer's lease: its holder's pid, and whether the
// lease still runs by Redis's clock.
func (w *world) owner(consumer string) (pid int, live bool) {
	_, ownerKey := consumerKeys(consumer)
	ctx := context.Background()
	vals, err := w.e.admin.HMGet(ctx, ownerKey, "holder", "until").Result()
	if err != nil {
		w.t.Fatalf("read %s: %v", ownerKey, err)
	}
	holder, _ := vals[0].(string)
	untilText, _ := vals[1].(string)
	until, _ := strconv.ParseInt(untilText, 10, 64)
	tm, err := w.e.admin.Time(ctx).Result()
	if err != nil {
		w.t.Fatalf("TIME: %v", err)
	}
	return holderPid(holder), until > tm.UnixMilli()
}

// awaitTakeover waits until the process toPid holds the consumer's lease,
// and returns the checkpoint it took over: the last one read, together with
// the owner hash (MULTI), while fromPid still held the lease. A stopped or
// dead owner writes nothing after its last command in flight has landed,
// and nothing after the new claim (fenced), so the last such read is what
// the new owner loads; sure is false when no read saw fromPid holding it.
func (w *world) awaitTakeover(consumer string, fromPid, toPid int) (cp map[string]transport.Position, sure bool) {
	w.t.Helper()
	cpKey, ownerKey := consumerKeys(consumer)
	ctx := context.Background()
	deadline := time.Now().Add(readyTimeout)
	for {
		var cps *redis.MapStringStringCmd
		var holder *redis.StringCmd
		if _, err := w.e.admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
			cps = p.HGetAll(ctx, cpKey)
			holder = p.HGet(ctx, ownerKey, "holder")
			return nil
		}); err != nil {
			w.t.Fatalf("read %s and %s: %v", cpKey, ownerKey, err)
		}
		switch holderPid(holder.Val()) {
		case fromPid:
			sure = true
			cp = map[string]transport.Position{}
			for tp, text := range cps.Val() {
				pos, err := transport.ParsePosition(text)
				if err != nil {
					w.t.Fatalf("%s: %s = %q: %v", cpKey, tp, text, err)
				}
				cp[tp] = pos
			}
		case toPid:
			if cp == nil {
				cp = w.checkpoint(consumer)
			}
			return cp, sure
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("pid %d did not take %s over from pid %d within %v", toPid, consumer, fromPid, readyTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkpoint reads a consumer's saved positions.
func (w *world) checkpoint(consumer string) map[string]transport.Position {
	cpKey, _ := consumerKeys(consumer)
	m, err := w.e.admin.HGetAll(context.Background(), cpKey).Result()
	if err != nil {
		w.t.Fatalf("read %s: %v", cpKey, err)
	}
	out := map[string]transport.Position{}
	for tp, s := range m {
		pos, err := transport.ParsePosition(s)
		if err != nil {
			w.t.Fatalf("%s: %s = %q: %v", cpKey, tp, s, err)
		}
		out[tp] = pos
	}
	return out
}

// ---------------------------------------------------------------------------
// The scenarios.

var (
	procReportsMu sync.Mutex
	procReports   []*runReport
)

// TestChaosProcessFaults runs the process faults, each against a steady
// publisher, the plain and pattern in-process subscribers and durable
// child processes, and checks the counted history: nothing lost unreported,
// no log entry twice in one process, no reordering, no loss reports (none
// of these faults loses data).
func TestChaosProcessFaults(t *testing.T) {
	d := faultDuration()
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, d time.Duration) *runReport
	}{
		{"redis-sigstop", runRedisSigstop},
		{"subscriber-sigstop-output-buffer", runSubscriberSigstop},
		{"crash-before-first-checkpoint", runCrashBeforeCheckpoint},
		{"one-name-two-processes", runOneNameTwoProcesses},
	} {
		t.Run(sc.name, func(t *testing.T) {
			r := sc.run(t, d)
			t.Logf("\n%s", r.table())
			procReportsMu.Lock()
			procReports = append(procReports, r)
			procReportsMu.Unlock()
		})
	}
	procReportsMu.Lock()
	defer procReportsMu.Unlock()
	sum := summary(procReports)
	fmt.Printf("chaos (process faults): %d runs, each fault for %v\n%s", len(procReports), d, sum)
	if *chaosOut != "" {
		// TestChaos wrote the file first (it runs before this test).
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

// singleDurable runs the common shape of the first two scenarios: one
// durable child (consumer "proc", from the beginning, short lease), and
// episode repeated until d is over.
func singleDurable(t *testing.T, name string, pad int, setup func(e *env), direct bool, lease, d time.Duration,
	episode func(w *world, c *procChild, rng *rand.Rand), gap [2]time.Duration) (*world, *runReport) {
	w := newWorld(t, name, pad, setup)
	const consumer = "proc"
	w.monitor(consumer)
	c := w.addChild(subDurable, newHistory(), subDurable)
	spec := procSpec{Addr: w.e.subProxy.Addr(), Consumer: consumer, Start: "beginning", Lease: lease}
	if direct {
		spec.Addr, spec.SmallBuf = w.e.srv.Addr(), true
	}
	c.start(spec)
	w.e.waitReady()
	w.waitUntil("the durable child Ready", readyTimeout, c.isReady)
	subs := append(w.inprocSubs(), recSub{subDurable, c.h, subDurable})

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		episode(w, c, rng)
		w.faults++
		w.healed(subs)
		w.waitRecovered(subs) // a stuck subscriber fails here
		time.Sleep(between(rng, gap))
	}
	inLog, r := w.settle([]recSub{{subDurable, c.h, subDurable}})
	v := w.durableRow(subDurable, c.h, subDurable, inLog, nil, nil)
	v.recovery = w.recovery(subDurable)
	w.childRowExtras(&v, c)
	r.rows = append(r.rows, v)
	w.judgeMonitors(r)
	_, standbys, notOwner, fenced := c.counts()
	r.notes = append(r.notes, fmt.Sprintf("durable child: %d processes, lease lost %d times, standby %d times, %d fenced writes refused",
		c.procs, notOwner, standbys, fenced))
	r.notes = append(r.notes, "seed "+strconv.FormatUint(seed, 10))
	return w, r
}

// runRedisSigstop: Redis is stopped (SIGSTOP) for 5 s, or the fault
// duration when shorter, then continued. Publishes time out (their outcome
// unknown: the checker counts those found in the log); every subscriber
// must deliver everything after it continues. The durable child's 2 s lease
// lapses meanwhile: it stops handling and claims its name again.
func runRedisSigstop(t *testing.T, d time.Duration) *runReport {
	hold := min(5*time.Second, d)
	_, r := singleDurable(t, "redis-sigstop", 0, nil, false, procLease, d, func(w *world, _ *procChild, _ *rand.Rand) {
		w.e.srv.Pause(w.t)
		defer w.e.srv.Resume(w.t)
		time.Sleep(hold)
	}, [2]time.Duration{time.Second, 2 * time.Second})
	r.notes = append(r.notes, fmt.Sprintf("Redis stopped %v per episode", hold))
	return r
}

// runSubscriberSigstop: the durable child (connected straight to Redis,
// with a small socket buffer) is stopped for 10 s, or the fault duration
// when shorter, and at least until Redis has closed a client for its output
// buffer ("pubsub 1mb 256kb 5"); then continued. It must find its
// connection gone and recover everything from the backlog. Its lease is
// longer than the stop (subscriberStopLease).
func runSubscriberSigstop(t *testing.T, d time.Duration) *runReport {
	hold := min(10*time.Second, d)
	var cuts int
	setup := func(e *env) {
		if err := e.admin.ConfigSet(context.Background(), "client-output-buffer-limit", "pubsub 1mb 256kb 5").Err(); err != nil {
			e.t.Fatal(err)
		}
	}
	w, r := singleDurable(t, "subscriber-sigstop-output-buffer", 2<<10, setup, true, subscriberStopLease, d, func(w *world, c *procChild, _ *rand.Rand) {
		before := outputBufferCuts(w.e)
		c.signal(syscall.SIGSTOP)
		defer c.signal(syscall.SIGCONT)
		until := time.Now().Add(hold)
		const cutTimeout = 2 * time.Minute
		deadline := time.Now().Add(cutTimeout)
		for time.Now().Before(until) || outputBufferCuts(w.e) <= before {
			if time.Now().After(deadline) {
				w.t.Errorf("Redis did not close the stopped subscriber's connection within %v (%s)", cutTimeout, w.e.outputBufferDisconnects())
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cuts += outputBufferCuts(w.e) - before
	}, [2]time.Duration{time.Second, 2 * time.Second})
	r.notes = append(r.notes, fmt.Sprintf("subscriber stopped ≥ %v per episode; clients closed for their output buffer: %d (%s)",
		hold, cuts, w.e.outputBufferDisconnects()))
	return r
}

// subscriberStopLease is the durable child's lease in the subscriber
// SIGSTOP scenario: longer than the stop, so that the child wakes still
// owning its name and has to recover through the connection Redis closed
// (the lease lapsing is what redis-sigstop and one-name-two-processes do).
const subscriberStopLease = 30 * time.Second

// outputBufferCuts counts the clients Redis closed for their output
// buffer: INFO's counter when the server has it (7.2+), else its log lines.
func outputBufferCuts(e *env) int {
	info, _ := e.admin.Info(context.Background(), "stats").Result()
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "client_output_buffer_limit_disconnections:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	data, _ := os.ReadFile(e.srv.Dir() + "/redis.log")
	return strings.Count(string(data), "output buffer limits")
}

// crashRun is one consumer of the crash-before-first-checkpoint scenario.
type crashRun struct {
	kind  string
	c     *procChild
	mon   *cpMonitor
	spec  procSpec
	kRef  int64                         // every publish with a larger k must be delivered
	saved map[string]transport.Position // the start saved before Ready
	upto  map[string]uint64             // the heads it was stopped after
}

// runCrashBeforeCheckpoint: for each start kind (new, beginning, since a
// moment in the past), a durable child whose handler never returns is
// SIGKILLed as soon as it is Ready, so that it handled nothing and saved
// nothing but its start position; events are published while it is down;
// restarted (same name and start), it must deliver every event after the
// saved start, and the start must not skip anything published after the
// moment it promises (Ready for new, the time for since, the first event
// for beginning). Repeated with fresh names until the fault duration is
// over.
func runCrashBeforeCheckpoint(t *testing.T, d time.Duration) *runReport {
	w := newWorld(t, "crash-before-first-checkpoint", 0, nil)
	w.e.waitReady()
	kinds := []string{"new", "beginning", "since"}
	var runs []*crashRun
	deadline := time.Now().Add(d)
	for ep := 1; ep == 1 || time.Now().Before(deadline); ep++ {
		w.waitAcked(300) // a backlog before the since time
		since := time.Now()
		sinceK := w.e.pubKeys.Load()
		w.waitAcked(300) // a backlog after the since time
		var eps []*crashRun
		for _, kind := range kinds {
			consumer := fmt.Sprintf("crash-%s-%d", kind, ep)
			cr := &crashRun{kind: kind, spec: procSpec{Addr: w.e.subProxy.Addr(), Consumer: consumer, Start: kind, Since: since, Lease: procLease, Hold: true}}
			cr.c = w.addChild(fmt.Sprintf("%s-%d", kind, ep), newHistory(), subDurable)
			cr.mon = w.monitor(consumer)
			cr.c.start(cr.spec)
			eps = append(eps, cr)
		}
		for _, cr := range eps {
			w.waitUntil(cr.c.label+" Ready", readyTimeout, cr.c.isReady)
			switch cr.kind {
			case "new":
				cr.kRef = w.e.pubKeys.Load() // published after Ready
			case "since":
				cr.kRef = sinceK // published after the since time
			}
			// Killed at once: it handled nothing (its handler never
			// returns), so it saved nothing but its start.
			cr.c.kill(syscall.SIGKILL)
			cr.saved = w.checkpoint(cr.spec.Consumer)
			for _, tp := range topics {
				if _, ok := cr.saved[tp]; !ok {
					t.Errorf("%s: Ready, but no start position saved for %s (saved: %v)", cr.c.label, tp, cr.saved)
				}
			}
			if n := len(cr.c.delsCopy()); n != 0 {
				t.Fatalf("%s: handled %d events with a handler that never returns", cr.c.label, n)
			}
		}
		w.faults++
		w.waitAcked(500) // published while it is down
		for _, cr := range eps {
			if now := w.checkpoint(cr.spec.Consumer); !maps.Equal(now, cr.saved) {
				t.Errorf("%s: its checkpoint changed while it was dead: %v, then %v", cr.c.label, cr.saved, now)
			}
			cr.spec.Hold = false
			cr.c.start(cr.spec) // claims its name when the dead one's lease lapses
		}
		var subs []recSub
		for _, cr := range eps {
			subs = append(subs, recSub{cr.kind, cr.c.h, subDurable})
		}
		w.healed(append(w.inprocSubs(), subs...))
		// Delivered past what was acknowledged after the restart; then
		// stopped, so that the next episode's children run alone.
		heads := w.e.h.ackedHeads()
		for _, cr := range eps {
			w.waitUntil(cr.c.label+" caught up after its restart", 2*readyTimeout, func() bool { return cr.c.h.reached(subDurable, heads) })
			cr.c.kill(syscall.SIGTERM)
			cr.mon.stop()
			cr.upto = heads
		}
		runs = append(runs, eps...)
	}
	inLog, r := w.settle(nil)

	for _, kind := range kinds {
		var sum verdict
		sum.lossExact = true
		skipped := 0
		label := "dur/" + strings.TrimSuffix(kind, "ning") // fits the table's column
		for _, cr := range runs {
			if cr.kind != kind {
				continue
			}
			v := w.durableRow(label, cr.c.h, subDurable, inLog, cr.saved, cr.upto)
			w.childRowExtras(&v, cr.c)
			addVerdict(&sum, v)
			sum.recovery = max(sum.recovery, w.recovery(kind))
			// Nothing the start promised may lie at or before the saved start.
			w.e.h.mu.Lock()
			for k, p := range w.e.h.pubs {
				seq := p.seq
				if le, logged := inLog[k]; !p.ok && logged {
					seq = le.seq
				} else if !p.ok {
					continue
				}
				if k > cr.kRef && seq <= cr.saved[p.topic].Seq {
					skipped++
				}
			}
			w.e.h.mu.Unlock()
		}
		if skipped != 0 {
			t.Errorf("%s: %d events published after the moment its start promises lie at or before the saved start (skipped)", label, skipped)
		}
		sum.sub = label
		r.rows = append(r.rows, sum)
	}
	w.judgeMonitors(r)
	for _, cr := range runs {
		var s []string
		for _, tp := range topics {
			s = append(s, fmt.Sprintf("%s@%d", strings.TrimPrefix(tp, "chaos."), cr.saved[tp].Seq))
		}
		r.notes = append(r.notes, fmt.Sprintf("%s: killed after Ready with its start saved (%s), restarted after %d more acks",
			cr.c.label, strings.Join(s, " "), 500))
	}
	return r
}

// addVerdict adds v's counts to sum.
func addVerdict(sum *verdict, v verdict) {
	sum.delivered += v.delivered
	sum.lost += v.lost
	sum.unexpected += v.unexpected
	sum.duplicated += v.duplicated
	sum.dupInRun += v.dupInRun
	sum.reordered += v.reordered
	sum.losses += v.losses
	sum.lossEvents += v.lossEvents
	sum.lossExact = sum.lossExact && v.lossExact
	sum.reconnects += v.reconnects
	sum.peakMem = max(sum.peakMem, v.peakMem)
	sum.memKind = v.memKind
	sum.lostSamples = append(sum.lostSamples, v.lostSamples...)
}

// handover is one fault of the two-process scenario: the owner stopped or
// killed, the standby taking over.
type handover struct {
	kind             string // "sigstop" or "sigkill"
	from, to         *procChild
	fromPid, toPid   int
	fromTerm, toTerm int
	cp               map[string]transport.Position // the checkpoint the new owner must resume after
	cpSure           bool                          // read while the old owner still held the lease
	fenced           int                           // F lines of the old owner after it woke
}

// runOneNameTwoProcesses: two durable children with one consumer name.
// The second waits as a standby while the first owns the name; then, in
// turn, the owner is SIGSTOPped past its lease (the standby takes over; the
// owner, continued, must stop handling and go standby, its checkpoint
// writes refused) or SIGKILLed (the standby takes over; the killed one is
// restarted and waits as a standby). Checked: nothing lost; no two terms of
// different processes handle at the same time (a call entered before a
// pause and finished after it excepted: at most one per topic, its term's
// last); the new owner resumes exactly after the checkpoint the old one
// left; the checkpoint never goes backwards.
func runOneNameTwoProcesses(t *testing.T, d time.Duration) *runReport {
	w := newWorld(t, "one-name-two-processes", 0, nil)
	const consumer = "pair"
	w.monitor(consumer)
	hist := newHistory()
	a := w.addChild("A", hist, subDurable)
	b := w.addChild("B", hist, subDurable)
	spec := procSpec{Addr: w.e.subProxy.Addr(), Consumer: consumer, Start: "beginning", Lease: procLease}
	w.e.waitReady()
	a.start(spec)
	w.waitUntil("A Ready", readyTimeout, a.isReady)
	b.start(spec)
	w.waitUntil("B waiting as a standby", readyTimeout, b.isStandby)
	subs := append(w.inprocSubs(), recSub{"pair", hist, subDurable})
	// Both alive, A handling: until A has handled what was acknowledged
	// after B started.
	heads := w.e.h.ackedHeads()
	w.waitUntil("the owner handling while the standby waits", readyTimeout, func() bool { return hist.passed(subDurable, heads) })
	bWhileA := len(b.delsCopy())

	var hos []*handover
	deadline := time.Now().Add(d)
	for i := 0; i < 2 || time.Now().Before(deadline); i++ {
		// Who owns the name now?
		var owner, standby *procChild
		w.waitUntil("one child owning the name, the other standing by", readyTimeout, func() bool {
			pid, live := w.owner(consumer)
			for _, c := range []*procChild{a, b} {
				other := a
				if c == a {
					other = b
				}
				cpid, _, _, _, _ := c.state()
				if live && cpid == pid && other.isStandby() {
					owner, standby = c, other
					return true
				}
			}
			return false
		})
		ho := &handover{from: owner, to: standby}
		ho.fromPid, _, _, _, ho.fromTerm = owner.state()
		ho.toPid, _, _, _, ho.toTerm = standby.state()
		_, _, _, fencedBefore := owner.counts()
		if i%2 == 0 {
			ho.kind = "sigstop"
			owner.signal(syscall.SIGSTOP)
			ho.cp, ho.cpSure = w.awaitTakeover(consumer, ho.fromPid, ho.toPid)
			owner.signal(syscall.SIGCONT)
			w.waitUntil("the continued owner going standby", readyTimeout, owner.isStandby)
		} else {
			ho.kind = "sigkill"
			owner.kill(syscall.SIGKILL)
			ho.cp, ho.cpSure = w.awaitTakeover(consumer, ho.fromPid, ho.toPid)
			owner.start(spec)
			w.waitUntil("the restarted one waiting as a standby", readyTimeout, owner.isStandby)
		}
		hos = append(hos, ho)
		w.faults++
		w.healed(subs)
		heads := w.e.h.ackedHeads()
		w.waitUntil("the new owner handling", readyTimeout, func() bool { return hist.passed(subDurable, heads) })
		_, _, _, fencedAfter := owner.counts()
		ho.fenced = fencedAfter - fencedBefore
	}
	inLog, r := w.settle([]recSub{{"pair", hist, subDurable}})
	v := w.durableRow("dur/pair", hist, subDurable, inLog, nil, nil)
	v.recovery = w.recovery("pair")
	w.childRowExtras(&v, a, b)
	r.rows = append(r.rows, v)
	w.judgeMonitors(r)

	all := append(a.delsCopy(), b.delsCopy()...)
	if bWhileA != 0 {
		r.notes = append(r.notes, fmt.Sprintf("B handled %d events while A owned the name at the start (a hand-over under load?)", bWhileA))
	}
	runs := checkTerms(t, r, all)
	explained, sure := 0, true
	for n, ho := range hos {
		explained += checkHandover(t, r, n+1, ho, all)
		sure = sure && ho.cpSure
	}
	// Handled by both processes: only what a hand-over explains, when
	// every term began with one of the faults above (none when a lease
	// lapsed on its own under load).
	if sure && runs <= len(hos)+1 && v.duplicated != explained {
		t.Errorf("%d events handled twice, the hand-overs explain %d", v.duplicated, explained)
	}
	_, sa, na, fa := a.counts()
	_, sb, nb, fb := b.counts()
	r.notes = append(r.notes, fmt.Sprintf("A: %d processes, standby %d, lease lost %d, fenced writes refused %d; B: %d processes, standby %d, lease lost %d, fenced writes refused %d",
		a.procs, sa, na, fa, b.procs, sb, nb, fb))
	return r
}

// checkTerms fails the test when terms of different processes handled at
// the same time. Sorted by the time each handler was called, every term's
// calls must form one run, except a call entered before its process was
// paused whose time was taken after it woke: at most one per topic, the
// last of its term on that topic.
func checkTerms(t *testing.T, r *runReport, all []procDel) (runs int) {
	t.Helper()
	type termTopic struct {
		term  int
		topic string
	}
	dels := slices.Clone(all)
	sort.SliceStable(dels, func(i, j int) bool { return dels[i].at < dels[j].at })
	last := map[termTopic]uint64{} // its last seq
	for _, d := range dels {
		key := termTopic{d.term, d.topic}
		last[key] = max(last[key], d.seq)
	}
	closed := map[int]bool{} // terms whose run ended (another term's call came after)
	cur := -1
	var late, bad []string
	for _, d := range dels {
		if d.term == cur {
			continue
		}
		if !closed[d.term] {
			if cur >= 0 {
				closed[cur] = true
			}
			cur = d.term
			runs++
			continue
		}
		// A term handling again after another one had started.
		desc := fmt.Sprintf("pid %d term %d: %s seq %d at %s", d.pid, d.term, d.topic, d.seq, time.Unix(0, d.at).Format("15:04:05.000000"))
		if last[termTopic{d.term, d.topic}] == d.seq {
			late = append(late, desc) // one per topic at most: its term's last
			continue
		}
		bad = append(bad, desc)
	}
	if len(bad) > 0 {
		t.Errorf("two processes handled at the same time: %d calls of a term after another term had started, e.g. %v", len(bad), bad[:min(5, len(bad))])
	}
	r.notes = append(r.notes, fmt.Sprintf("terms with handler calls: %d, each one run in time; calls entered before a pause and timed after it: %d %v",
		runs, len(late), late))
	return runs
}

// checkHandover fails the test when the new owner did not resume exactly
// after the checkpoint the old owner left, and returns (and notes) how
// much it handled again: what the old owner handled after its last
// checkpoint.
func checkHandover(t *testing.T, r *runReport, n int, ho *handover, all []procDel) (again int) {
	t.Helper()
	first := map[string]uint64{}
	lastOld := map[string]uint64{}
	for _, d := range all {
		if d.term == ho.toTerm && (first[d.topic] == 0 || d.seq < first[d.topic]) {
			first[d.topic] = d.seq
		}
		if d.term == ho.fromTerm {
			lastOld[d.topic] = max(lastOld[d.topic], d.seq)
		}
	}
	for _, tp := range topics {
		if f, ok := first[tp]; ok && ho.cpSure && f != ho.cp[tp].Seq+1 {
			t.Errorf("hand-over %d (%s of %s): %s resumed %s at seq %d, the checkpoint it took over was %d",
				n, ho.kind, ho.from.label, ho.to.label, tp, f, ho.cp[tp].Seq)
		}
		if lastOld[tp] > ho.cp[tp].Seq {
			again += int(lastOld[tp] - ho.cp[tp].Seq)
		}
	}
	sure := ""
	if !ho.cpSure {
		sure = " (the checkpoint was not read before the new claim: resume point not checked)"
	}
	fenced := ""
	if ho.kind == "sigstop" {
		fenced = fmt.Sprintf(", %d checkpoint writes of the woken owner refused", ho.fenced)
	}
	r.notes = append(r.notes, fmt.Sprintf("hand-over %d: %s of %s (pid %d) → %s (pid %d) resumed after the checkpoint on %d/%d topics, %d events handled again (after the old owner's last checkpoint)%s%s",
		n, ho.kind, ho.from.label, ho.fromPid, ho.to.label, ho.toPid, len(first), len(topics), again, fenced, sure))
	return again
}

// childFollowing are the follower options of a child process: quick
// repairs and checkpoints, the lease of its spec, an R line per reconnect.
func childFollowing(lease time.Duration, line func(format string, args ...any) error) bus.Option {
	return bus.WithFollowerOptions(
		replay.WithHeadCheck(250*time.Millisecond),
		replay.WithBackoff(10*time.Millisecond, 500*time.Millisecond, 2),
		replay.WithCheckpointEvery(50, 100*time.Millisecond),
		replay.WithLease(lease),
		replay.WithOnReconnect(func(string) { _ = line("R") }))
}

// childLosses writes an L line per loss report of a child process.
func childLosses(line func(format string, args ...any) error) bus.Option {
	return bus.WithOnLoss(func(l *replay.LossError) {
		epoch := l.Epoch
		if epoch == "" {
			epoch = "-"
		}
		code := lossCodes[l.Reason]
		if code == "" {
			code = "other"
		}
		_ = line("L %s %s %d %d %s", l.Topic, epoch, l.From, l.To, code)
	})
}

// checkLog reads the logs of tps into r (events written twice; publishes
// that failed but were written) and fails t for an event written twice and,
// unless retention trims the logs, for an acknowledged event the log does
// not hold. It returns the log's entries by payload key.
func (e *env) checkLog(t *testing.T, r *runReport, tps []string, trimmed bool) map[int64]logEntry {
	t.Helper()
	inLog, dups := e.readLogOf(tps)
	r.logDups = dups
	if dups > 0 {
		t.Errorf("%d events written twice to the log (a retried publish without idempotency?)", dups)
	}
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	for k, p := range e.h.pubs {
		_, logged := inLog[k]
		switch {
		case !p.ok && logged:
			r.written++
		case p.ok && !logged && !trimmed:
			t.Errorf("acknowledged k %d (%s seq %d) is not in the log", k, p.topic, p.seq)
		}
	}
	return inLog
}
