// Command orders runs three replicas of one "orders" service as three
// processes that share its events through a consumer group, kills one of
// them with SIGKILL, and checks afterwards that every order's events were
// handled, in order.
//
//	go run ./examples/orders [--orders 300] [--redis redis://localhost:6379]
//
// The topic "order.updated" has 16 partitions; an event's key is its order
// id, so the three events of an order (created, paid, shipped) are in one
// partition. Each replica is a bus with WithGroup("orders") and prints the
// partitions it owns whenever they change. The parent process (this
// program without --replica) starts the replicas (itself again, with
// --replica), publishes the orders' events steadily, SIGKILLs replica 2
// once it has handled some, and prints who takes its partitions over: the
// others, once its lease lapses (5 s by default, plus a 200 ms tick).
//
// Every replica appends a line "replica order step" per handled event to
// one file (O_APPEND: one write per line, in the order they happened). At
// the end the parent checks, per order, that the steps were handled in
// order and none was skipped; steps handled again are allowed only where
// the killed replica left off (its events after its last checkpoint). It
// prints a verdict and exits 1 when the check fails.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/internal/redisproc"
)

// OrderUpdated is one step of an order: 1 created, 2 paid, 3 shipped.
type OrderUpdated struct {
	Order  string `json:"order"`
	Step   int    `json:"step"`
	Status string `json:"status"`
}

func (OrderUpdated) EventType() string { return "order.updated" }

// PartitionKey keeps the events of one order in one partition, in order.
func (o OrderUpdated) PartitionKey() string { return o.Order }

const (
	topic      = "order.updated"
	partitions = 16
	group      = "orders"
	victim     = "2" // the replica that is killed
)

var statuses = [...]string{1: "created", 2: "paid", 3: "shipped"}

// options are what every replica and the publisher agree on.
func options() []bus.Option {
	return []bus.Option{bus.WithSource("orders"), bus.WithPartitions(topic, partitions)}
}

func main() { exredis.Main("orders", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	orders := fs.Int("orders", 300, "orders to publish, three events each")
	every := fs.Duration("every", 30*time.Millisecond, "publish one step of three orders this often")
	killAfter := fs.Int("kill-after", 60, "SIGKILL replica "+victim+" once it has handled this many events")
	replica := fs.String("replica", "", "run as the replica of this name (the parent starts them)")
	logPath := fs.String("log", "", "with --replica: the file to append handled events to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replica != "" {
		return runReplica(ctx, *replica, *redisURL, *logPath, stdout)
	}
	return runParent(ctx, *redisURL, *orders, *every, *killAfter, stdout)
}

// runReplica is one replica of the service: a member of the group
// "orders" until ctx ends (SIGTERM from the parent), then Close hands its
// partitions over.
func runReplica(ctx context.Context, name, url, logPath string, stdout io.Writer) error {
	if url == "" || logPath == "" {
		return errors.New("--replica needs --redis and --log (the parent passes them)")
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	tr, _, closeAll, err := exredis.Transport(ctx, url, io.Discard)
	if err != nil {
		return err
	}
	defer closeAll()
	// Warnings and errors only (a lease lost, a loss): the ownership
	// changes are printed below.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("replica", name)
	b, err := bus.New(tr, append(options(), bus.WithGroup(group), bus.WithLogger(logger))...)
	if err != nil {
		return err
	}
	out := exredis.NewSyncWriter(stdout)
	sub, err := bus.Subscribe(b, func(ctx context.Context, o *OrderUpdated) error {
		m, _ := bus.MessageFrom(ctx)
		// A real service would bill or ship here, idempotently: after a
		// takeover the new owner handles again what the dead one did
		// after its last checkpoint.
		if _, err := fmt.Fprintf(log, "%s %s %d\n", name, o.Order, o.Step); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, "handled %s %d %s\n", o.Order, o.Step, short(m.Topic))
		return err
	}, bus.StartAt(bus.Beginning())) // the first time the group reads a partition; its checkpoint after that
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- b.Run(ctx) }()
	// Print the partitions this replica owns whenever they change.
	var last []string
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-runErr: // ctx ended (SIGTERM), or the transport failed
			return errors.Join(err, b.Close())
		case <-ctx.Done():
			// Close: handlers finish, checkpoints are saved, the
			// partitions are handed over at once.
			return errors.Join(b.Close(), <-runErr)
		case <-t.C:
		}
		var owned []string
		if g := sub.Status().Group; g != nil {
			for _, p := range g.Owned {
				owned = append(owned, short(p))
			}
		}
		slices.SortFunc(owned, byNumber)
		if !slices.Equal(owned, last) {
			fmt.Fprintf(out, "owns %s\n", strings.Join(owned, " "))
			last = owned
		}
	}
}

// short returns "p5" for the partition topic "order.updated:p5".
func short(partition string) string { return strings.TrimPrefix(partition, topic+":") }

func byNumber(a, b string) int {
	x, _ := strconv.Atoi(strings.TrimPrefix(a, "p"))
	y, _ := strconv.Atoi(strings.TrimPrefix(b, "p"))
	return x - y
}

