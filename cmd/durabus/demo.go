package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redisproc"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// demoDeadline bounds the whole demo, start and stop of Redis included.
const demoDeadline = 28 * time.Second

// demoConsumer is the durable consumer name of the demo's subscriber.
const demoConsumer = "demo-subscriber"

// demoPattern is the pattern the demo's subscriber follows.
const demoPattern = "demo.*"

type demoOpts struct {
	topics int
	events int
	rate   int
}

// demoEvent is the demo's payload: N is the event's number in its topic,
// which must equal the seq the transport gives it.
type demoEvent struct {
	typ string
	N   int `json:"n"`
}

func (e demoEvent) EventType() string { return e.typ }

var demoTopics = []string{"demo.orders", "demo.payments", "demo.shipments", "demo.invoices", "demo.returns", "demo.reviews"}

func init() {
	register(&command{
		name:    "demo",
		summary: "show durabus surviving connection kills and a restart (starts its own Redis)",
		help: `Runs a publisher and a durable subscriber (consumer "demo-subscriber",
following the pattern demo.*) on several topics at a steady rate, kills the
subscriber's Pub/Sub connection three times (CLIENT KILL from another
client), restarts the subscriber once (closes its bus and starts a new one
under the same consumer name), and prints a summary: published, delivered,
replayed from the backlog, duplicates dropped, lost, reconnects, and a
per-topic check that seqs 1..N were all delivered in order.

Without --redis (and DURABUS_REDIS) it starts a private redis-server from
PATH on a free loopback port in a temporary directory and stops it at the
end. With --redis it uses a fresh namespace durabus.demo.<time> (unless
--namespace is given), deletes its keys at the end, and kills only the
subscriber's own connections.

With --json the progress lines go to stderr and the summary is one JSON
object on stdout. Exit status 0 only when nothing was lost and every topic
was in order. It takes about 10 s.`,
		flags: func(fs *flag.FlagSet) any {
			o := &demoOpts{}
			fs.IntVar(&o.topics, "topics", 3, "number of topics, 1 to 6")
			fs.IntVar(&o.events, "events", 1500, "events per topic")
			fs.IntVar(&o.rate, "rate", 600, "events per second, all topics together")
			return o
		},
		run: runDemo,
	})
}

func runDemo(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*demoOpts)
	if len(args) > 0 {
		return usagef("demo takes no arguments")
	}
	switch {
	case o.topics < 1 || o.topics > len(demoTopics):
		return usagef("demo: --topics %d: want 1 to %d", o.topics, len(demoTopics))
	case o.events < 1:
		return usagef("demo: --events %d: want at least 1", o.events)
	case o.rate < 1 || o.rate > 50000:
		return usagef("demo: --rate %d: want 1 to 50000", o.rate)
	}
	if d := time.Duration(float64(o.topics*o.events) / float64(o.rate) * float64(time.Second)); d > 15*time.Second {
		return usagef("demo: %d topics × %d events at %d/s take %v; keep it under 15s", o.topics, o.events, o.rate, d.Round(time.Second))
	}
	ctx, cancel := context.WithTimeout(ctx, demoDeadline)
	defer cancel()

	d := &demo{e: e, o: o, start: time.Now(), topics: demoTopics[:o.topics]}
	url := e.redisURL
	cleanup := false
	private := !e.urlSet
	if private {
		srv, err := redisproc.Start(ctx)
		if errors.Is(err, redisproc.ErrNotFound) {
			return errors.New("redis-server not found on PATH: install it (sudo apt-get install -y redis-server; make demo does it) or give --redis URL")
		}
		if err != nil {
			return err
		}
		defer srv.Stop()
		url = srv.URL()
		if e.namespace == "" {
			e.namespace = "durabus.demo"
		}
	} else if e.namespace == "" {
		e.namespace = fmt.Sprintf("durabus.demo.%d", time.Now().UnixMilli())
		cleanup = true
	}
	admin, addr, err := dial(ctx, url, "durabus-demo-admin")
	if err != nil {
		return err
	}
	defer admin.Close()
	d.url, d.admin, d.ns = url, admin, e.namespace
	if private {
		d.say("private redis-server %s on %s, in a temporary directory", redisVersion(ctx, admin), addr)
	} else {
		d.say("using Redis %s at %s, namespace %q", redisVersion(ctx, admin), addr, d.ns)
	}
	if cleanup {
		defer d.deleteKeys()
	}
	err = d.run(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("demo did not finish within %v", demoDeadline)
	}
	return err
}

