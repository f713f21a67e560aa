package chaos

// Data faults: Redis itself loses, evicts or refuses data. Where the
// process faults of chaos_test.go test how durabus copes with broken
// connections and stopped processes, these test what it tells its
// subscribers when the backlog is not what it was:
//
//   - sentinel-failover: a failover through a real redis-server --sentinel
//     to a replica whose link was paused, so that the writes acknowledged
//     since are lost (redis.NewFailoverClient everywhere);
//   - maxmemory-allkeys-lru: keys evicted under memory pressure (logs, meta
//     hashes, checkpoints, consumer records);
//   - maxmemory-noeviction: Redis full, writes refused with OOM;
//   - host-crash: appendfsync everysec and a crash that loses the writes of
//     the last moments (the AOF cut back to a mark);
//   - epoch-churn: the topics' meta hashes deleted again and again.
//
// Each runs the chaos publisher and four subscribers: plain and pattern in
// this process, and two durable consumers in child processes: "durable",
// which runs through the faults, and "offline", which is stopped before a
// fault and started after it (or during it). The history is checked with
// rollbacks in mind (a seq can be handed out twice), so the checker is
// this file's own (checkData); the table is the harness's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
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
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// subOffline is the durable consumer that is away during the faults.
const subOffline = "offline"

// dataSubs are the rows of a data-fault table.
var dataSubs = []string{subPlain, subPattern, subDurable, subOffline}

// dataConsumers names the durable consumer of each child.
var dataConsumers = map[string]string{subDurable: "chaos-durable", subOffline: "chaos-offline"}

// quiet discards logs: losses and errors are recorded through the
// callbacks, and the default logger would print thousands of lines.
var quiet = slog.New(slog.DiscardHandler)

// dataConn says how a client reaches Redis: a fixed address, or the master
// that sentinels name (redis.NewFailoverClient).
type dataConn struct {
	Addr      string   `json:"addr,omitempty"`
	Sentinels []string `json:"sentinels,omitempty"`
}

func (c dataConn) client() *redis.Client {
	o := clientOptions(c.Addr)
	if len(c.Sentinels) == 0 {
		return redis.NewClient(o)
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    redistest.SentinelMasterName,
		SentinelAddrs: c.Sentinels,
		DialTimeout:   o.DialTimeout,
		ReadTimeout:   o.ReadTimeout,
		WriteTimeout:  o.WriteTimeout,
		PoolTimeout:   o.PoolTimeout,
	})
}

// dataTransport is subscriberTransport without logging.
func dataTransport(rdb redis.UniversalClient) (*redistransport.Transport, error) {
	return redistransport.New(rdb, redistransport.WithProbe(250*time.Millisecond, time.Second),
		redistransport.WithLogger(quiet))
}

// The durable consumers run as child processes (the test binary again,
// with dataChildEnv set to a dataChildSpec). Each writes one line per
// event handled ("D <k> <topic> <epoch> <seq> <stream id>"), per loss
// ("L <topic> <epoch|-> <from> <to> <reason>"), per reconnect ("R"), per
// lost lease ("T"), per other error ("E <text>"), and "READY" once its bus
// is Ready, unbuffered.
const dataChildEnv = "DURABUS_CHAOS_DATA_CHILD"

type dataChildSpec struct {
	Conn     dataConn      `json:"conn"`
	Out      string        `json:"out"`
	Consumer string        `json:"consumer"`
	Lease    time.Duration `json:"lease,omitempty"`
	// Bus: follow the topics through a bus.Bus with one Handle per topic,
	// as the harness's child does; otherwise through one replay.Follower
	// of every topic.
	Bus bool `json:"bus,omitempty"`
}

// dataChildBus picks the children's API: a durable bus.Bus with one
// Handle per topic (one replay.Follower per topic, sharing the bus's
// lease), as the harness's child does; false runs one replay.Follower over
// all topics instead.
const dataChildBus = true

func init() {
	if spec := os.Getenv(dataChildEnv); spec != "" {
		os.Exit(runDataChild(spec))
	}
}

