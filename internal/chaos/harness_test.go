package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// Event is what the chaos publisher sends: K is unique per publish attempt.
// Its type is its topic's name, so that a batch spreads over the topics.
type Event struct {
	K     int64  `json:"k"`
	Pad   string `json:"pad,omitempty"`
	Topic string `json:"-"`
}

func (e Event) EventType() string { return e.Topic }

var topics = []string{"chaos.t0", "chaos.t1", "chaos.t2", "chaos.t3"}

const pattern = "chaos.*"

// Subscriber names, in table order.
const (
	subPlain   = "plain"
	subPattern = "pattern"
	subDurable = "durable"
)

// clientOptions are the go-redis settings of every chaos client: short
// enough to notice trouble, long enough for 200 ms ± jitter of latency.
func clientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolTimeout:  3 * time.Second,
	}
}

// subscriberTransport is the transport of every subscriber: the liveness
// probe and head check are fast so that a half-open connection is noticed
// within about a second.
func subscriberTransport(rdb redis.UniversalClient) (*redistransport.Transport, error) {
	return redistransport.New(rdb, redistransport.WithProbe(250*time.Millisecond, time.Second))
}

func followerOptions() bus.Option {
	return bus.WithFollowerOptions(
		replay.WithHeadCheck(250*time.Millisecond),
		replay.WithBackoff(10*time.Millisecond, 500*time.Millisecond, 2),
		replay.WithDrainTimeout(2*time.Second))
}

// decodeK reads the publish key of a chaos event.
func decodeK(m *bus.Message) (int64, error) {
	var e Event
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return 0, err
	}
	return e.K, nil
}

// env is one run's world: a Redis with AOF, a proxy for the subscribers
// and one for the publisher, and an admin client that bypasses both.
type env struct {
	t        *testing.T
	srv      *redistest.Server
	subProxy *redistest.Proxy
	pubProxy *redistest.Proxy
	admin    *redis.Client
	h        *history
	maxLen   int64
	pad      int

	inproc []*inprocSub
	child  *childSub

	pubNoRetry  bool     // the publisher's client does not retry failed commands
	childDirect bool     // the durable child connects to Redis without the proxy
	notes       []string // faults picked by the mixed schedule

	recMu sync.Mutex
	rec   map[string]time.Duration // subscriber -> longest recovery

	pubKeys atomic.Int64
	failed  atomic.Int64
	acked   atomic.Int64
	heapMax atomic.Uint64
}

func newEnv(t *testing.T, maxLen int64) *env {
	srv := redistest.Start(t, redistest.WithAOF())
	e := &env{
		t:        t,
		srv:      srv,
		subProxy: redistest.StartProxy(t, srv.Addr()),
		pubProxy: redistest.StartProxy(t, srv.Addr()),
		admin:    redis.NewClient(clientOptions(srv.Addr())),
		h:        newHistory(),
		maxLen:   maxLen,
	}
	t.Cleanup(func() { e.admin.Close() })
	return e
}

// inprocSub is a subscriber bus in the test process.
type inprocSub struct {
	name string
	rdb  *redis.Client
	b    *bus.Bus
	done chan error
}

func (e *env) startInproc(name string) *inprocSub {
	rdb := redis.NewClient(clientOptions(e.subProxy.Addr()))
	tr, err := subscriberTransport(rdb)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := bus.New(tr, followerOptions(),
		bus.WithOnLoss(func(l *replay.LossError) { e.h.lost(name, l) }))
	if err != nil {
		e.t.Fatal(err)
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		e.h.delivered(name, delivery{k: k, topic: m.Topic, epoch: m.Position.Epoch, seq: m.Position.Seq})
		return nil
	})
	if name == subPattern {
		_, err = b.Handle(pattern, h, bus.StartAt(bus.Beginning()))
	} else {
		for _, tp := range topics {
			if _, err = b.Handle(tp, h, bus.StartAt(bus.Beginning())); err != nil {
				break
			}
		}
	}
	if err != nil {
		e.t.Fatal(err)
	}
	s := &inprocSub{name: name, rdb: rdb, b: b, done: make(chan error, 1)}
	go func() { s.done <- b.Run(context.Background()) }()
	e.inproc = append(e.inproc, s)
	e.t.Cleanup(func() { s.stop(e.t); tr.Close(); rdb.Close() })
	return s
}