// demo holds the state of one demo run.
type demo struct {
	e      *env
	o      *demoOpts
	start  time.Time
	topics []string
	url    string
	ns     string
	admin  *redis.Client

	subName string // CLIENT SETNAME of the subscriber's connections

	mu     sync.Mutex
	state  map[string]*topicCheck
	stats  []replay.Stats
	losses []*replay.LossError
}

// topicCheck is what the subscriber saw on one topic.
type topicCheck struct {
	seen        []bool // by seq
	unique      int
	max         uint64
	runLast     uint64 // last seq of the current run; 0 before the first
	calls       int
	replayed    int
	redelivered int // seq ≤ max: seen before, delivered again after the restart
	outOfOrder  int
	badPayload  int
}

func (d *demo) say(format string, args ...any) {
	w := d.e.stdout
	if d.e.json {
		w = d.e.stderr // stdout carries only the JSON summary
	}
	fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) run(ctx context.Context) error {
	o := d.o
	total := o.topics * o.events
	dur := time.Duration(float64(total) / float64(o.rate) * float64(time.Second))
	d.subName = fmt.Sprintf("durabus-demo-sub-%d", time.Now().UnixNano())
	d.state = make(map[string]*topicCheck)
	for _, t := range d.topics {
		d.state[t] = &topicCheck{seen: make([]bool, o.events+1)}
	}

	pub, err := d.connect(ctx, "durabus-demo-pub")
	if err != nil {
		return err
	}
	defer pub.Close()

	d.say("publisher: %d topics (%s) × %d events at %d events/s, for about %v",
		o.topics, strings.Join(d.topics, ", "), o.events, o.rate, dur.Round(100*time.Millisecond))
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pubDone := make(chan error, 1)
	go func() { pubDone <- d.publish(pubCtx, pub) }()

	at := func(frac float64) time.Time { return d.start.Add(time.Duration(frac * float64(dur))) }
	wait := func(t time.Time) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pubDone:
			pubDone <- err
			if err != nil {
				return err
			}
			<-time.After(time.Until(t))
			return nil
		case <-time.After(time.Until(t)):
			return nil
		}
	}

	// The subscriber starts late, so that it first catches up from the backlog.
	if err := wait(at(0.12)); err != nil {
		return err
	}
	sub, err := d.startSubscriber(ctx, 1)
	if err != nil {
		return err
	}
	d.say("subscriber %q started (durable, pattern demo.*, from the beginning): catching up on %d events already in the backlog", demoConsumer, d.publishedSoFar(ctx))

	steps := []struct {
		frac float64
		do   func() error
	}{
		{0.28, func() error { return d.kill(ctx, 1) }},
		{0.45, func() error { return d.kill(ctx, 2) }},
		{0.60, func() error {
			d.say("restart: closing the subscriber's bus (it saves its checkpoints); the publisher goes on")
			d.stopSubscriber(sub)
			sub = nil
			d.say("subscriber down; checkpoints of %q: %s", demoConsumer, d.checkpoints(ctx))
			if err := wait(time.Now().Add(500 * time.Millisecond)); err != nil {
				return err
			}
			var err error
			if sub, err = d.startSubscriber(ctx, 2); err != nil {
				return err
			}
			d.say("subscriber restarted as a new bus under the same consumer name: it resumes after its checkpoints")
			return nil
		}},
		{0.80, func() error { return d.kill(ctx, 3) }},
	}
	for _, s := range steps {
		if err := wait(at(s.frac)); err != nil {
			if sub != nil {
				d.stopSubscriber(sub)
			}
			return err
		}
		if err := s.do(); err != nil {
			if sub != nil {
				d.stopSubscriber(sub)
			}
			return err
		}
	}
	err = <-pubDone
	if err != nil {
		d.stopSubscriber(sub)
		return err
	}
	d.say("publisher done: %d events published", total)
	caughtUp := d.waitCaughtUp(ctx)
	if caughtUp {
		d.say("subscriber caught up: every topic delivered up to seq %d", o.events)
	} else {
		d.say("subscriber did NOT catch up before the deadline")
	}
	d.stopSubscriber(sub)
	return d.summary()
}