func runDataChild(spec string) int {
	var s dataChildSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(s.Out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
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
	rdb := s.Conn.client()
	tr, err := dataTransport(rdb)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fopts := []replay.Option{
		replay.WithHeadCheck(250 * time.Millisecond),
		replay.WithBackoff(10*time.Millisecond, 500*time.Millisecond, 2),
		replay.WithCheckpointEvery(50, 100*time.Millisecond),
		replay.WithOnReconnect(func(string) { _ = line("R") }),
	}
	if s.Lease > 0 {
		fopts = append(fopts, replay.WithLease(s.Lease))
	}
	onLoss := func(l *replay.LossError) {
		epoch := l.Epoch
		if epoch == "" {
			epoch = "-"
		}
		next := l.Next
		if next == "" {
			next = "-"
		}
		_ = line("L %s %s %d %d %s %s", l.Topic, epoch, l.From, l.To, next, l.Reason)
	}
	onError := func(err error) {
		if errors.Is(err, replay.ErrNotOwner) {
			_ = line("T")
			return
		}
		_ = line("E %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	handled := func(k int64, p transport.Position, topic string) error {
		return line("D %d %s %s %d %s", k, topic, p.Epoch, p.Seq, p.ID)
	}
	ctx, stop := signalContext()
	defer stop()
	var run func(context.Context) error
	var ready func(context.Context) error
	if s.Bus {
		b, err := bus.New(tr, bus.WithConsumer(s.Consumer), bus.WithLogger(quiet),
			bus.WithFollowerOptions(fopts...), bus.WithOnLoss(onLoss), bus.WithOnError(onError))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
			k, err := decodeK(m)
			if err != nil {
				return err
			}
			return handled(k, m.Position, m.Topic)
		})
		for _, tp := range topics {
			if _, err := b.Handle(tp, h, bus.StartAt(bus.Beginning())); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		run, ready = b.Run, b.Ready
	} else {
		h := func(_ context.Context, d replay.Delivery) error {
			var env struct {
				Data Event `json:"data"`
			}
			if err := json.Unmarshal(d.Data, &env); err != nil {
				return err
			}
			return handled(env.Data.K, d.Position, d.Topic)
		}
		f, err := replay.New(tr, h, append(fopts, replay.WithTopics(topics...), replay.WithConsumer(s.Consumer),
			replay.WithStart(replay.Beginning()), replay.WithLogger(quiet),
			replay.WithOnLoss(onLoss), replay.WithOnError(onError))...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		run = f.Run
		ready = func(ctx context.Context) error {
			select {
			case <-f.Ready():
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	go func() {
		if ready(ctx) == nil {
			_ = line("READY")
		}
	}()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// dataDel is one handler call.
type dataDel struct {
	k     int64
	topic string
	epoch string
	seq   uint64
	id    string
	inc   int   // process incarnation (children), 0 in this process
	at    int64 // when it was recorded, in the order of the records
}

// dataLoss is one LossError a subscriber reported.
type dataLoss struct {
	replay.LossError
	inc int
	at  int64 // when it was recorded, in the order of the records
	// upTo, for an open-ended report (To 0) that names the next epoch, is
	// the seq before the first event the subscriber handled on the topic
	// after it, when that event goes on in the report's lineage: the
	// report runs "up to Next's first event" (replay.LossError). 0:
	// open-ended.
	upTo uint64
}

// dataRec records what the subscribers were handed and told.
type dataRec struct {
	mu      sync.Mutex
	seq     int64 // orders the records
	dels    map[string][]dataDel
	got     map[string]map[int64]bool
	maxK    map[string]map[string]int64 // sub -> topic -> highest k handled
	losses  map[string][]dataLoss
	errs    map[string]int
	samples map[string][]string
}

func newDataRec() *dataRec {
	return &dataRec{
		dels: map[string][]dataDel{}, got: map[string]map[int64]bool{}, maxK: map[string]map[string]int64{},
		losses: map[string][]dataLoss{}, errs: map[string]int{}, samples: map[string][]string{},
	}
}

func (r *dataRec) delivered(sub string, d dataDel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	d.at = r.seq
	r.dels[sub] = append(r.dels[sub], d)
	if r.got[sub] == nil {
		r.got[sub] = map[int64]bool{}
		r.maxK[sub] = map[string]int64{}
	}
	r.got[sub][d.k] = true
	if d.k > r.maxK[sub][d.topic] {
		r.maxK[sub][d.topic] = d.k
	}
}

func (r *dataRec) lost(sub string, l replay.LossError, inc int) {
	r.mu.Lock()
	r.seq++
	r.losses[sub] = append(r.losses[sub], dataLoss{LossError: l, inc: inc, at: r.seq})
	r.mu.Unlock()
}

func (r *dataRec) err(sub, text string) {
	r.mu.Lock()
	r.errs[sub]++
	if len(r.samples[sub]) < 3 {
		r.samples[sub] = append(r.samples[sub], text)
	}
	r.mu.Unlock()
}

// count returns the number of handler calls and loss reports so far.
func (r *dataRec) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.dels {
		n += len(d)
	}
	for _, l := range r.losses {
		n += len(l)
	}
	return n
}

// passedK reports whether sub has handled, on every topic, an event
// published after key k.
func (r *dataRec) passedK(sub string, k int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tp := range topics {
		if r.maxK[sub][tp] <= k {
			return false
		}
	}
	return true
}

// dataEnv is one data-fault run: the harness env (history, publish
// counters, admin client), how clients reach Redis, the recorder, the two
// durable children and the publisher's gate.
type dataEnv struct {
	*env
	conn   dataConn
	rec    *dataRec
	kids   map[string]*dataChild
	lease  time.Duration
	resets bool // logs may be reset (a new epoch from seq 1): see dataFacts
	fo     *failoverWorld

	pubLog *captureHandler

	hold     atomic.Bool  // the publisher publishes nothing while set
	inflight atomic.Int64 // publish calls under way

	recMu sync.Mutex
	rec2  map[string]time.Duration // sub -> longest recovery

	faults []string // what each episode did, for the notes

	evictMu   sync.Mutex
	evicted   map[string]int // kind -> keys evicted; nil unless tracked
	evictSeen string         // the last evictSync token the tracker saw
	// amnesia: subscribers whose consumer record and checkpoint hash were
	// both evicted while their process was stopped (see dataFacts).
	amnesia map[string]bool
}

func newDataEnv(t *testing.T, conn dataConn, srv *redistest.Server) *dataEnv {
	e := &env{t: t, srv: srv, admin: conn.client(), h: newHistory()}
	t.Cleanup(func() { e.admin.Close() })
	return &dataEnv{env: e, conn: conn, rec: newDataRec(), kids: map[string]*dataChild{}, pubLog: &captureHandler{}}
}

// startSub starts an in-process subscriber (plain: every topic; pattern:
// chaos.*), from the beginning.
func (d *dataEnv) startSub(name string) {
	rdb := d.conn.client()
	tr, err := dataTransport(rdb)
	if err != nil {
		d.t.Fatal(err)
	}
	b, err := bus.New(tr, followerOptions(), bus.WithLogger(quiet),
		bus.WithOnLoss(func(l *replay.LossError) { d.rec.lost(name, *l, 0) }),
		bus.WithOnError(func(err error) { d.rec.err(name, err.Error()) }))
	if err != nil {
		d.t.Fatal(err)
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		k, err := decodeK(m)
		if err != nil {
			return err
		}
		d.rec.delivered(name, dataDel{k: k, topic: m.Topic, epoch: m.Position.Epoch, seq: m.Position.Seq, id: m.Position.ID})
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
		d.t.Fatal(err)
	}
	s := &inprocSub{name: name, rdb: rdb, b: b, done: make(chan error, 1)}
	go func() { s.done <- b.Run(context.Background()) }()
	d.inproc = append(d.inproc, s)
	d.t.Cleanup(func() { s.stop(d.t); tr.Close(); rdb.Close() })
}

// newPublisher is the harness's publisher (idempotency window on) on this
// run's connection; the transport's warnings (rollback markers) are kept.
func (d *dataEnv) newPublisher() *publisher {
	rdb := d.conn.client()
	tr, err := redistransport.New(rdb, redistransport.WithIdempotency(10*time.Minute),
		redistransport.WithLogger(slog.New(d.pubLog)))
	if err != nil {
		d.t.Fatal(err)
	}
	b, err := bus.New(tr, bus.WithLogger(quiet))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { b.Close(); tr.Close(); rdb.Close() })
	return &publisher{e: d.env, rdb: rdb, b: b, tr: tr}
}

// publish is publisher.run with a gate: while d.hold is set it publishes
// nothing (holdPublisher waits for the calls under way).
func (d *dataEnv) publish(ctx context.Context, p *publisher, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(*chaosRate)
	defer tick.Stop()
	var inner sync.WaitGroup
	batches := make(chan struct{}, 1)
	inner.Add(1)
	go func() {
		defer inner.Done()
		for range batches {
			p.batch(ctx, "")
			d.inflight.Add(-1)
		}
	}()
	defer func() { close(batches); inner.Wait() }()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.inflight.Add(1) // before looking at the gate: see holdPublisher
		if d.hold.Load() {
			d.inflight.Add(-1)
			continue
		}
		p.single(ctx, topics[n%len(topics)], "")
		if n%2 == 0 {
			select {
			case batches <- struct{}{}: // the batcher's Add(-1) ends it
				continue
			default:
			}
		}
		d.inflight.Add(-1)
	}
}

// holdPublisher stops the publisher and waits until no publish call is
// under way.
func (d *dataEnv) holdPublisher() {
	d.t.Helper()
	d.hold.Store(true)
	waitFor(d.t, "the publisher's calls under way to end", func() (bool, string) {
		n := d.inflight.Load()
		return n == 0, fmt.Sprintf("%d under way", n)
	})
}

// waitFor polls cond every 20 ms until it holds, failing the test after
// readyTimeout.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %s", readyTimeout, what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAcked waits until every topic has at least n events acknowledged
// whose key is above k (published after k).
func (d *dataEnv) waitAcked(k int64, n int) {
	d.t.Helper()
	waitFor(d.t, fmt.Sprintf("%d acknowledged events per topic after key %d", n, k), func() (bool, string) {
		d.h.mu.Lock()
		defer d.h.mu.Unlock()
		count := map[string]int{}
		for key, p := range d.h.pubs {
			if key > k && p.ok {
				count[p.topic]++
			}
		}
		for _, tp := range topics {
			if count[tp] < n {
				return false, fmt.Sprintf("acknowledged per topic %v", count)
			}
		}
		return true, ""
	})
}

// waitReady waits until the in-process subscribers are Ready and every
// running child is ready (see dataChild.ready).
func (d *dataEnv) waitReady() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, s := range d.inproc {
		if err := s.b.Ready(ctx); err != nil {
			d.t.Fatalf("%s subscriber not ready after %v: %v", s.name, readyTimeout, err)
		}
	}
	for _, name := range []string{subDurable, subOffline} {
		if c := d.kids[name]; c != nil && c.running() {
			c.waitReady()
		}
	}
}

// healed measures recovery: the time from the end of a fault until each
// subscriber has handled, on every topic, an event published after it.
func (d *dataEnv) healed(ctx context.Context, wg *sync.WaitGroup) {
	k := d.pubKeys.Load()
	start := time.Now()
	for _, sub := range dataSubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !d.rec.passedK(sub, k) {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
			dur := time.Since(start)
			d.recMu.Lock()
			defer d.recMu.Unlock()
			if d.rec2 == nil {
				d.rec2 = map[string]time.Duration{}
			}
			d.rec2[sub] = max(d.rec2[sub], dur)
		}()
	}
}

// captureHandler keeps the records logged at warn level or above (the
// publisher's rollback warnings), the first few in full.
type captureHandler struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func (h *captureHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *captureHandler) WithGroup(string) slog.Handler                { return h }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if len(h.lines) < 6 {
		h.lines = append(h.lines, b.String())
	}
	return nil
}

func (h *captureHandler) summary() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n, append([]string(nil), h.lines...)
}

// dataChild runs one durable consumer process and tails its output into
// the recorder.
type dataChild struct {
	d        *dataEnv
	name     string // table row
	consumer string
	out      string

	mu    sync.Mutex
	cmd   *exec.Cmd
	inc   int
	waitc chan struct{}
	hwm   uint64

	tailMu     sync.Mutex
	off        int64
	partial    string
	readyInc   int
	reconnects uint64
	terms      int // "T" lines: leases lost
}

func (d *dataEnv) startChild(name string) *dataChild {
	c := &dataChild{d: d, name: name, consumer: dataConsumers[name], out: d.t.TempDir() + "/" + name + ".log"}
	d.kids[name] = c
	c.start()
	d.t.Cleanup(func() { c.stop(syscall.SIGKILL) })
	return c
}

func (c *dataChild) start() {
	c.tail() // the previous incarnation's last lines are its own
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		c.d.t.Fatalf("%s child started twice", c.name)
	}
	spec, err := json.Marshal(dataChildSpec{Conn: c.d.conn, Out: c.out, Consumer: c.consumer, Lease: c.d.lease, Bus: dataChildBus})
	if err != nil {
		c.d.t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), dataChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.d.t.Fatal(err)
	}
	c.inc++
	c.cmd = cmd
	c.waitc = make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(c.waitc)
}