func (s *inprocSub) stop(t *testing.T) {
	if s.done == nil {
		return
	}
	s.b.Close()
	if err := <-s.done; err != nil {
		t.Errorf("%s subscriber: Run: %v", s.name, err)
	}
	s.done = nil
}

func (s *inprocSub) reconnects() uint64 {
	var n uint64
	for _, st := range s.b.Status() {
		n += st.Stats.Reconnects
	}
	return n
}

// sampleHeap records the peak HeapInuse of the test process. It collects
// first, so that a run does not count the garbage of the run before it.
func (e *env) sampleHeap(ctx context.Context) {
	runtime.GC()
	var ms runtime.MemStats
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		runtime.ReadMemStats(&ms)
		for {
			cur := e.heapMax.Load()
			if ms.HeapInuse <= cur || e.heapMax.CompareAndSwap(cur, ms.HeapInuse) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// The durable subscriber runs as a child process: the test binary run
// again with childEnv set. It writes one line per event handled
// ("D <k> <topic> <epoch> <seq>"), per loss ("L <topic> <epoch> <from>
// <to>") and per reconnect ("R"), and "READY" once its bus is Ready,
// unbuffered, so a SIGKILL loses nothing that was handled.
const childEnv = "DURABUS_CHAOS_CHILD"

func init() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
}

func runChild(spec string) int {
	fs := strings.Fields(spec)
	addr, out := fs[0], fs[1]
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
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
	opts := clientOptions(addr)
	if len(fs) > 2 && fs[2] == "smallbuf" {
		// A small socket receive buffer: when this process stops reading,
		// Redis's output buffer fills within a second instead of after the
		// kernel's megabytes.
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
	b, err := bus.New(tr, bus.WithConsumer("chaos-durable"),
		bus.WithFollowerOptions(
			replay.WithHeadCheck(250*time.Millisecond),
			replay.WithBackoff(10*time.Millisecond, 500*time.Millisecond, 2),
			replay.WithCheckpointEvery(50, 100*time.Millisecond),
			replay.WithOnReconnect(func(string) { _ = line("R") })),
		bus.WithOnLoss(func(l *replay.LossError) { _ = line("L %s %s %d %d", l.Topic, l.Epoch, l.From, l.To) }))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		return line("D %d %s %s %d", k, m.Topic, m.Position.Epoch, m.Position.Seq)
	})
	for _, tp := range topics {
		if _, err := b.Handle(tp, h, bus.StartAt(bus.Beginning())); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ctx, stop := signalContext()
	defer stop()
	go func() {
		// "READY": subscribed on every topic with its start position
		// resolved. The harness starts no fault before it (and, for the
		// first incarnation, before the checkpoint hash holds every topic).
		if b.Ready(ctx) == nil {
			_ = line("READY")
		}
	}()
	if err := b.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// signalContext ends on SIGTERM: the child then closes its bus, which
// flushes its checkpoints.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// childSub runs the durable subscriber process and tails its output into
// the history.
type childSub struct {
	e     *env
	out   string
	mu    sync.Mutex
	cmd   *exec.Cmd
	inc   int
	waitc chan struct{}
	hwm   uint64 // peak VmHWM over incarnations, bytes

	off        int64
	partial    string
	reconnects uint64
	readyInc   int // the last incarnation that wrote "READY"
	tailMu     sync.Mutex
}

func (e *env) startChild() *childSub {
	c := &childSub{e: e, out: e.t.TempDir() + "/durable.log"}
	c.start()
	e.child = c
	e.t.Cleanup(func() { c.kill(syscall.SIGKILL) })
	return c
}

func (c *childSub) start() {
	// Read what the previous incarnation (stopped by now) wrote while it
	// is still the current one: its last lines must not be counted as
	// the next one's.
	c.tail()
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	spec := c.e.subProxy.Addr() + " " + c.out
	if c.e.childDirect {
		spec = c.e.srv.Addr() + " " + c.out + " smallbuf"
	}
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.e.t.Fatal(err)
	}
	c.inc++
	c.cmd = cmd
	c.waitc = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(c.waitc)
}

// kill signals the child and waits for it to exit.
func (c *childSub) kill(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	c.sampleLocked()
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.waitc:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.waitc
	}
	c.cmd = nil
}

