package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/console"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

type serveOpts struct {
	addr       string
	allowWrite bool
	token      string
	follow     string
}

// minTokenLen is the shortest --token accepted: a token is the only thing
// between the network and the console.
const minTokenLen = 16

func init() {
	register(&command{
		name:    "serve",
		summary: "serve a web console: topics, consumers, dead letters, live tail",
		help: `Serves the web console on --addr (default 127.0.0.1:8080): topics with
their publish rate over the last minute, backlog, head and subscribers;
durable consumers with their checkpoints and lag; dead letters, to inspect
and requeue; a live tail of a topic or pattern with replay from a chosen
time; and the losses and reconnects the console's own follower saw. The
page is embedded in the tool and loads nothing from the network.

Safe by default: it listens on loopback only, unless --token (or
DURABUS_CONSOLE_TOKEN) is given, which every request must then carry (open
/?token=TOKEN once); requeue is refused unless --allow-write is given. A
read-only Redis user is enough for everything but requeue (see
docs/console.md for its ACL line). Ctrl-C stops it.`,
		flags: func(fs *flag.FlagSet) any {
			o := &serveOpts{}
			fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "listen on `HOST:PORT`; a non-loopback address needs --token")
			fs.BoolVar(&o.allowWrite, "allow-write", false, "allow requeueing dead letters from the page")
			fs.StringVar(&o.token, "token", "", "require `TOKEN` on every request, at least 16 characters (env DURABUS_CONSOLE_TOKEN)")
			fs.StringVar(&o.follow, "follow", "*", "the console's own follower follows `PATTERN` from new events on, to report losses and reconnects (\"\" for none)")
			return o
		},
		run: runServe,
	})
}

func runServe(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*serveOpts)
	if len(args) > 0 {
		return usagef("serve takes no arguments, got %q (see durabus help serve)", args[0])
	}
	if o.token == "" {
		o.token = e.getenv("DURABUS_CONSOLE_TOKEN")
	}
	if _, _, err := net.SplitHostPort(o.addr); err != nil {
		return usagef("serve: --addr %q: want HOST:PORT, e.g. 127.0.0.1:8080", o.addr)
	}
	if o.token != "" && len(o.token) < minTokenLen {
		return usagef("serve: --token is %d characters long: want at least %d (e.g. openssl rand -hex 16)", len(o.token), minTokenLen)
	}
	if !console.IsLoopback(o.addr) && o.token == "" {
		return usagef("serve: refusing to listen on %s, which is not a loopback address, without a token: give --token or DURABUS_CONSOLE_TOKEN (at least %d characters), or listen on 127.0.0.1", o.addr, minTokenLen)
	}
	if o.follow != "" {
		if err := transport.ValidatePattern(o.follow); err != nil {
			return usagef("serve: --follow: %v", err)
		}
	}

	// The server's log (losses, handler panics, failed requests) goes to
	// the command's stderr; the page shows the same.
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	src := &serveSource{}
	copts := []console.Option{console.WithFollow(o.follow), console.WithLogger(log)}
	if o.allowWrite {
		copts = append(copts, console.WithWrites())
	}
	if o.token != "" {
		copts = append(copts, console.WithToken(o.token))
	}
	con, err := console.New(src, copts...)
	if err != nil {
		return err
	}
	c, err := open(ctx, e.redisURL, e.namespace, "durabus-console", log,
		bus.WithOnError(func(err error) { con.Report(console.Notice{Kind: "error", Message: err.Error()}) }),
		bus.WithFollowerOptions(replay.WithOnReconnect(func(reason string) {
			con.Report(console.Notice{Kind: "reconnect", Message: "live connection rebuilt (" + reason + "); repairing from the backlog"})
		})))
	if err != nil {
		return err
	}
	defer c.Close()
	src.c = c

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", o.addr, err)
	}
	mode := "read-only (requeue refused; --allow-write allows it)"
	if o.allowWrite {
		mode = "writes allowed (requeue)"
	}
	url := "http://" + ln.Addr().String() + "/"
	if o.token != "" {
		url += "?token=<TOKEN>"
	}
	fmt.Fprintf(e.stdout, "durabus console on %s (Redis %s, namespace %q, %s); Ctrl-C stops it\n", url, c.addr, c.ns, mode)

	baseCtx, cancelBase := context.WithCancel(ctx)
	defer cancelBase()
	srv := &http.Server{
		Handler:           con.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          nil,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = con.Run(baseCtx)
	}()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	cancelBase() // ends the live tails' streams, so that Shutdown does not wait for them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); err == nil && serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = serr
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// serveSource is the console's Source: the stats command's collectStats,
// the bus's dead-letter operations and Events.
type serveSource struct {
	c *conn // set before the console serves its first request
}