// stop signals the child (SIGTERM: it flushes its checkpoints and releases
// its lease) and waits for it to exit.
func (c *dataChild) stop(sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	c.sampleLocked()
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.waitc:
	case <-time.After(30 * time.Second):
		c.d.t.Errorf("%s child: no exit 30 s after %v; killed", c.name, sig)
		_ = c.cmd.Process.Kill()
		<-c.waitc
	}
	c.cmd = nil
}

func (c *dataChild) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

func (c *dataChild) incarnation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inc
}

func (c *dataChild) sampleLocked() {
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

// tail reads the lines the child appended since the last call.
func (c *dataChild) tail() {
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
	data, err := io.ReadAll(f)
	if err != nil {
		return
	}
	c.off += int64(len(data))
	lines := strings.Split(c.partial+string(data), "\n")
	c.partial = lines[len(lines)-1]
	inc := c.incarnation()
	for _, l := range lines[:len(lines)-1] {
		fs := strings.Fields(l)
		switch {
		case len(fs) == 0:
		case fs[0] == "READY":
			c.readyInc = inc
		case fs[0] == "R":
			c.reconnects++
		case fs[0] == "T":
			c.terms++
		case fs[0] == "E":
			c.d.rec.err(c.name, strings.TrimPrefix(l, "E "))
		case fs[0] == "L" && len(fs) >= 7:
			from, _ := strconv.ParseUint(fs[3], 10, 64)
			to, _ := strconv.ParseUint(fs[4], 10, 64)
			epoch, next := fs[2], fs[5]
			if epoch == "-" {
				epoch = ""
			}
			if next == "-" {
				next = ""
			}
			c.d.rec.lost(c.name, replay.LossError{Topic: fs[1], Epoch: epoch, From: from, To: to, Next: next,
				Reason: replay.LossReason(strings.Join(fs[6:], " "))}, inc)
		case fs[0] == "D" && len(fs) == 6:
			k, _ := strconv.ParseInt(fs[1], 10, 64)
			seq, _ := strconv.ParseUint(fs[4], 10, 64)
			c.d.rec.delivered(c.name, dataDel{k: k, topic: fs[2], epoch: fs[3], seq: seq, id: fs[5], inc: inc})
		default:
			c.d.t.Errorf("%s child wrote %q", c.name, l)
		}
	}
}

// follow tails the child's output and samples its memory until ctx ends.
func (c *dataChild) follow(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		c.tail()
		if i%5 == 0 {
			c.mu.Lock()
			c.sampleLocked()
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			c.tail()
			return
		case <-tick.C:
		}
	}
}

// waitReady waits until the running incarnation wrote "READY" and its
// checkpoint hash holds every topic: a fault before then would test
// nothing.
func (c *dataChild) waitReady() {
	c.d.t.Helper()
	key := "durabus:consumer:" + c.consumer
	waitFor(c.d.t, fmt.Sprintf("%s child (incarnation %d) to be ready", c.name, c.incarnation()), func() (bool, string) {
		c.tail()
		c.tailMu.Lock()
		ready := c.readyInc == c.incarnation()
		c.tailMu.Unlock()
		if !ready {
			return false, "no READY yet"
		}
		cps, err := c.d.admin.HGetAll(context.Background(), key).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, tp := range topics {
			if _, ok := cps[tp]; !ok {
				return false, fmt.Sprintf("%s holds %d of %d topics", key, len(cps), len(topics))
			}
		}
		return true, ""
	})
}

// dataScenario is one data fault, injected in episodes until its time is
// up (at least once).
type dataScenario struct {
	name string
	// world starts the servers and returns the run's env.
	world func(t *testing.T) *dataEnv
	// episode injects the fault once and heals it. n counts from 0.
	episode func(d *dataEnv, rng *rand.Rand, n int)
	// finish runs after the last episode, before the publisher stops.
	finish func(d *dataEnv)
	gap    [2]time.Duration
	// rollback: Redis loses acknowledged events and hands their seqs out
	// again; every subscriber must report every one of them (RolledBack),
	// also one it had handled.
	rollback bool
	// lossy: reports are expected (rollback, eviction); without it any
	// report is false.
	lossy bool
}

// TestChaosData runs the data faults: failover to a lagging replica,
// maxmemory (allkeys-lru and noeviction), a host crash with appendfsync
// everysec, and epoch churn; see checkData for what is counted and judged.
func TestChaosData(t *testing.T) {
	d := faultDuration()
	var runs []*runReport
	for _, s := range dataScenarios {
		t.Run(s.name, func(t *testing.T) {
			r := runData(t, s, d)
			t.Logf("\n%s", r.table())
			runs = append(runs, r)
		})
	}
	sum := summary(runs)
	fmt.Printf("chaos (data faults): %d runs, each fault for %v\n%s", len(runs), d, sum)
	if *chaosOut != "" {
		f, err := os.OpenFile(*chaosOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.WriteString("\n" + sum)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			t.Error(err)
		}
	}
}

func runData(t *testing.T, s dataScenario, dur time.Duration) *runReport {
	began := time.Now()
	d := s.world(t)
	d.startSub(subPlain)
	d.startSub(subPattern)
	d.startChild(subDurable)
	d.startChild(subOffline)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); d.sampleHeap(ctx) }()
	go d.kids[subDurable].follow(ctx, &bg)
	go d.kids[subOffline].follow(ctx, &bg)

	pubCtx, stopPub := context.WithCancel(ctx)
	var pw sync.WaitGroup
	pw.Add(1)
	go d.publish(pubCtx, d.newPublisher(), &pw)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	d.waitReady()
	d.waitAcked(0, 20)
	faults := 0
	deadline := time.Now().Add(dur)
	for faults == 0 || time.Now().Before(deadline) {
		d.waitReady()
		s.episode(d, rng, faults)
		faults++
		d.healed(ctx, &bg)
		time.Sleep(between(rng, s.gap))
	}
	if s.finish != nil {
		s.finish(d)
	}
	if c := d.kids[subOffline]; !c.running() {
		c.start()
	}
	d.hold.Store(false)
	d.waitAcked(d.pubKeys.Load(), 20) // every subscriber has something after the last fault to reach
	stopPub()
	pw.Wait()

	// The log is final now (nobody publishes). Wait, generously, until
	// every subscriber has handled everything it holds and has handled or
	// been told of every acknowledged event that is gone: at most 90 s,
	// and no longer than 30 s after the last handler call or report.
	final := d.readFinal()
	var facts *dataFacts
	waitStart := time.Now()
	lastMove, lastCount := waitStart, -1
	for {
		for _, c := range d.kids {
			c.tail()
		}
		facts = d.facts(final)
		pending := ""
		for _, sub := range dataSubs {
			if v := checkData(facts, sub, s, false); !v.done {
				pending += fmt.Sprintf(" %s: %d to handle or report (%s);", sub, v.lost+v.unreported, strings.Join(v.lostSamples, ", "))
			}
		}
		if pending == "" {
			break
		}
		if n := d.rec.count(); n != lastCount {
			lastMove, lastCount = time.Now(), n
		}
		if time.Since(waitStart) > 90*time.Second || time.Since(lastMove) > 30*time.Second {
			t.Errorf("not caught up (%v after the publisher stopped, %v since a subscriber last handled an event or reported a loss):%s",
				time.Since(waitStart).Round(time.Second), time.Since(lastMove).Round(time.Second), pending)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let late duplicates show
	stop()
	bg.Wait()
	for _, c := range d.kids {
		c.tail()
	}
	facts = d.facts(final)

	r := &runReport{scenario: s.name, duration: time.Since(began), faults: faults,
		published: int(d.acked.Load()), failed: int(d.failed.Load()), logDups: final.dupK}
	handled := map[int64]bool{}
	for _, dels := range facts.dels {
		for _, dl := range dels {
			handled[dl.k] = true
		}
	}
	for k, p := range facts.pubs {
		if _, logged := final.byK[k]; !p.ok && (logged || handled[k]) {
			r.written++
		}
	}
	for _, sub := range dataSubs {
		dv := checkData(facts, sub, s, true)
		v := dv.verdict
		d.recMu.Lock()
		v.recovery = d.rec2[sub]
		d.recMu.Unlock()
		if c := d.kids[sub]; c != nil {
			v.reconnects, v.peakMem, v.memKind = c.reconnects, c.hwm, "VmHWM"
		} else {
			for _, in := range d.inproc {
				if in.name == sub {
					v.reconnects = in.reconnects()
				}
			}
			v.peakMem, v.memKind = d.heapMax.Load(), "heap"
		}
		r.rows = append(r.rows, v)
		r.notes = append(r.notes, dv.notes...)
		judgeData(t, s, dv)
	}
	if final.dupK > 0 {
		t.Errorf("%d events written twice to the log", final.dupK)
	}
	r.notes = append(r.notes, d.notes(final)...)
	r.notes = append(r.notes, "seed "+strconv.FormatUint(seed, 10))
	return r
}

// notes describes the run: the faults, the markers in the logs, the
// publisher's warnings, errors and lost leases.
func (d *dataEnv) notes(final *dataLog) []string {
	var out []string
	if len(d.faults) > 0 {
		out = append(out, "faults: "+strings.Join(d.faults, "; "))
	}
	if len(final.markers) > 0 {
		out = append(out, fmt.Sprintf("rollback markers in the logs: %s", strings.Join(final.markers, ", ")))
	}
	if n, lines := d.pubLog.summary(); n > 0 {
		out = append(out, fmt.Sprintf("publisher warnings: %d, e.g. %s", n, strings.Join(lines, " | ")))
	}
	d.rec.mu.Lock()
	for _, sub := range dataSubs {
		if n := d.rec.errs[sub]; n > 0 {
			out = append(out, fmt.Sprintf("%s errors: %d, e.g. %s", sub, n, strings.Join(d.rec.samples[sub], " | ")))
		}
	}
	d.rec.mu.Unlock()
	for _, name := range []string{subDurable, subOffline} {
		c := d.kids[name]
		c.tailMu.Lock()
		if c.terms > 0 {
			out = append(out, fmt.Sprintf("%s: lost its lease %d times", name, c.terms))
		}
		c.tailMu.Unlock()
		out = append(out, fmt.Sprintf("%s: %d incarnations", name, c.incarnation()))
	}
	return out
}

// dataLog is the topics' logs at the end of a run.
type dataLog struct {
	byK     map[int64]dataEntry
	dupK    int
	markers []string
	epochs  map[string]string // topic -> epoch of its meta hash
}

type dataEntry struct {
	topic string
	seq   uint64
	id    string
}

func (d *dataEnv) readFinal() *dataLog { return readDataLog(d.t, d.admin, topics) }

// readDataLog reads the logs of tps (their entries by publish key, their
// rollback markers and their epochs) through rdb, a client or a cluster
// client.
func readDataLog(t *testing.T, rdb redis.Cmdable, tps []string) *dataLog {
	ctx := context.Background()
	out := &dataLog{byK: map[int64]dataEntry{}, epochs: map[string]string{}}
	for _, tp := range tps {
		epoch, err := rdb.HGet(ctx, "durabus:{"+tp+"}:meta", "epoch").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("read the epoch of %s: %v", tp, err)
		}
		out.epochs[tp] = epoch
		key := "durabus:{" + tp + "}:log"
		after := "-"
		for {
			page, err := rdb.XRangeN(ctx, key, after, "+", 5000).Result()
			if err != nil {
				t.Fatalf("read %s: %v", key, err)
			}
			for _, m := range page {
				seq, _ := strconv.ParseUint(fmt.Sprint(m.Values["seq"]), 10, 64)
				if rb, ok := m.Values["rb"]; ok {
					out.markers = append(out.markers, fmt.Sprintf("%s %v (at seq %d)", tp, rb, seq))
					continue
				}
				var env struct {
					Data Event `json:"data"`
				}
				if err := json.Unmarshal([]byte(fmt.Sprint(m.Values["e"])), &env); err != nil {
					t.Errorf("%s entry %s: not an envelope: %v", key, m.ID, err)
					continue
				}
				if _, dup := out.byK[env.Data.K]; dup {
					out.dupK++
				}
				out.byK[env.Data.K] = dataEntry{topic: tp, seq: seq, id: m.ID}
			}
			if len(page) < 5000 {
				break
			}
			after = "(" + page[len(page)-1].ID
		}
	}
	return out
}