// demoConn is a client with a transport and a bus on it.
func (d *demo) connect(ctx context.Context, name string, busOpts ...bus.Option) (*conn, error) {
	rdb, addr, err := dial(ctx, d.url, name)
	if err != nil {
		return nil, err
	}
	c, err := wrap(rdb, addr, d.ns, busOpts...)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return c, nil
}

// publish publishes o.events events per topic at the steady rate, each
// topic from its own goroutine, in batches of what is due.
func (d *demo) publish(ctx context.Context, c *conn) error {
	perTopic := float64(d.o.rate) / float64(d.o.topics)
	var wg sync.WaitGroup
	errs := make(chan error, len(d.topics))
	for _, topic := range d.topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			typ := strings.TrimSuffix(strings.TrimPrefix(topic, "demo."), "s") + ".event"
			sent := 0
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			begin := time.Now()
			for sent < d.o.events {
				select {
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				case <-tick.C:
				}
				due := min(d.o.events, int(time.Since(begin).Seconds()*perTopic)+1)
				var batch []bus.Event
				for n := sent + 1; n <= due; n++ {
					batch = append(batch, demoEvent{typ: typ, N: n})
				}
				if len(batch) == 0 {
					continue
				}
				if _, err := c.bus.PublishBatch(ctx, batch, bus.ToTopic(topic)); err != nil {
					errs <- fmt.Errorf("publisher: %w", err)
					return
				}
				sent = due
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (d *demo) publishedSoFar(ctx context.Context) int {
	n := 0
	for _, t := range d.topics {
		_, meta, _ := d.metaKeys(t)
		if s, err := d.admin.HGet(ctx, meta, "seq").Result(); err == nil {
			v, _ := strconv.Atoi(s)
			n += v
		}
	}
	return n
}

func (d *demo) metaKeys(topic string) (log, meta, channel string) {
	ch := d.ns + ":{" + topic + "}"
	return ch + ":log", ch + ":meta", ch
}

// subscriber is one run of the durable subscriber.
type subscriber struct {
	c    *conn
	done chan error
	run  int
}

func (d *demo) startSubscriber(ctx context.Context, run int) (*subscriber, error) {
	d.mu.Lock()
	for _, st := range d.state {
		st.runLast = 0
	}
	d.mu.Unlock()
	c, err := d.connect(ctx, d.subName,
		bus.WithConsumer(demoConsumer),
		bus.WithOnLoss(func(le *replay.LossError) {
			d.mu.Lock()
			d.losses = append(d.losses, le)
			d.mu.Unlock()
			d.say("LOSS: %v", le)
		}),
		bus.WithFollowerOptions(replay.WithCheckpointEvery(100, 200*time.Millisecond)))
	if err != nil {
		return nil, err
	}
	h := bus.HandlerFunc(func(_ context.Context, m *bus.Message) error {
		d.record(run, m)
		return nil
	})
	if _, err := c.bus.Handle(demoPattern, h, bus.StartAt(bus.Beginning())); err != nil {
		c.Close()
		return nil, err
	}
	s := &subscriber{c: c, done: make(chan error, 1), run: run}
	go func() { s.done <- c.bus.Run(context.WithoutCancel(ctx)) }()
	return s, nil
}

// stopSubscriber closes the subscriber's bus (which waits for handlers and
// saves checkpoints) and keeps its counters.
func (d *demo) stopSubscriber(s *subscriber) {
	if s == nil {
		return
	}
	_ = s.c.bus.Close()
	<-s.done
	var st replay.Stats
	for _, ss := range s.c.bus.Status() {
		st = ss.Stats
	}
	s.c.Close()
	d.mu.Lock()
	d.stats = append(d.stats, st)
	d.mu.Unlock()
}

// record checks one delivery: its seq follows the previous one of this run
// and its payload carries the same number.
func (d *demo) record(run int, m *bus.Message) {
	var p struct {
		N uint64 `json:"n"`
	}
	_ = json.Unmarshal(m.Data, &p)
	seq := m.Position.Seq
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state[m.Topic]
	if st == nil {
		return
	}
	st.calls++
	if m.Replayed {
		st.replayed++
	}
	if p.N != seq {
		st.badPayload++
	}
	switch {
	case st.runLast == 0 && run == 1 && seq != 1:
		st.outOfOrder++ // the first run starts at the beginning
	case st.runLast == 0 && seq > st.max+1:
		st.outOfOrder++ // a restart must not skip
	case st.runLast != 0 && seq != st.runLast+1:
		st.outOfOrder++
	}
	st.runLast = seq
	if seq <= st.max {
		st.redelivered++
	}
	if seq > st.max {
		st.max = seq
	}
	if seq < uint64(len(st.seen)) && !st.seen[seq] {
		st.seen[seq] = true
		st.unique++
	}
}

// kill closes the subscriber's Pub/Sub connections with CLIENT KILL from
// the admin client. Only connections named d.subName are touched.
func (d *demo) kill(ctx context.Context, n int) error {
	list, err := d.admin.ClientList(ctx).Result()
	if err != nil {
		return fmt.Errorf("CLIENT LIST: %w", err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		f := clientFields(line)
		if f["name"] == d.subName && strings.Contains(f["flags"], "P") {
			ids = append(ids, f["id"])
		}
	}
	if len(ids) == 0 {
		d.say("fault %d: no Pub/Sub connection of the subscriber to kill right now (it is reconnecting)", n)
		return nil
	}
	for _, id := range ids {
		if err := d.admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
			return fmt.Errorf("CLIENT KILL ID %s: %w", id, err)
		}
	}
	d.say("fault %d: CLIENT KILL of the subscriber's Pub/Sub connection (client id %s); events published until it resubscribes are only in the backlog", n, strings.Join(ids, ", "))
	return nil
}

// clientFields parses one line of CLIENT LIST.
func clientFields(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func (d *demo) checkpoints(ctx context.Context) string {
	// A pattern subscription keeps its checkpoints under "<consumer>@<pattern>".
	cps, err := d.admin.HGetAll(ctx, d.ns+":consumer:"+demoConsumer+"@"+demoPattern).Result()
	if err != nil || len(cps) == 0 {
		return "none"
	}
	var parts []string
	for _, t := range d.topics {
		if p, err := transport.ParsePosition(cps[t]); err == nil && cps[t] != "" {
			parts = append(parts, fmt.Sprintf("%s@%d", t, p.Seq))
		}
	}
	return strings.Join(parts, " ")
}

// waitCaughtUp waits until every topic was delivered up to its last seq.
func (d *demo) waitCaughtUp(ctx context.Context) bool {
	for {
		d.mu.Lock()
		done := true
		for _, st := range d.state {
			if st.unique < d.o.events {
				done = false
			}
		}
		d.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// deleteKeys removes the demo's keys from a Redis that is not private.
func (d *demo) deleteKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := d.admin.Scan(ctx, 0, d.ns+":*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		_ = d.admin.Unlink(ctx, keys...).Err()
	}
}

// summary prints the table and returns an error when the run failed.
func (d *demo) summary() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var agg replay.Stats
	for _, s := range d.stats {
		agg.Delivered += s.Delivered
		agg.Replayed += s.Replayed
		agg.Duplicates += s.Duplicates
		agg.Reconnects += s.Reconnects
		agg.Lost += s.Lost
		agg.Gaps += s.Gaps
	}
	published := d.o.topics * d.o.events
	calls, replayed, redelivered, missing, disorder := 0, 0, 0, 0, 0
	for _, t := range d.topics {
		st := d.state[t]
		calls += st.calls
		replayed += st.replayed
		redelivered += st.redelivered
		missing += d.o.events - st.unique
		disorder += st.outOfOrder + st.badPayload
	}
	lost := uint64(missing)
	if agg.Lost > lost {
		lost = agg.Lost
	}
	ok := lost == 0 && disorder == 0 && missing == 0
	if d.e.json {
		topics := make([]map[string]any, 0, len(d.topics))
		for _, t := range d.topics {
			st := d.state[t]
			topics = append(topics, map[string]any{"topic": t, "delivered": st.calls, "unique": st.unique,
				"redelivered": st.redelivered, "out_of_order": st.outOfOrder, "bad_payloads": st.badPayload,
				"in_order": st.outOfOrder == 0 && st.badPayload == 0 && st.unique == d.o.events})
		}
		_ = writeJSONLine(d.e.stdout, map[string]any{"published": published, "delivered": calls, "replayed": replayed,
			"duplicates_dropped": agg.Duplicates, "redelivered": redelivered, "lost": lost, "loss_reports": len(d.losses),
			"reconnects": agg.Reconnects, "topics": topics, "ok": ok, "seconds": time.Since(d.start).Seconds()})
		if !ok {
			return fmt.Errorf("demo failed: %d lost, %d out of order", lost, disorder)
		}
		return nil
	}
	w := d.e.stdout
	fmt.Fprintln(w)
	fmt.Fprintln(w, "durabus demo — summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any, note string) { fmt.Fprintf(tw, "  %s\t%v\t%s\n", k, v, note) }
	row("published", published, fmt.Sprintf("%d topics × %d events", d.o.topics, d.o.events))
	row("delivered", calls, "handler calls, both subscriber runs")
	row("  replayed", replayed, "of them read from the backlog: catch-up, gap repair after kills, restart")
	row("duplicates dropped", agg.Duplicates, "seen both live and in the backlog; dropped by the follower")
	row("redelivered", redelivered, "after the restart, past the last saved checkpoint (at-least-once)")
	row("lost", lost, lossNote(lost, len(d.losses)))
	row("reconnects", agg.Reconnects, "live connection re-established (after each CLIENT KILL)")
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  TOPIC\tDELIVERED\tUNIQUE SEQS\tREDELIVERED\tORDER")
	for _, t := range d.topics {
		st := d.state[t]
		order := "ok: 1.." + strconv.Itoa(d.o.events) + " in order"
		switch {
		case st.outOfOrder > 0:
			order = fmt.Sprintf("BROKEN: %d out-of-order deliveries", st.outOfOrder)
		case st.badPayload > 0:
			order = fmt.Sprintf("BROKEN: %d payloads do not match their seq", st.badPayload)
		case st.unique < d.o.events:
			order = fmt.Sprintf("INCOMPLETE: %d of %d seqs", st.unique, d.o.events)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\n", t, st.calls, st.unique, st.redelivered, order)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if !ok {
		fmt.Fprintln(w, "result: FAILED")
		return fmt.Errorf("demo failed: %d lost, %d out of order", lost, disorder)
	}
	fmt.Fprintf(w, "result: OK — %d of %d events delivered, every topic in order, nothing lost (%.1fs)\n", published, published, time.Since(d.start).Seconds())
	return nil
}

func lossNote(lost uint64, reports int) string {
	if lost == 0 && reports == 0 {
		return "must be 0"
	}
	return fmt.Sprintf("%d loss report(s)", reports)
}

// redisVersion returns the server's redis_version, or "?".
func redisVersion(ctx context.Context, rdb *redis.Client) string {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}