var _ console.Source = (*serveSource)(nil)

func (s *serveSource) Snapshot(ctx context.Context) (*console.Snapshot, error) {
	rep, err := collectStats(ctx, s.c, "*")
	if err != nil {
		return nil, err
	}
	out := &console.Snapshot{Time: rep.Time, Namespace: rep.Namespace, Redis: s.c.addr, PatternSubscriptions: rep.PatternSubscriptions}
	for _, t := range rep.Topics {
		out.Topics = append(out.Topics, console.Topic{
			Name: t.Topic, Epoch: t.Epoch, Head: t.Head, Backlog: t.Backlog,
			Oldest: deref(t.Oldest), Newest: deref(t.Newest), LastPublish: deref(t.LastPublish),
			Subscribers: t.Subscribers, MemoryBytes: t.MemoryBytes, Master: t.Master,
		})
	}
	for _, cs := range rep.Consumers {
		lag := int64(-1)
		if cs.Lag != nil {
			lag = int64(*cs.Lag)
		}
		out.Consumers = append(out.Consumers, console.Consumer{Name: cs.Consumer, Topic: cs.Topic, Epoch: cs.Epoch, Seq: cs.Seq, StreamID: cs.StreamID, Lag: lag})
	}
	return out, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

func (s *serveSource) DeadLetters(ctx context.Context, topic string, limit int) ([]console.DeadLetter, error) {
	ms, err := s.c.bus.DeadLetters(ctx, topic, limit)
	if err != nil {
		return nil, err
	}
	out := make([]console.DeadLetter, 0, len(ms))
	for _, m := range ms {
		data, err := m.Envelope.Encode()
		if err != nil {
			return nil, err
		}
		x := m.Extensions
		d := console.DeadLetter{
			Seq: m.Position.Seq, ID: m.ID, Type: m.Type, Time: m.Time,
			From: x[bus.ExtDeadTopic], FromSeq: x[bus.ExtDeadSeq], Attempts: x[bus.ExtDeadAttempts], Error: x[bus.ExtDeadError],
			Envelope: data,
		}
		if t, err := time.Parse(time.RFC3339Nano, x[bus.ExtDeadTime]); err == nil {
			d.DeadAt = t
		}
		if d.From == "" {
			d.From = topic
		}
		out = append(out, d)
	}
	return out, nil
}

func (s *serveSource) Requeue(ctx context.Context, topic string, limit int) (int, error) {
	var ropts []bus.RequeueOption
	if limit > 0 {
		ropts = append(ropts, bus.RequeueLimit(limit))
	}
	n, err := s.c.bus.Requeue(ctx, topic, ropts...)
	if errors.Is(err, bus.ErrRequeueSwallowed) {
		err = fmt.Errorf("%w; requeue it with new ids: durabus dead requeue --new-ids %s", err, topic)
	}
	return n, err
}

func (s *serveSource) Tail(ctx context.Context, pattern string, start console.Start) iter.Seq2[*console.Event, error] {
	st := bus.NewOnly()
	switch {
	case start.Beginning:
		st = bus.Beginning()
	case !start.Since.IsZero():
		st = bus.Since(start.Since)
	}
	return func(yield func(*console.Event, error) bool) {
		for m, err := range s.c.bus.Events(ctx, pattern, bus.StartAt(st)) {
			if err != nil {
				if !yield(nil, err) {
					return
				}
				continue
			}
			ev := &console.Event{
				Topic: m.Topic, Epoch: m.Position.Epoch, Seq: m.Position.Seq, StreamID: m.Position.ID,
				Time: m.Time, Type: m.Type, ID: m.ID, Replayed: m.Replayed, Data: m.Data,
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}