// dataFacts is what the checker knows after a run, and what it derived.
//
// Lineages: a topic's seqs count in one log. When only its meta hash is
// remade (churn, eviction of the meta hash) the epoch changes and the
// seqs go on: the epochs are one lineage. When the log and the meta hash
// are both gone, a new epoch starts again at seq 1: a new lineage, whose
// seqs name other events. Epochs are joined into lineages by what is
// known: an event handled under another epoch than it was acknowledged in,
// at the same stream id (one log: an entry keeps its id and seq under a
// new epoch; at another id it was written twice), an event still in the
// final log (its epoch and the final one are one log), and, where logs
// may be reset (d.resets), an epoch whose first acknowledged seq follows
// the lineage's highest, unless the two hold other events at one seq (a
// new log whose first events' publish replies were lost: seq 1 is not
// acknowledged there, but it is handled or still in the log).
type dataFacts struct {
	pubs   map[int64]pubRecord
	dels   map[string][]dataDel
	losses map[string][]dataLoss
	log    *dataLog

	// amnesia: the subscriber's consumer record and its checkpoint hash
	// were both evicted while its process was stopped; it then started
	// again as a new consumer and cannot know what it missed (nothing in
	// Redis says it existed). A running consumer has its cursors: no
	// amnesia.
	amnesia map[string]bool

	parent map[string]string // union-find over "topic/epoch"
	rank   map[string]int64  // lineage root -> order (the place of its earliest epoch among the topic's)
	seqs   map[string]map[uint64]*seqState

	members map[string][]string // lineage root -> its epochs, described (for lost-event samples)
}

// seqState is what became of the events known at one seq of one lineage.
type seqState struct{ gone, present bool }