func (c *childSub) signal(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		_ = c.cmd.Process.Signal(sig)
	}
}

func (c *childSub) sample() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sampleLocked()
}

// sampleLocked reads the child's VmHWM (peak resident set) from /proc.
func (c *childSub) sampleLocked() {
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
			if kb*1024 > c.hwm {
				c.hwm = kb * 1024
			}
		}
	}
}

func (c *childSub) incarnation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inc
}

// tail reads the lines the child appended since the last call.
func (c *childSub) tail() {
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
	text := c.partial + string(data)
	lines := strings.Split(text, "\n")
	c.partial = lines[len(lines)-1]
	inc := c.incarnation()
	for _, l := range lines[:len(lines)-1] {
		fs := strings.Fields(l)
		switch {
		case len(fs) == 1 && fs[0] == "R":
			c.reconnects++
		case len(fs) == 1 && fs[0] == "READY":
			c.readyInc = inc
		case len(fs) == 5 && fs[0] == "L":
			from, _ := strconv.ParseUint(fs[3], 10, 64)
			to, _ := strconv.ParseUint(fs[4], 10, 64)
			c.e.h.lost(subDurable, &replay.LossError{Topic: fs[1], Epoch: fs[2], From: from, To: to})
		case len(fs) == 5 && fs[0] == "D":
			k, _ := strconv.ParseInt(fs[1], 10, 64)
			seq, _ := strconv.ParseUint(fs[4], 10, 64)
			c.e.h.delivered(subDurable, delivery{k: k, topic: fs[2], epoch: fs[3], seq: seq, inc: inc})
		default:
			c.e.t.Errorf("durable child wrote %q", l)
		}
	}
}

// readyTimeout bounds every wait for a subscriber to become ready: long,
// since a loaded 2-core machine running -race can take seconds to start
// the child process and subscribe.
const readyTimeout = 90 * time.Second

// checkpointKey is the durable child's checkpoint hash.
const checkpointKey = "durabus:consumer:chaos-durable"

// isReady reports whether the current incarnation wrote "READY".
func (c *childSub) isReady() bool {
	c.tail()
	inc := c.incarnation()
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return c.readyInc == inc
}

// positionSaved reports whether the checkpoint hash holds every topic
// the child follows.
func (c *childSub) positionSaved() (bool, error) {
	cps, err := c.e.admin.HGetAll(context.Background(), checkpointKey).Result()
	if err != nil {
		return false, err
	}
	for _, tp := range topics {
		if _, ok := cps[tp]; !ok {
			return false, nil
		}
	}
	return true, nil
}