// child is a replica process seen from the parent.
type child struct {
	name    string
	cmd     *exec.Cmd
	owned   []string
	handled int
	exited  chan struct{}
}

// line is a line a replica printed.
type line struct {
	c    *child
	text string
}

// lineWriter sends each complete line written to it to ch.
type lineWriter struct {
	c   *child
	ch  chan<- line
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := slices.Index(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.ch <- line{w.c, string(w.buf[:i])}
		w.buf = w.buf[i+1:]
	}
}

// start starts the replica process. Its goroutine keeps its OS thread
// until the process exits, so that the kernel kills the replica when the
// parent dies (redisproc.ParentDeathAttr).
func (c *child) start(exe string, args []string, lines chan<- line) error {
	c.cmd = exec.Command(exe, args...)
	c.cmd.Stdout = &lineWriter{c: c, ch: lines}
	c.cmd.Stderr = os.Stderr
	c.cmd.SysProcAttr = redisproc.ParentDeathAttr()
	c.exited = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(c.exited)
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = c.cmd.Wait()
	}()
	return <-started
}

func runParent(ctx context.Context, url string, orders int, every time.Duration, killAfter int, stdout io.Writer) error {
	tr, rdb, closeAll, err := exredis.Transport(ctx, url, stdout)
	if err != nil {
		return err
	}
	defer closeAll()
	if url == "" {
		url = "redis://" + rdb.Options().Addr // the private server
	}
	dir, err := os.MkdirTemp("", "durabus-orders-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, "handled.log")
	exe, err := os.Executable()
	if err != nil {
		return err
	}

	lines := make(chan line, 64)
	var replicas []*child
	defer func() { // on an early return: no replica outlives the run
		for _, c := range replicas {
			_ = c.cmd.Process.Kill()
			for exited := false; !exited; {
				select {
				case <-c.exited:
					exited = true
				case <-lines: // what it printed meanwhile
				}
			}
		}
	}()
	for _, name := range []string{"1", "2", "3"} {
		c := &child{name: name}
		if err := c.start(exe, []string{"--replica", name, "--redis", url, "--log", logPath}, lines); err != nil {
			return fmt.Errorf("start replica %s: %w", name, err)
		}
		replicas = append(replicas, c)
	}
	fmt.Fprintf(stdout, "3 replicas of the service (pids %d %d %d) in group %q, topic %q with %d partitions\n",
		replicas[0].cmd.Process.Pid, replicas[1].cmd.Process.Pid, replicas[2].cmd.Process.Pid, group, topic, partitions)

	pub, err := bus.New(tr, options()...)
	if err != nil {
		return err
	}
	defer pub.Close()
	pctx, stopPublishing := context.WithCancel(ctx)
	defer stopPublishing()

	var (
		published  = make(chan error, 1)
		publishing bool
		done       = map[string]bool{} // "order step" handled at least once
		killedAt   time.Time
		victimOwn  []string
		takenOver  bool
	)
	want := 3 * orders
	for len(done) < want || (!killedAt.IsZero() && !takenOver) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-published:
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			fmt.Fprintf(stdout, "publisher: done, %d events of %d orders\n", want, orders)
			published = nil
		case l := <-lines:
			c := l.c
			if o, ok := strings.CutPrefix(l.text, "owns"); ok {
				c.owned = strings.Fields(o)
				fmt.Fprintf(stdout, "replica %s owns %2d: %s\n", c.name, len(c.owned), strings.Join(c.owned, " "))
			} else if f := strings.Fields(l.text); len(f) == 4 && f[0] == "handled" {
				c.handled++
				done[f[1]+" "+f[2]] = true
			} else {
				fmt.Fprintf(stdout, "replica %s: %s\n", c.name, l.text)
			}
		}
		switch {
		case !publishing && balanced(replicas):
			publishing = true
			fmt.Fprintf(stdout, "publisher: %d orders × created, paid, shipped; one step of three orders every %v\n", orders, every)
			go func() { published <- publish(pctx, pub, orders, every) }()
		case killedAt.IsZero() && replicas[1].handled >= killAfter:
			c := replicas[1]
			if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				return err
			}
			killedAt, victimOwn = time.Now(), c.owned
			fmt.Fprintf(stdout, "SIGKILL replica %s after %d events; its partitions %s wait for its lease to lapse\n",
				c.name, c.handled, strings.Join(victimOwn, " "))
		case !killedAt.IsZero() && !takenOver && covered(replicas[0], replicas[2]):
			takenOver = true
			fmt.Fprintf(stdout, "takeover %.1f s after the kill: replica 1 took %s, replica 3 took %s\n",
				time.Since(killedAt).Seconds(), took(replicas[0].owned, victimOwn), took(replicas[2].owned, victimOwn))
		}
		for _, c := range replicas {
			select {
			case <-c.exited:
				if c.name != victim || killedAt.IsZero() {
					return fmt.Errorf("replica %s exited: %v", c.name, c.cmd.ProcessState)
				}
			default:
			}
		}
	}
	if killedAt.IsZero() {
		fmt.Fprintf(stdout, "replica %s was not killed: it handled %d events, fewer than --kill-after %d\n", victim, replicas[1].handled, killAfter)
	}
	fmt.Fprintf(stdout, "all %d events handled: replica 1 %d, replica 2 %d (killed), replica 3 %d\n",
		want, replicas[0].handled, replicas[1].handled, replicas[2].handled)

	// Stop the others as a deployment would: SIGTERM, Close, handover.
	for _, c := range []*child{replicas[0], replicas[2]} {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range replicas {
	wait:
		for {
			select {
			case <-c.exited:
				break wait
			case <-lines: // what they print while closing
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if c.name != victim && !c.cmd.ProcessState.Success() {
			return fmt.Errorf("replica %s: %v", c.name, c.cmd.ProcessState)
		}
	}
	replicas = nil

	records, err := readLog(logPath)
	if err != nil {
		return err
	}
	v := check(records, orders)
	fmt.Fprintln(stdout, v)
	if !v.ok() {
		return errors.New("the check failed")
	}
	return nil
}

// balanced reports whether each replica owns its share of the partitions
// (5 or 6 of 16) and together all of them.
func balanced(cs []*child) bool {
	n := 0
	for _, c := range cs {
		if len(c.owned) < partitions/len(cs) || len(c.owned) > partitions/len(cs)+1 {
			return false
		}
		n += len(c.owned)
	}
	return n == partitions
}

// covered reports whether a and b own every partition between them.
func covered(a, b *child) bool {
	seen := map[string]bool{}
	for _, p := range append(slices.Clone(a.owned), b.owned...) {
		seen[p] = true
	}
	return len(seen) == partitions
}

// took returns the partitions of victimOwn that owned has.
func took(owned, victimOwn []string) string {
	var out []string
	for _, p := range victimOwn {
		if slices.Contains(owned, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " ")
}

// publish publishes the orders' events: every tick, order i is created,
// order i-10 paid and order i-20 shipped, so that the events of one order
// are spread over more than half a second.
func publish(ctx context.Context, b *bus.Bus, orders int, every time.Duration) error {
	const lag = 10
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; i < orders+2*lag; i++ {
		for step := 1; step <= 3; step++ {
			n := i - (step-1)*lag
			if n < 0 || n >= orders {
				continue
			}
			o := OrderUpdated{Order: fmt.Sprintf("order-%d", n+1), Step: step, Status: statuses[step]}
			if _, err := b.Publish(ctx, o); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// record is one line of the log: replica handled step of order.
type record struct {
	replica, order string
	step           int
}

func readLog(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r record
		if _, err := fmt.Sscanf(sc.Text(), "%s %s %d", &r.replica, &r.order, &r.step); err != nil {
			return nil, fmt.Errorf("%s: line %q: %w", path, sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// verdict is the outcome of check.
type verdict struct {
	orders, events, again int
	problems              []string
}

func (v verdict) ok() bool { return len(v.problems) == 0 }

func (v verdict) String() string {
	if !v.ok() {
		return fmt.Sprintf("verdict: FAILED: %d problems, the first: %s", len(v.problems), strings.Join(v.problems[:min(5, len(v.problems))], "; "))
	}
	return fmt.Sprintf("verdict: OK: %d orders, all %d events handled, in order per order; %d handled again where replica %s left off after its last checkpoint",
		v.orders, 3*v.orders, v.again, victim)
}

// check goes through the handled events in the order they happened. Per
// order, a replica handles step 1, 2, 3 one after the other. When another
// replica takes the order over, it goes on with the next step (a handover
// between live replicas) or, only after the killed replica, starts again
// at a step that replica had handled already (those after its last
// checkpoint): never further on, which would skip one.
func check(rs []record, orders int) verdict {
	v := verdict{orders: orders, events: len(rs)}
	type state struct {
		step    int
		replica string
	}
	last := map[string]state{}
	for _, r := range rs {
		s := last[r.order]
		switch {
		case r.step == s.step+1:
		case s.replica != "" && r.replica != s.replica && r.step >= 1 && r.step <= s.step:
			if s.replica != victim {
				v.problems = append(v.problems, fmt.Sprintf("%s: replica %s handled step %d again after replica %s, which was not killed", r.order, r.replica, r.step, s.replica))
			}
			v.again += s.step - r.step + 1
		default:
			v.problems = append(v.problems, fmt.Sprintf("%s: replica %s handled step %d after step %d (by replica %q)", r.order, r.replica, r.step, s.step, s.replica))
		}
		last[r.order] = state{r.step, r.replica}
	}
	for i := 1; i <= orders; i++ {
		if s := last[fmt.Sprintf("order-%d", i)]; s.step != 3 {
			v.problems = append(v.problems, fmt.Sprintf("order-%d: last step handled %d, want 3", i, s.step))
		}
	}
	if extra := len(rs) - 3*orders; extra != v.again && v.ok() {
		v.problems = append(v.problems, fmt.Sprintf("%d events handled more than once, %d of them where replica %s left off", extra, v.again, victim))
	}
	return v
}