func (d *dataEnv) facts(final *dataLog) *dataFacts {
	f := &dataFacts{pubs: map[int64]pubRecord{}, dels: map[string][]dataDel{}, losses: map[string][]dataLoss{},
		log: final, parent: map[string]string{}, rank: map[string]int64{}, seqs: map[string]map[uint64]*seqState{},
		amnesia: map[string]bool{}}
	d.evictMu.Lock()
	for sub, a := range d.amnesia {
		f.amnesia[sub] = a
	}
	d.evictMu.Unlock()
	d.h.mu.Lock()
	for k, p := range d.h.pubs {
		f.pubs[k] = *p
	}
	d.h.mu.Unlock()
	d.rec.mu.Lock()
	for sub, dels := range d.rec.dels {
		f.dels[sub] = append([]dataDel(nil), dels...)
	}
	for sub, ls := range d.rec.losses {
		f.losses[sub] = append([]dataLoss(nil), ls...)
	}
	d.rec.mu.Unlock()

	// Epochs, and how they join.
	type epochStat struct {
		topic, epoch   string
		minK           int64
		minID          string // the earliest stream id acknowledged in it
		minSeq, maxSeq uint64
		order          int64 // its place among the topic's epochs
	}
	stats := map[string]*epochStat{}
	note := func(topic, epoch string, k int64, seq uint64, id string) {
		key := topic + "/" + epoch
		f.find(key)
		if k < 0 {
			return
		}
		s := stats[key]
		if s == nil {
			s = &epochStat{topic: topic, epoch: epoch, minK: k, minID: id, minSeq: seq, maxSeq: seq}
			stats[key] = s
		}
		s.minK, s.minSeq, s.maxSeq = min(s.minK, k), min(s.minSeq, seq), max(s.maxSeq, seq)
		if s.minID == "" || id != "" && transport.IDAfter(s.minID, id) {
			s.minID = id
		}
	}
	for k, p := range f.pubs {
		if p.ok {
			note(p.topic, p.epoch, k, p.seq, p.id)
		}
	}
	for tp, epoch := range final.epochs {
		if epoch != "" {
			note(tp, epoch, -1, 0, "")
		}
	}
	for _, dels := range f.dels {
		for _, dl := range dels {
			note(dl.topic, dl.epoch, -1, 0, "")
			if p, ok := f.pubs[dl.k]; ok && p.ok && p.epoch != dl.epoch && sameEntry(p.id, dl.id) {
				f.union(dl.topic+"/"+p.epoch, dl.topic+"/"+dl.epoch)
			}
		}
	}
	for _, ls := range f.losses {
		for _, l := range ls {
			if l.Epoch != "" {
				note(l.Topic, l.Epoch, -1, 0, "")
			}
		}
	}
	for k, p := range f.pubs {
		if le, ok := final.byK[k]; ok && p.ok && final.epochs[le.topic] != "" && final.epochs[le.topic] != p.epoch && sameEntry(p.id, le.id) {
			f.union(le.topic+"/"+p.epoch, le.topic+"/"+final.epochs[le.topic])
		}
	}
	// Which event each known seq of each lineage holds (acknowledged,
	// handled or in the final log, under the epoch it was told in): two
	// epochs holding other events at one seq are two logs, whatever their
	// seqs suggest (see below).
	held := map[string]map[uint64]int64{}
	if d.resets {
		f.eachKnown(func(topic, epoch string, seq uint64, k int64) {
			root := f.lineage(topic, epoch)
			if held[root] == nil {
				held[root] = map[uint64]int64{}
			}
			held[root][seq] = k
		})
	}
	// join joins the lineages of two epochs unless they hold other events
	// at one seq.
	join := func(a, b string) bool {
		ra, rb := f.find(a), f.find(b)
		if ra == rb {
			return true
		}
		for seq, k := range held[rb] {
			if o, ok := held[ra][seq]; ok && o != k {
				return false
			}
		}
		f.union(a, b) // ra stays the root
		if held[ra] == nil {
			held[ra] = map[uint64]int64{}
		}
		maps.Copy(held[ra], held[rb])
		delete(held, rb)
		return true
	}
	byTopic := map[string][]*epochStat{}
	for _, s := range stats {
		byTopic[s.topic] = append(byTopic[s.topic], s)
	}
	for _, list := range byTopic {
		// In the order the logs were written, by Redis's clock: the first
		// stream id acknowledged in each epoch (a log made anew has later
		// ids than the one it replaces, on one server). The order of
		// publish keys can disagree: a batch keyed before a single
		// publish may be written after it, in the next log.
		sort.Slice(list, func(i, j int) bool {
			a, b := list[i], list[j]
			if a.minID != "" && b.minID != "" && a.minID != b.minID {
				return transport.IDAfter(b.minID, a.minID)
			}
			return a.minK < b.minK
		})
		var prev *epochStat
		var high uint64
		for i, s := range list {
			s.order = int64(i)
			// Without resets every epoch of a topic is one lineage (joined
			// below); with them, the seq rule.
			if prev != nil && d.resets && s.minSeq > high && join(prev.topic+"/"+prev.epoch, s.topic+"/"+s.epoch) {
				high = max(high, s.maxSeq)
			} else {
				high = s.maxSeq
			}
			prev = s
		}
	}
	if !d.resets {
		first := map[string]string{}
		for key := range f.parent {
			tp, _, _ := strings.Cut(key, "/")
			if r, ok := first[tp]; ok {
				f.union(r, key)
			} else {
				first[tp] = key
			}
		}
	}
	f.members = map[string][]string{}
	for key, s := range stats {
		root := f.find(key)
		if r, ok := f.rank[root]; !ok || s.order < r {
			f.rank[root] = s.order
		}
		f.members[root] = append(f.members[root], fmt.Sprintf("%s: seq %d..%d, first id %s, first k %d", short(s.epoch), s.minSeq, s.maxSeq, s.minID, s.minK))
	}
	for _, m := range f.members {
		sort.Strings(m)
	}

	// What became of each known seq.
	mark := func(topic, epoch string, seq uint64, k int64) {
		lin := f.lineage(topic, epoch)
		m := f.seqs[lin]
		if m == nil {
			m = map[uint64]*seqState{}
			f.seqs[lin] = m
		}
		st := m[seq]
		if st == nil {
			st = &seqState{}
			m[seq] = st
		}
		if _, ok := final.byK[k]; ok {
			st.present = true
		} else {
			st.gone = true
		}
	}
	f.eachKnown(mark)

	// Where each open-ended report that names the next epoch ends: before
	// the first event its subscriber handled on the topic after it (in the
	// same process), when that event goes on in the report's lineage.
	for sub, ls := range f.losses {
		dels := f.dels[sub] // in the order of the records
		for i := range ls {
			l := &ls[i]
			if l.To != 0 || l.Next == "" {
				continue
			}
			j := sort.Search(len(dels), func(j int) bool { return dels[j].at > l.at })
			for ; j < len(dels); j++ {
				dl := dels[j]
				if dl.inc != l.inc || dl.topic != l.Topic {
					continue
				}
				if dl.seq > l.From && f.lineage(dl.topic, dl.epoch) == f.lineage(l.Topic, l.Epoch) {
					l.upTo = dl.seq - 1
				}
				break
			}
		}
	}
	return f
}

// eachKnown calls fn for every event known at a seq of an epoch: each
// acknowledged one, each handled one (under the epoch it was handed over
// in), and each in the final log (under the topic's epoch then).
func (f *dataFacts) eachKnown(fn func(topic, epoch string, seq uint64, k int64)) {
	for k, p := range f.pubs {
		if p.ok {
			fn(p.topic, p.epoch, p.seq, k)
		}
	}
	for _, dels := range f.dels {
		for _, dl := range dels {
			fn(dl.topic, dl.epoch, dl.seq, dl.k)
		}
	}
	for k, le := range f.log.byK {
		if epoch := f.log.epochs[le.topic]; epoch != "" {
			fn(le.topic, epoch, le.seq, k)
		}
	}
}

// sameEntry reports whether two stream ids, either unknown (empty), may
// name one log entry.
func sameEntry(a, b string) bool { return a == "" || b == "" || a == b }

func (f *dataFacts) find(x string) string {
	p, ok := f.parent[x]
	if !ok {
		f.parent[x] = x
		return x
	}
	if p == x {
		return x
	}
	r := f.find(p)
	f.parent[x] = r
	return r
}

func (f *dataFacts) union(a, b string) {
	ra, rb := f.find(a), f.find(b)
	if ra != rb {
		f.parent[rb] = ra
	}
}

// lineage names the lineage of a topic's epoch.
func (f *dataFacts) lineage(topic, epoch string) string { return f.find(topic + "/" + epoch) }

// order is a lineage's place in time (lower is earlier).
func (f *dataFacts) order(lin string) int64 {
	if r, ok := f.rank[lin]; ok {
		return r
	}
	return 1 << 62
}

// inRange reports whether seq is in loss l's range. An open-ended report
// (To 0) that names the next epoch runs up to the first event of the log
// the subscriber went on with (replay.LossError): when that event goes on
// in the report's lineage (the next epoch was made over the old log before
// that log vanished), the range ends before its seq (upTo); otherwise it
// is open.
func (l dataLoss) inRange(seq uint64) bool {
	to := l.To
	if to == 0 {
		to = l.upTo
	}
	return seq >= l.From && (to == 0 || seq <= to)
}

// covered reports whether one of the losses names the event at seq of
// lineage lin of topic: its range holds it (inRange), or it is a
// report with no range (CheckpointLost: what the consumer had not handled
// cannot be told; it stands for every gone event of the topic), or it is
// an EpochChanged report whose span, from its epoch to the next one it
// names, holds lin's place in time (a log that came and went unseen).
func (f *dataFacts) covered(ls []dataLoss, topic, lin string, seq uint64) bool {
	for _, l := range ls {
		if l.Topic != topic {
			continue
		}
		if l.From == 0 && l.To == 0 {
			return true
		}
		from := f.lineage(topic, l.Epoch)
		if from == lin && l.inRange(seq) {
			return true
		}
		if l.Reason == replay.EpochChanged && l.Next != "" {
			if o := f.order(lin); f.order(from) < o && o < f.order(f.lineage(topic, l.Next)) {
				return true
			}
		}
	}
	return false
}