// waitReady waits until the running incarnation of the child is ready:
// subscribed (its bus Ready) and its position saved in Redis (the
// checkpoint hash holds every topic). A fault that stops or kills it
// before then would test nothing: with no saved position a restart
// begins afresh and has nothing to report.
func (c *childSub) waitReady() {
	c.e.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		ready := c.isReady()
		saved := false
		if ready {
			saved, lastErr = c.positionSaved()
		}
		if ready && saved {
			return
		}
		if time.Now().After(deadline) {
			c.e.t.Fatalf("durable child (incarnation %d) not ready after %v: Ready %v, every topic in %s %v (last error: %v)",
				c.incarnation(), readyTimeout, ready, checkpointKey, saved, lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until every subscriber is ready (see childSub.waitReady).
// Every fault episode starts with it.
func (e *env) waitReady() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, s := range e.inproc {
		if err := s.b.Ready(ctx); err != nil {
			e.t.Fatalf("%s subscriber not ready after %v: %v", s.name, readyTimeout, err)
		}
	}
	if e.child != nil {
		e.child.waitReady()
	}
}

// follow tails the child's output and samples its memory until ctx ends.
func (c *childSub) follow(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		c.tail()
		if i%5 == 0 {
			c.sample()
		}
		select {
		case <-ctx.Done():
			c.tail()
			return
		case <-tick.C:
		}
	}
}

// publisher publishes at a steady rate: one goroutine sends single events
// round-robin over the topics, another sends batches of batchSize spread
// over the topics. Every attempt and every acknowledgement is recorded.
type publisher struct {
	e   *env
	rdb *redis.Client
	b   *bus.Bus
	tr  *redistransport.Transport
}

func (e *env) newPublisher() *publisher {
	ro := clientOptions(e.pubProxy.Addr())
	if e.pubNoRetry {
		ro.MaxRetries = -1
	}
	rdb := redis.NewClient(ro)
	opts := []redistransport.Option{redistransport.WithIdempotency(10 * time.Minute)}
	if e.maxLen > 0 {
		opts = append(opts, redistransport.WithMaxLen(e.maxLen))
	}
	tr, err := redistransport.New(rdb, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := bus.New(tr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { b.Close(); tr.Close(); rdb.Close() })
	return &publisher{e: e, rdb: rdb, b: b, tr: tr}
}

const batchSize = 8

// run publishes every interval until ctx ends: a single event and, every
// other tick, a batch.
func (p *publisher) run(ctx context.Context, interval time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	pad := strings.Repeat("x", p.e.pad)
	var inner sync.WaitGroup
	batches := make(chan struct{}, 1)
	inner.Add(1)
	go func() {
		defer inner.Done()
		for range batches {
			p.batch(ctx, pad)
		}
	}()
	defer func() { close(batches); inner.Wait() }()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.single(ctx, topics[n%len(topics)], pad)
		if n%2 == 0 {
			select {
			case batches <- struct{}{}:
			default: // the batcher is still busy (a fault): skip, keep the rate
			}
		}
	}
}

func (p *publisher) single(ctx context.Context, topic, pad string) {
	k := p.e.pubKeys.Add(1)
	p.e.h.attempt(k, topic)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pos, err := p.b.Publish(pctx, Event{K: k, Pad: pad, Topic: topic})
	if err != nil {
		p.e.failed.Add(1)
		return
	}
	p.e.acked.Add(1)
	p.e.h.acked(k, pos.Epoch, pos.Seq, pos.ID)
}

func (p *publisher) batch(ctx context.Context, pad string) {
	events := make([]bus.Event, batchSize)
	keys := make([]int64, batchSize)
	for i := range events {
		keys[i] = p.e.pubKeys.Add(1)
		topic := topics[i%len(topics)]
		p.e.h.attempt(keys[i], topic)
		events[i] = Event{K: keys[i], Pad: pad, Topic: topic}
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pos, err := p.b.PublishBatch(pctx, events)
	failed := batchFailed(err, len(events))
	for i := range events {
		if failed[i] || i >= len(pos) || pos[i].Seq == 0 {
			p.e.failed.Add(1)
			continue
		}
		p.e.acked.Add(1)
		p.e.h.acked(keys[i], pos[i].Epoch, pos[i].Seq, pos[i].ID)
	}
}

// healed starts measuring recovery: the time from the end of a fault until
// each subscriber delivers, on every topic, an event acknowledged after it
// ended (and so everything before it too).
func (e *env) healed(ctx context.Context, wg *sync.WaitGroup) {
	heads := e.h.ackedHeads()
	start := time.Now()
	for _, sub := range []string{subPlain, subPattern, subDurable} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !e.h.passed(sub, heads) {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			d := time.Since(start)
			e.recMu.Lock()
			defer e.recMu.Unlock()
			if e.rec == nil {
				e.rec = map[string]time.Duration{}
			}
			if d > e.rec[sub] {
				e.rec[sub] = d
			}
		}()
	}
}

func (e *env) recovery(sub string) time.Duration {
	e.recMu.Lock()
	defer e.recMu.Unlock()
	return e.rec[sub]
}

// logHeads returns the seq of the last entry of each topic's log.
func (e *env) logHeads() map[string]uint64 { return e.logHeadsOf(topics) }

// logHeadsOf is logHeads for the topics tps.
func (e *env) logHeadsOf(tps []string) map[string]uint64 {
	ctx := context.Background()
	out := map[string]uint64{}
	for _, tp := range tps {
		last, err := e.admin.XRevRangeN(ctx, "durabus:{"+tp+"}:log", "+", "-", 1).Result()
		if err != nil {
			e.t.Fatalf("read the head of %s: %v", tp, err)
		}
		if len(last) == 1 {
			out[tp], _ = strconv.ParseUint(fmt.Sprint(last[0].Values["seq"]), 10, 64)
		}
	}
	return out
}

// readLogOf reads the logs of the topics tps: the key of each entry and its
// seq, and how many keys appear more than once.
func (e *env) readLogOf(tps []string) (map[int64]logEntry, int) {
	ctx := context.Background()
	out := map[int64]logEntry{}
	dups := 0
	for _, tp := range tps {
		key := "durabus:{" + tp + "}:log"
		after := "-"
		for {
			page, err := e.admin.XRangeN(ctx, key, after, "+", 5000).Result()
			if err != nil {
				e.t.Fatalf("read %s: %v", key, err)
			}
			for _, m := range page {
				seq, _ := strconv.ParseUint(fmt.Sprint(m.Values["seq"]), 10, 64)
				var env struct {
					Data Event `json:"data"`
				}
				if err := json.Unmarshal([]byte(fmt.Sprint(m.Values["e"])), &env); err != nil {
					e.t.Errorf("%s entry %s: half-written or not an envelope: %v", key, m.ID, err)
					continue
				}
				if _, dup := out[env.Data.K]; dup {
					dups++
				}
				out[env.Data.K] = logEntry{topic: tp, seq: seq}
			}
			if len(page) < 5000 {
				break
			}
			after = "(" + page[len(page)-1].ID
		}
	}
	return out, dups
}

// outputBufferDisconnects reports how many clients Redis closed for their
// output buffer (INFO stats, when the server has the counter) and the
// matching log lines.
func (e *env) outputBufferDisconnects() string {
	info, _ := e.admin.Info(context.Background(), "stats").Result()
	counter := "no counter in INFO"
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "client_output_buffer_limit_disconnections:") {
			counter = l
		}
	}
	logData, _ := os.ReadFile(e.srv.Dir() + "/redis.log")
	n := strings.Count(string(logData), "output buffer limits")
	return fmt.Sprintf("%s; %d \"output buffer limits\" log lines", counter, n)
}

// batchFailed returns the indexes of a batch of n events that
// PublishBatch's err says failed: those a transport.BatchError names, all
// for another error, none for nil.
func batchFailed(err error, n int) map[int]bool {
	failed := map[int]bool{}
	var be *transport.BatchError
	switch {
	case errors.As(err, &be):
		for _, i := range be.Failed {
			failed[i] = true
		}
	case err != nil:
		for i := range n {
			failed[i] = true
		}
	}
	return failed
}