// around describes, for a lost-event sample, what sub was told and handed
// on topic near the lineage of rank r: its reports (with their lineages'
// ranks) and the ranks of the lineages it handled.
func (f *dataFacts) around(sub, topic string, r int64) string {
	type ev struct {
		at   int64
		text string
	}
	var evs []ev
	for _, l := range f.losses[sub] {
		if l.Topic != topic {
			continue
		}
		from := f.order(f.lineage(topic, l.Epoch))
		next := int64(-1)
		if l.Next != "" {
			next = f.order(f.lineage(topic, l.Next))
		}
		if from >= r-3 && from <= r+3 || next >= 0 && from <= r && next >= r {
			evs = append(evs, ev{l.at, fmt.Sprintf("L%d %s r%d(%s) %d..%d next r%d(%s)", l.inc, l.Reason, from, short(l.Epoch), l.From, l.To, next, short(l.Next))})
		}
	}
	for _, dl := range f.dels[sub] {
		if dl.topic == topic {
			if o := f.order(f.lineage(topic, dl.epoch)); o >= r-3 && o <= r+3 {
				evs = append(evs, ev{dl.at, fmt.Sprintf("D%d r%d(%s)/%d", dl.inc, o, short(dl.epoch), dl.seq)})
			}
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	var out []string
	for _, e := range evs {
		out = append(out, e.text)
	}
	return strings.Join(out, ", ")
}

// dataVerdict is checkData's count for one subscriber.
type dataVerdict struct {
	verdict
	unreported int  // acknowledged, gone from Redis, handled, never reported (rollback scenarios)
	forgotten  int  // acknowledged, gone, neither handled nor reported, after amnesia
	invalid    int  // reported seqs whose events are all still in the log
	done       bool // nothing left to handle or report
	notes      []string
}

// checkData counts, for one subscriber:
//
//   - lost: an event still in the final log that it never handled, or an
//     acknowledged event gone from Redis that it neither handled nor was
//     told of (no loss report names its seq);
//     A subscriber with amnesia (its consumer record and checkpoints both
//     evicted) cannot know what it missed: its unreported gone events are
//     counted apart (forgotten), in the notes;
//   - unreported (rollback scenarios): an acknowledged event gone from
//     Redis that it handled but was never told of: Redis lost it, and
//     every subscriber must say so;
//   - invalid: a seq named by a report at which every known event is still
//     in the log (a false report);
//   - duplicated: handler calls beyond the first for one event (payload
//     key); dupInRun: the same log entry (topic, stream id and event: a
//     log made anew can hand out a stream id of the one it replaces, in
//     the same millisecond, to another event) handed over twice within
//     one process;
//   - reordered: within one process and topic, a seq at or below the last
//     one handled in the same lineage that no report of a rollback
//     explains, or an older lineage after a newer one;
//   - unexpected: a handled event that was never published, or at another
//     position than acknowledged.
//
// The reported ranges are exact (lossExact) when no reported seq is
// invalid and nothing is unreported.
func checkData(f *dataFacts, sub string, s dataScenario, full bool) dataVerdict {
	v := dataVerdict{verdict: verdict{sub: sub, lossExact: true}}
	dels := f.dels[sub]
	ls := f.losses[sub]
	v.delivered = len(dels)
	seenK := map[int64]int{}
	type incTopic struct {
		inc   int
		topic string
	}
	type last struct {
		lin string
		seq uint64
	}
	lastAt := map[incTopic]last{}
	type entry struct {
		id string
		k  int64
	}
	seenID := map[incTopic]map[entry]bool{}
	for _, dl := range dels {
		p, known := f.pubs[dl.k]
		le, logged := f.log.byK[dl.k]
		lin := f.lineage(dl.topic, dl.epoch)
		switch {
		case !known || p.topic != dl.topic:
			v.unexpected++
		case p.ok && (p.seq != dl.seq || f.lineage(p.topic, p.epoch) != lin):
			v.unexpected++
		case !p.ok && logged && le.seq != dl.seq:
			v.unexpected++
		}
		seenK[dl.k]++
		if seenK[dl.k] > 1 {
			v.duplicated++
		}
		key := incTopic{dl.inc, dl.topic}
		if seenID[key] == nil {
			seenID[key] = map[entry]bool{}
		}
		if e := (entry{dl.id, dl.k}); seenID[key][e] {
			v.dupInRun++
			if v.dupInRun <= 3 {
				v.notes = append(v.notes, fmt.Sprintf("%s: %s seq %d (%s, stream id %s) handled twice in incarnation %d, the second time at record %d",
					sub, dl.topic, dl.seq, dl.epoch, dl.id, dl.inc, dl.at))
			}
			continue
		} else {
			seenID[key][e] = true
		}
		if prev, ok := lastAt[key]; ok {
			switch {
			case prev.lin != lin && f.order(lin) < f.order(prev.lin):
				v.reordered++
			case prev.lin == lin && dl.seq <= prev.seq && !f.coveredRollback(ls, dl.topic, lin, dl.seq):
				v.reordered++
			}
		}
		lastAt[key] = last{lin: lin, seq: dl.seq}
	}

	// What it must have: everything still in the log, and every
	// acknowledged event, handled or reported.
	got := map[int64]bool{}
	for k := range seenK {
		got[k] = true
	}
	sample := func(format string, args ...any) {
		if len(v.lostSamples) < 5 {
			v.lostSamples = append(v.lostSamples, fmt.Sprintf(format, args...))
		}
	}
	for k, le := range f.log.byK {
		if !got[k] {
			v.lost++
			sample("%s seq %d (k %d, in the log)", le.topic, le.seq, k)
		}
	}
	for k, p := range f.pubs {
		if _, present := f.log.byK[k]; present || !p.ok {
			continue
		}
		cov := f.covered(ls, p.topic, f.lineage(p.topic, p.epoch), p.seq)
		switch {
		case !got[k] && !cov && f.amnesia[sub]:
			v.forgotten++
		case !got[k] && !cov:
			v.lost++
			lin := f.lineage(p.topic, p.epoch)
			sample("%s seq %d (k %d, epoch %s, gone, unreported; lineage rank %d of epochs [%s]; %s)", p.topic, p.seq, k, short(p.epoch),
				f.order(lin), strings.Join(f.members[lin], "; "), f.around(sub, p.topic, f.order(lin)))
		case got[k] && !cov && s.rollback:
			v.unreported++
			sample("%s seq %d (k %d, handled, gone, unreported)", p.topic, p.seq, k)
		}
	}

	// Every report against what became of its seqs.
	reasons := map[replay.LossReason]int{}
	var ranges []string
	for _, l := range ls {
		v.losses++
		v.lossEvents += l.Count()
		reasons[l.Reason]++
		if len(ranges) < 8 {
			ranges = append(ranges, fmt.Sprintf("%s %d..%d", strings.TrimPrefix(l.Topic, "chaos."), l.From, l.To))
		}
		if !full || l.From == 0 && l.To == 0 {
			continue
		}
		lin := f.lineage(l.Topic, l.Epoch)
		for seq, st := range f.seqs[lin] {
			if l.inRange(seq) && st.present && !st.gone {
				v.invalid++
				if v.invalid <= 3 {
					v.notes = append(v.notes, fmt.Sprintf("%s: %s reported %s seq %d..%d (%s, next %s), but seq %d is still in the log",
						sub, l.Reason, l.Topic, l.From, l.To, l.Epoch, l.Next, seq))
				}
			}
		}
	}
	if v.invalid > 0 || v.unreported > 0 {
		v.lossExact = false
	}
	v.done = v.lost == 0 && v.unreported == 0
	if len(ls) > 0 {
		var rs []string
		for r, n := range reasons {
			rs = append(rs, fmt.Sprintf("%s ×%d", r, n))
		}
		sort.Strings(rs)
		v.notes = append(v.notes, fmt.Sprintf("%s reports: %s; ranges %s", sub, strings.Join(rs, ", "), strings.Join(ranges, ", ")))
	}
	if v.unreported > 0 {
		v.notes = append(v.notes, fmt.Sprintf("%s: %d acknowledged events gone from Redis were handled but never reported", sub, v.unreported))
	}
	if f.amnesia[sub] {
		v.notes = append(v.notes, fmt.Sprintf("%s: its consumer record and checkpoints were both evicted while it was stopped, so it started again as a new consumer: "+
			"%d acknowledged events gone from Redis were neither handled nor reported (undetectable: nothing in Redis says it existed; not counted as lost)",
			sub, v.forgotten))
	}
	return v
}

// coveredRollback reports whether a report of a rollback (or an unknown
// range) names seq: the event handled there replaces one that is gone.
func (f *dataFacts) coveredRollback(ls []dataLoss, topic, lin string, seq uint64) bool {
	for _, l := range ls {
		if l.Reason == replay.RolledBack || l.From == 0 && l.To == 0 {
			if f.covered([]dataLoss{l}, topic, lin, seq) {
				return true
			}
		}
	}
	return false
}

// judgeData applies the pass criteria to one subscriber.
func judgeData(t *testing.T, s dataScenario, v dataVerdict) {
	t.Helper()
	if v.lost != 0 {
		t.Errorf("%s: %d events lost and not reported, e.g. %v", v.sub, v.lost, v.lostSamples)
	}
	if v.unreported != 0 {
		t.Errorf("%s: %d acknowledged events lost by Redis were never reported, e.g. %v", v.sub, v.unreported, v.lostSamples)
	}
	if v.invalid != 0 {
		t.Errorf("%s: %d reported seqs whose events are still in the log", v.sub, v.invalid)
	}
	if !s.lossy && v.losses != 0 {
		t.Errorf("%s: %d loss reports where nothing is lost", v.sub, v.losses)
	}
	if v.unexpected != 0 {
		t.Errorf("%s: %d unexpected deliveries", v.sub, v.unexpected)
	}
	if v.reordered != 0 {
		t.Errorf("%s: %d deliveries out of order", v.sub, v.reordered)
	}
	if v.dupInRun != 0 {
		t.Errorf("%s: %d log entries handled twice within one process", v.sub, v.dupInRun)
	}
}

// The scenarios. For each, the comment says which reports are expected
// and what range each must name.
var dataScenarios = []dataScenario{
	failoverScenario,
	lruScenario,
	noevictionScenario,
	crashScenario,
	churnScenario,
}

// failoverWorld is a master, its replica and one sentinel.
type failoverWorld struct {
	master, replica *redistest.Server
	sentinels       *redistest.Sentinels
}

// failoverScenario: the replica's link is paused (it lags with its link
// up), the publisher goes on until every topic has 20 more acknowledged
// events, the master is SIGKILLed and the sentinel promotes the replica.
// The offline consumer is stopped before the pause and started after the
// failover.
//
// Expected: the acknowledged events the replica lacked are gone, and their
// seqs are handed out again. Every subscriber reports them as RolledBack:
// the live ones seeing a newer stream id at an old seq (or a head below
// their cursor), with the range from the first reused seq to the last seq
// they had handled; the offline one, and any live one for the part it had
// not handled, through the publisher's marker, with the range from the
// first reused seq to the highest seq the publisher saw acknowledged. The
// union of a subscriber's reports must cover every acknowledged event
// that is gone, and name no seq whose events are all still in the log.
// Every event published after the failover is delivered.
//
// The lease is the default 10 s: longer than a failover, so that the
// running durable consumer keeps it (a lease that lapses during the
// failover starts a new term, which replays from the last checkpoint).
var failoverScenario = dataScenario{
	name: "sentinel-failover", rollback: true, lossy: true,
	gap: [2]time.Duration{500 * time.Millisecond, time.Second},
	world: func(t *testing.T) *dataEnv {
		master := redistest.Start(t, redistest.WithAOF())
		replica := redistest.StartReplica(t, master)
		sentinels := redistest.StartSentinels(t, master, 1)
		d := newDataEnv(t, dataConn{Sentinels: sentinels.Addrs()}, master)
		d.fo = &failoverWorld{master: master, replica: replica, sentinels: sentinels}
		return d
	},
	episode: func(d *dataEnv, _ *rand.Rand, _ int) {
		w := d.fo
		if w.replica == nil {
			// The last failover used up the replica: start another one of
			// the new master, and wait until the sentinel knows it.
			w.replica = redistest.StartReplica(d.t, w.master)
			waitSentinelKnows(d.t, w.sentinels, w.replica.Addr())
		}
		d.kids[subOffline].stop(syscall.SIGTERM)
		w.replica.PauseReplication(d.t)
		k := d.pubKeys.Load()
		d.waitAcked(k, 20)
		from := w.master.Addr()
		w.master.Kill(d.t)
		began := time.Now()
		to := w.sentinels.WaitFailover(d.t, from)
		if to != w.replica.Addr() {
			d.t.Fatalf("failover to %s, want the replica %s", to, w.replica.Addr())
		}
		d.faults = append(d.faults, fmt.Sprintf("failover %s -> %s in %v", from, to, time.Since(began).Round(100*time.Millisecond)))
		w.master, w.replica = w.replica, nil
		d.kids[subOffline].start()
	},
}

// waitSentinelKnows waits until the sentinel lists addr as a replica with
// its link up.
func waitSentinelKnows(t *testing.T, g *redistest.Sentinels, addr string) {
	t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: g.Addrs()[0]})
	defer sc.Close()
	waitFor(t, "the sentinel to know replica "+addr, func() (bool, string) {
		list, err := sc.Replicas(context.Background(), g.MasterName()).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, r := range list {
			if r["ip"]+":"+r["port"] == addr && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("replicas %v", list)
	})
}

// memory reads INFO memory: used_memory and used_memory_dataset.
func memory(t *testing.T, rdb *redis.Client) (used, dataset int64) {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatalf("INFO memory: %v", err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			used, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "used_memory_dataset:"); ok {
			dataset, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if used == 0 {
		t.Fatalf("INFO memory has no used_memory")
	}
	return used, dataset
}

// trackEvictions records every key Redis evicts, by kind, through
// keyspace notifications (notify-keyspace-events Ee).
func (d *dataEnv) trackEvictions() {
	ctx := context.Background()
	if err := d.admin.ConfigSet(ctx, "notify-keyspace-events", "Ee").Err(); err != nil {
		d.t.Fatalf("CONFIG SET notify-keyspace-events: %v", err)
	}
	rdb := d.conn.client()
	ps := rdb.Subscribe(ctx, "__keyevent@0__:evicted")
	if _, err := ps.Receive(ctx); err != nil {
		d.t.Fatalf("SUBSCRIBE to evictions: %v", err)
	}
	d.evicted = map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ps.Channel(redis.WithChannelSize(1 << 16)) {
			d.evictMu.Lock()
			if strings.HasPrefix(m.Payload, evictSync) {
				d.evictSeen = m.Payload
			} else {
				d.evicted[evictedKind(m.Payload)]++
			}
			d.evictMu.Unlock()
		}
	}()
	d.t.Cleanup(func() { ps.Close(); <-done; rdb.Close() })
}

// evictedKind names what an evicted key was.
func evictedKind(key string) string {
	for sub, c := range dataConsumers {
		switch key {
		case "durabus:consumer:" + c:
			return "checkpoints of " + sub
		case "durabus:owner:{durabus:consumer:" + c + "}":
			return "record of " + sub
		}
	}
	switch {
	case key == "durabus:topics":
		return "topic index"
	case strings.HasSuffix(key, ":log"):
		return "log"
	case strings.HasSuffix(key, ":meta"):
		return "meta"
	case strings.Contains(key, ":idem:"):
		return "idempotency"
	}
	return "other"
}

// evictSync prefixes the tokens evictions publishes on the evicted-keys
// channel: once the tracker has seen one, it has seen every eviction
// notified before it.
const evictSync = "chaos:sync:"

// evictions returns the counts of the keys evicted so far.
func (d *dataEnv) evictions() map[string]int {
	token := evictSync + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := d.admin.Publish(context.Background(), "__keyevent@0__:evicted", token).Err(); err != nil {
		d.t.Fatalf("PUBLISH to the evicted-keys channel: %v", err)
	}
	waitFor(d.t, "the eviction tracker to catch up", func() (bool, string) {
		d.evictMu.Lock()
		defer d.evictMu.Unlock()
		return d.evictSeen == token, "last token seen " + d.evictSeen
	})
	d.evictMu.Lock()
	defer d.evictMu.Unlock()
	out := map[string]int{}
	for k, n := range d.evicted {
		out[k] = n
	}
	return out
}

// lruScenario: maxmemory is set below the memory in use with allkeys-lru,
// for 1-2 s while the publisher goes on, so that Redis evicts whatever it
// samples: idempotency keys, logs, meta hashes, checkpoint hashes and
// consumer records. Every other episode the offline consumer is away
// during it.
//
// Expected reports, each with the best range Redis leaves: a log evicted
// while its meta hash stays is Trimmed (exact: the cursor + 1 to the seq
// before the first entry of the new log); a log and its meta hash both
// evicted is EpochChanged from the cursor + 1, open-ended (To 0), naming
// the next epoch followed: it stands for the rest of the old log and for
// every log that came and went unseen before the next one, up to the
// first event of the log followed (when that event goes on in the old
// log's seqs, because the next epoch was made over the old log before it
// vanished, the range ends before its seq); an evicted
// checkpoint hash whose record survived is CheckpointLost with no range
// (it stands for every event of the topic that is gone). A log that
// vanished is reported at the next head check or read, without waiting for
// the topic's next event (Trimmed to the meta seq when the meta hash
// stayed; else EpochChanged to the highest seq the subscriber knew of). A
// new log is told from the old one going on by its lineage record. A meta
// hash evicted alone is not a loss. An event still in the log is never
// reported.
var lruScenario = dataScenario{
	name: "maxmemory-allkeys-lru", lossy: true,
	gap: [2]time.Duration{300 * time.Millisecond, time.Second},
	world: func(t *testing.T) *dataEnv {
		srv := redistest.Start(t)
		d := newDataEnv(t, dataConn{Addr: srv.Addr()}, srv)
		d.lease = 2 * time.Second
		d.resets = true
		d.trackEvictions()
		return d
	},
	episode: func(d *dataEnv, rng *rand.Rand, n int) {
		away := n%2 == 0
		if away {
			d.kids[subOffline].stop(syscall.SIGTERM)
			d.waitAcked(d.pubKeys.Load(), 20)
		}
		used, dataset := memory(d.t, d.admin)
		limit := used - dataset/2
		before := d.evictions()
		if away {
			defer func() {
				ev := d.evictions()
				gone := func(kind string) bool { return ev[kind] > before[kind] }
				if gone("record of "+subOffline) && gone("checkpoints of "+subOffline) {
					d.evictMu.Lock()
					if d.amnesia == nil {
						d.amnesia = map[string]bool{}
					}
					d.amnesia[subOffline] = true
					d.evictMu.Unlock()
				}
				d.kids[subOffline].start()
			}()
		}
		failed := d.failed.Load()
		d.srv.SetMaxMemory(d.t, limit, "allkeys-lru")
		time.Sleep(between(rng, [2]time.Duration{time.Second, 2 * time.Second}))
		d.srv.SetMaxMemory(d.t, 0, "allkeys-lru")
		var ev []string
		for kind, n := range d.evictions() {
			if n > before[kind] {
				ev = append(ev, fmt.Sprintf("%s %d", kind, n-before[kind]))
			}
		}
		sort.Strings(ev)
		d.faults = append(d.faults, fmt.Sprintf("maxmemory %d KiB (used %d, dataset %d; offline away %v): evicted %s; %d publishes refused",
			limit>>10, used>>10, dataset>>10, away, strings.Join(ev, ", "), d.failed.Load()-failed))
	},
}

// fillPrefix names the keys FillMemory writes.
const fillPrefix = "chaos:fill:"

// noevictionScenario: the offline consumer is stopped, the publisher goes
// on until every topic has 20 events it has not seen, and Redis is filled
// to its maxmemory with noeviction: every write is refused with OOM
// (publishes fail: counted as failed, not acknowledged). While Redis is
// full, the offline consumer is started again and must catch up with
// everything acknowledged (reads, its lease and its checkpoints work at
// maxmemory), and the running subscribers stay caught up. Then the filler
// keys are deleted and the limit lifted.
//
// Expected: no loss at all, so no report.
var noevictionScenario = dataScenario{
	name: "maxmemory-noeviction",
	gap:  [2]time.Duration{300 * time.Millisecond, time.Second},
	world: func(t *testing.T) *dataEnv {
		srv := redistest.Start(t)
		d := newDataEnv(t, dataConn{Addr: srv.Addr()}, srv)
		d.lease = 2 * time.Second
		return d
	},
	episode: func(d *dataEnv, _ *rand.Rand, n int) {
		off := d.kids[subOffline]
		off.stop(syscall.SIGTERM)
		d.waitAcked(d.pubKeys.Load(), 20)
		used, _ := memory(d.t, d.admin)
		d.srv.SetMaxMemory(d.t, used+(1<<20), "noeviction")
		prefix := fillPrefix + strconv.Itoa(n) + ":"
		filled := d.srv.FillMemory(d.t, prefix)
		failed := d.failed.Load()
		waitFor(d.t, "publishes to fail with OOM", func() (bool, string) {
			return d.failed.Load() >= failed+10, fmt.Sprintf("%d failed since", d.failed.Load()-failed)
		})
		began := time.Now()
		off.start()
		// Everything acknowledged is in the log (nothing is acknowledged
		// while Redis is full): every subscriber must reach it.
		heads := d.h.ackedHeads()
		for _, sub := range dataSubs {
			waitFor(d.t, sub+" to catch up while Redis is full", func() (bool, string) {
				if sub == subOffline || sub == subDurable {
					d.kids[sub].tail()
				}
				d.rec.mu.Lock()
				defer d.rec.mu.Unlock()
				seen := map[string]uint64{}
				for _, dl := range d.rec.dels[sub] {
					seen[dl.topic] = max(seen[dl.topic], dl.seq)
				}
				for tp, h := range heads {
					if seen[tp] < h {
						return false, fmt.Sprintf("handled up to %v of %v", seen, heads)
					}
				}
				return true, ""
			})
		}
		if d.failed.Load() < failed+10 {
			d.t.Errorf("publishes did not fail while Redis was full")
		}
		d.faults = append(d.faults, fmt.Sprintf("full (%d filler keys): offline caught up in %v with %d publishes refused",
			filled, time.Since(began).Round(100*time.Millisecond), d.failed.Load()-failed))
		keys, err := d.admin.Keys(context.Background(), prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = d.admin.Del(context.Background(), keys...).Err()
		}
		if err != nil {
			d.t.Fatalf("delete the filler keys: %v", err)
		}
		d.srv.SetMaxMemory(d.t, 0, "noeviction")
	},
}

// crashScenario: appendfsync everysec. The offline consumer is stopped
// (its checkpoint saved), the AOF marked, the publisher goes on until
// every topic has 20 events acknowledged after the mark, and the host
// "crashes": Redis is SIGKILLed, its AOF cut back to the mark, and it is
// started again. Every other episode the publisher is held from just
// before the crash until the offline consumer is back and has read
// everything Redis still holds, so that it is running before any publish
// can reveal the rollback; in the others it comes back while the
// publisher goes on.
//
// Expected: the events acknowledged after the mark are gone and their
// seqs are handed out again. The live subscribers report them as
// RolledBack (a head below the cursor, or a newer stream id at an old
// seq), from the first lost seq to the last they had handled; the offline
// one learns of them only through the publisher's marker, whose range is
// from the first seq handed out again to the highest the publisher saw
// acknowledged: exactly the acknowledged events that are gone (the
// publisher saw every acknowledgement).
var crashScenario = dataScenario{
	name: "host-crash-everysec", rollback: true, lossy: true,
	gap: [2]time.Duration{500 * time.Millisecond, time.Second},
	world: func(t *testing.T) *dataEnv {
		srv := redistest.Start(t, redistest.WithAOFEverySec())
		d := newDataEnv(t, dataConn{Addr: srv.Addr()}, srv)
		d.lease = 2 * time.Second
		return d
	},
	episode: func(d *dataEnv, _ *rand.Rand, n int) {
		off := d.kids[subOffline]
		off.stop(syscall.SIGTERM)
		mark := d.srv.MarkAOF(d.t)
		d.waitAcked(d.pubKeys.Load(), 20)
		held := n%2 == 0
		if held {
			d.holdPublisher()
		}
		cut := d.srv.CrashToMark(d.t, mark)
		d.faults = append(d.faults, fmt.Sprintf("crash cut %d bytes of AOF (publisher held: %v)", cut, held))
		off.start()
		if held {
			off.waitReady()
			heads := d.logSeqHeads()
			waitFor(d.t, "the offline consumer to read what Redis holds after the crash", func() (bool, string) {
				off.tail()
				d.rec.mu.Lock()
				defer d.rec.mu.Unlock()
				seen := map[string]uint64{}
				for _, dl := range d.rec.dels[subOffline] {
					seen[dl.topic] = max(seen[dl.topic], dl.seq)
				}
				for tp, h := range heads {
					if seen[tp] < h {
						return false, fmt.Sprintf("handled %v of %v", seen, heads)
					}
				}
				return true, ""
			})
			d.hold.Store(false)
		}
	},
}

// logSeqHeads returns the seq of every topic's meta hash.
func (d *dataEnv) logSeqHeads() map[string]uint64 {
	out := map[string]uint64{}
	for _, tp := range topics {
		s, err := d.admin.HGet(context.Background(), "durabus:{"+tp+"}:meta", "seq").Uint64()
		if err != nil && !errors.Is(err, redis.Nil) {
			d.t.Fatalf("read the seq of %s: %v", tp, err)
		}
		out[tp] = s
	}
	return out
}

// churnScenario: every topic's meta hash is deleted 5-15 times, 5-50 ms
// apart, while the publisher goes on (each publish after a DEL starts a
// new epoch over the same log). Every other episode the offline consumer
// is away during it and comes back with checkpoints of an older epoch.
//
// Expected: nothing is lost, so no report; no log entry is handed over
// twice in one process.
var churnScenario = dataScenario{
	name: "epoch-churn",
	gap:  [2]time.Duration{200 * time.Millisecond, 600 * time.Millisecond},
	world: func(t *testing.T) *dataEnv {
		srv := redistest.Start(t)
		d := newDataEnv(t, dataConn{Addr: srv.Addr()}, srv)
		d.lease = 2 * time.Second
		return d
	},
	episode: func(d *dataEnv, rng *rand.Rand, n int) {
		away := n%2 == 0
		if away {
			d.kids[subOffline].stop(syscall.SIGTERM)
		}
		metas := make([]string, len(topics))
		for i, tp := range topics {
			metas[i] = "durabus:{" + tp + "}:meta"
		}
		times := 5 + rng.IntN(11)
		for range times {
			if err := d.admin.Del(context.Background(), metas...).Err(); err != nil {
				d.t.Fatalf("DEL meta hashes: %v", err)
			}
			time.Sleep(between(rng, [2]time.Duration{5 * time.Millisecond, 50 * time.Millisecond}))
		}
		d.faults = append(d.faults, fmt.Sprintf("%d DELs (offline away %v)", times, away))
		if away {
			d.kids[subOffline].start()
		}
	},
}

// short is the last 4 hex digits of an epoch (its random part), enough to
// tell a topic's epochs apart in a sample.
func short(epoch string) string {
	if len(epoch) > 4 {
		return epoch[len(epoch)-4:]
	}
	return epoch
}
