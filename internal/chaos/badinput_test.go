package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// Good is the event the bad-input tests' subscriber takes: version 2, on
// topic "bad".
type Good struct {
	N int `json:"n"`
}

func (Good) EventType() string { return "bad.good" }
func (Good) EventVersion() int { return 2 }

// OldGood is Good's version 1, which no upcaster bridges.
type OldGood struct {
	N int `json:"n"`
}

func (OldGood) EventType() string { return "bad.good" }

// Stranger is a type nobody on "bad" handles.
type Stranger struct{}

func (Stranger) EventType() string { return "bad.stranger" }

// badFixture is a subscriber of topic "bad" that records the Good events
// it handles and the errors the bus reports, and a hostile raw client.
type badFixture struct {
	t    *testing.T
	rdb  *redis.Client
	tr   *redistransport.Transport
	pub  *bus.Bus
	sub  *bus.Bus
	done chan error

	mu   sync.Mutex
	got  []int
	errs []error
	loss []*replay.LossError
	n    int
}

func newBadFixture(t *testing.T, srv *redistest.Server, mw ...bus.Middleware) *badFixture {
	f := &badFixture{t: t, rdb: redis.NewClient(clientOptions(srv.Addr())), done: make(chan error, 1)}
	var err error
	if f.tr, err = redistransport.New(f.rdb, redistransport.WithProbe(250*time.Millisecond, time.Second)); err != nil {
		t.Fatal(err)
	}
	if f.pub, err = bus.New(f.tr, bus.WithRoute("bad.good", "bad"), bus.WithRoute("bad.stranger", "bad")); err != nil {
		t.Fatal(err)
	}
	f.sub, err = bus.New(f.tr, bus.WithRoute("bad.good", "bad"), followerOptions(), bus.WithMiddleware(mw...),
		bus.WithOnError(func(err error) { f.mu.Lock(); f.errs = append(f.errs, err); f.mu.Unlock() }),
		bus.WithOnLoss(func(l *replay.LossError) { f.mu.Lock(); f.loss = append(f.loss, l); f.mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bus.Subscribe(f.sub, func(_ context.Context, e *Good) error {
		f.mu.Lock()
		f.got = append(f.got, e.N)
		f.mu.Unlock()
		return nil
	}, bus.StartAt(bus.Beginning()))
	if err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- f.sub.Run(context.Background()) }()
	return f
}

func (f *badFixture) close() {
	f.sub.Close()
	if err := <-f.done; err != nil {
		f.t.Errorf("Run: %v", err)
	}
	f.pub.Close()
	f.tr.Close()
	f.rdb.Close()
}

// next publishes a valid event and waits until the subscriber handled it.
func (f *badFixture) next() {
	f.t.Helper()
	f.n++
	if _, err := f.pub.Publish(context.Background(), Good{N: f.n}); err != nil {
		f.t.Fatalf("publish the next valid event: %v", err)
	}
	waitUntil(f.t, fmt.Sprintf("valid event %d", f.n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.got) > 0 && f.got[len(f.got)-1] == f.n
	})
}

// takeErrs returns and clears the reported errors.
func (f *badFixture) takeErrs() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := f.errs
	f.errs = nil
	return errs
}

// raw writes data as the next event of topic the way the publish script
// does — seq from the meta hash, XADD, PUBLISH a frame — as a hostile or
// buggy client could. It returns the seq it used.
func (f *badFixture) raw(topic string, data []byte) uint64 {
	f.t.Helper()
	ctx := context.Background()
	log, meta, ch := f.tr.Keys(topic)
	epoch, err := f.rdb.HGet(ctx, meta, "epoch").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	seq, err := f.rdb.HIncrBy(ctx, meta, "seq", 1).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	id, err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: log, Values: []any{"seq", seq, "e", data}}).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	frame := fmt.Sprintf("v1 %s %d 1\n%s %d\n%s", epoch, seq, id, len(data), data)
	if err := f.rdb.Publish(ctx, ch, frame).Err(); err != nil {
		f.t.Fatal(err)
	}
	return uint64(seq)
}

// waitTimeout bounds every wait for a condition: generous, for a loaded
// 2-core machine running -race.
const waitTimeout = 60 * time.Second

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// envelopeJSON returns a valid envelope of type typ and version v around
// data, as raw JSON.
func envelopeJSON(typ string, v int, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"type":%q,"version":%d,"time":%q,"source":"hostile","datacontenttype":"application/json","data":%s}`,
		envelope.NewID(), typ, v, time.Now().UTC().Format(time.RFC3339Nano), data)
}

func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// TestHostileWritesAreReportedAndTheTopicGoesOn writes, as a raw Redis
// client, events that no durabus publisher would write: each is set aside
// with the right error, nothing crashes, and the next valid event arrives.
func TestHostileWritesAreReportedAndTheTopicGoesOn(t *testing.T) {
	srv := redistest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newBadFixture(t, srv)
	defer f.close()
	f.next() // creates the topic's log and meta

	cases := []struct {
		name string
		data string
		want error
	}{
		{"non-JSON", "hello, world", bus.ErrUndecodable},
		{"empty", "", bus.ErrUndecodable},
		{"truncated JSON", envelopeJSON("bad.good", 2, `{"n":1}`)[:60], bus.ErrUndecodable},
		{"wrong field types", `{"specversion":"1.0","id":42,"type":["bad.good"],"version":"2","time":true,"source":{},"data":{"n":1}}`, bus.ErrUndecodable},
		{"10 MiB envelope", envelopeJSON("bad.good", 2, `{"n":1,"pad":"`+strings.Repeat("x", 10<<20)+`"}`), bus.ErrUndecodable},
		{"deeply nested data", envelopeJSON("bad.good", 2, nested(100_000)), bus.ErrUndecodable},
		{"nested data of the wrong shape", envelopeJSON("bad.good", 2, nested(500)), bus.ErrUndecodable},
		{"invalid UTF-8", envelopeJSON("bad.good", 2, "{\"n\":1,\"s\":\"\xff\xfe\"}"), bus.ErrUndecodable},
		{"payload of the wrong type", envelopeJSON("bad.good", 2, `{"n":"one"}`), bus.ErrUndecodable},
		{"unknown event type", envelopeJSON("bad.unknown", 1, `{}`), bus.ErrUnknownType},
		{"old version without upcaster", envelopeJSON("bad.good", 1, `{"n":1}`), bus.ErrNoUpcaster},
		{"newer version", envelopeJSON("bad.good", 3, `{"n":1}`), bus.ErrNewerVersion},
		{"CRLF and NUL in the envelope", "v1 x 1 1\r\n0-1 5\r\n\x00\x00\x00", bus.ErrUndecodable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			seq := f.raw("bad", []byte(c.data))
			f.next()
			errs := f.takeErrs()
			var de *bus.DeliveryError
			found := false
			for _, err := range errs {
				if errors.As(err, &de) && errors.Is(err, c.want) && de.Position.Seq == seq {
					found = true
				}
			}
			if !found {
				t.Fatalf("want a *bus.DeliveryError wrapping %v at seq %d, got %v", c.want, seq, errs)
			}
			t.Logf("reported: %.200v", de)
		})
	}
	f.t = t
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := f.n; len(f.got) != want || len(f.loss) != 0 {
		t.Errorf("handled %v with %d losses, want exactly the %d valid events", f.got, len(f.loss), want)
	}
}

// TestHostileLogAndChannelWrites: junk appended to the log, garbage and
// forged frames on the channel. None reaches the handler; every valid
// event does, once, in order.
func TestHostileLogAndChannelWrites(t *testing.T) {
	srv := redistest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newBadFixture(t, srv)
	defer f.close()
	ctx := context.Background()
	f.next()
	log, meta, ch := f.tr.Keys("bad")
	epoch := f.rdb.HGet(ctx, meta, "epoch").Val()
	forged := envelopeJSON("bad.good", 2, `{"n":-1}`)

	steps := []struct {
		name  string
		write func()
		check func(errs []error) error
	}{
		{"junk XADD into the log", func() {
			f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: log, Values: []any{"hello", "world"}})
			f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: log, Values: []any{"seq", "not-a-number", "e", forged}})
		}, nil},
		{"not a frame", func() { f.rdb.Publish(ctx, ch, "PING\r\n*1\r\n$4\r\nQUIT\r\n") }, wantMalformed},
		{"frame shorter than its length", func() {
			f.rdb.Publish(ctx, ch, fmt.Sprintf("v1 %s 99 1\n1-1 1000\n%s", epoch, forged))
		}, wantMalformed},
		{"frame with a forged seq far ahead", func() {
			head := f.rdb.HGet(ctx, meta, "seq").Val()
			var s uint64
			fmt.Sscan(head, &s)
			f.rdb.Publish(ctx, ch, fmt.Sprintf("v1 %s %d 1\n%d-0 %d\n%s", epoch, s+1000, time.Now().Add(time.Hour).UnixMilli(), len(forged), forged))
		}, wantNotInBacklog},
		{"frame with the next seq and a later stream id", func() {
			head := f.rdb.HGet(ctx, meta, "seq").Val()
			var s uint64
			fmt.Sscan(head, &s)
			f.rdb.Publish(ctx, ch, fmt.Sprintf("v1 %s %d 1\n%d-0 %d\n%s", epoch, s+1, time.Now().Add(time.Hour).UnixMilli(), len(forged), forged))
		}, wantNotInBacklog},
		{"frame of a wrong epoch", func() {
			f.rdb.Publish(ctx, ch, fmt.Sprintf("v1 %s %d 1\n1-1 %d\n%s", "00000000deadbeef", 1, len(forged), forged))
		}, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			f.t = t
			s.write()
			f.next()
			f.next()
			errs := f.takeErrs()
			if s.check != nil {
				if err := s.check(errs); err != nil {
					t.Error(err)
				}
			}
			t.Logf("reported: %v", errs)
		})
	}
	f.t = t
	f.mu.Lock()
	defer f.mu.Unlock()
	want := make([]int, f.n)
	for i := range want {
		want[i] = i + 1
	}
	// A forged frame carrying exactly the next seq is delivered: live
	// frames are not authenticated (restrict PUBLISH on the namespace's
	// channels with the ACL). When the real event with that seq comes, the
	// conflict is reported and the real one is delivered too.
	var real []int
	forgedSeen := 0
	for _, n := range f.got {
		if n == -1 {
			forgedSeen++
			continue
		}
		real = append(real, n)
	}
	if fmt.Sprint(real) != fmt.Sprint(want) || forgedSeen > 1 {
		t.Errorf("handled %v, want %v (and at most the one forged next-seq event): a valid event was lost or a forged one got through", f.got, want)
	}
	for _, l := range f.loss {
		t.Errorf("a hostile write produced a loss report: %v", l)
	}
	if _, err := f.tr.Range(ctx, "bad", transport.Position{}, 1000); err != nil {
		t.Error(err)
	}
	if js := f.tr.Stats().JunkEntries; js == 0 {
		t.Error("junk log entries not counted")
	}
}

func wantNotInBacklog(errs []error) error {
	for _, err := range errs {
		if strings.Contains(err.Error(), "not in the backlog") {
			return nil
		}
	}
	return fmt.Errorf("no not-in-the-backlog report in %v", errs)
}

func wantMalformed(errs []error) error {
	for _, err := range errs {
		if strings.Contains(err.Error(), "malformed frame") {
			return nil
		}
	}
	return fmt.Errorf("no malformed-frame report in %v", errs)
}

// TestBadInputThroughThePublicAPI: what the publishing API refuses, with
// the error it names, and what it lets through to be set aside.
func TestBadInputThroughThePublicAPI(t *testing.T) {
	srv := redistest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := newBadFixture(t, srv)
	defer f.close()
	ctx := context.Background()
	f.next()

	refused := []struct {
		name    string
		publish func() error
		want    error
	}{
		{"10 MiB event", func() error {
			_, err := f.pub.Publish(ctx, Blob{Pad: strings.Repeat("x", 10<<20)})
			return err
		}, transport.ErrTooLarge},
		{"deeply nested data", func() error {
			e, err := envelope.NewRaw("bad.good", json.RawMessage(nested(100_000)))
			if err != nil {
				return err
			}
			_, err = f.pub.PublishEnvelope(ctx, "bad", e)
			return err
		}, envelope.ErrSyntax},
		{"truncated JSON data", func() error {
			e, err := envelope.NewRaw("bad.good", json.RawMessage(`{"n":`))
			if err != nil {
				return err
			}
			_, err = f.pub.PublishEnvelope(ctx, "bad", e)
			return err
		}, envelope.ErrSyntax},
		{"invalid UTF-8 data", func() error {
			e, err := envelope.NewRaw("bad.good", json.RawMessage("\"\xff\""))
			if err != nil {
				return err
			}
			_, err = f.pub.PublishEnvelope(ctx, "bad", e)
			return err
		}, envelope.ErrSyntax},
		{"payload that is not JSON", func() error {
			_, err := f.pub.Publish(ctx, Unencodable{C: make(chan int)})
			return err
		}, nil},
	}
	for _, c := range refused {
		err := c.publish()
		switch {
		case err == nil:
			t.Errorf("%s: published, want an error", c.name)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want an error wrapping %v", c.name, err, c.want)
		default:
			t.Logf("%s: %.160v", c.name, err)
		}
	}
	f.next()

	// Accepted, then set aside by the subscriber with the right error.
	setAside := []struct {
		name string
		ev   bus.Event
		want error
	}{
		{"unknown event type", Stranger{}, bus.ErrUnknownType},
		{"version 1 without upcaster", OldGood{N: 1}, bus.ErrNoUpcaster},
	}
	for _, c := range setAside {
		pos, err := f.pub.Publish(ctx, c.ev)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f.next()
		var de *bus.DeliveryError
		found := false
		for _, err := range f.takeErrs() {
			if errors.As(err, &de) && errors.Is(err, c.want) && de.Position == pos {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no *bus.DeliveryError wrapping %v at %v", c.name, c.want, pos)
		}
	}
	// Invalid UTF-8 inside a Go string is replaced by U+FFFD on encoding:
	// the event is valid JSON and is delivered.
	if _, err := f.pub.Publish(ctx, Blob{Pad: "\xff\xfe"}, bus.ToTopic("bad.blob")); err != nil {
		t.Errorf("a string with invalid UTF-8: %v", err)
	}
}

// Blob is an event with a free-form field.
type Blob struct {
	Pad string `json:"pad"`
}

func (Blob) EventType() string { return "bad.blob" }

// Unencodable cannot be encoded as JSON.
type Unencodable struct {
	C chan int `json:"c"`
}

func (Unencodable) EventType() string { return "bad.unencodable" }

// TestPanickingAndHangingHandlers: a handler that panics is retried (the
// panic becomes an error) and the topic goes on once it stops panicking; a
// handler that hangs on one event holds up that topic only — other topics
// go on — and with Timeout + Retry + DeadLetter middleware the hung event
// is dead-lettered and its topic goes on too.
func TestPanickingAndHangingHandlers(t *testing.T) {
	srv := redistest.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	rdb := redis.NewClient(clientOptions(srv.Addr()))
	defer rdb.Close()
	tr, err := redistransport.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	pub, _ := bus.New(tr)
	defer pub.Close()
	ctx := context.Background()

	var mu sync.Mutex
	got := map[string][]int{}
	var errs []error
	panics := 0
	record := func(topic string, n int) {
		mu.Lock()
		got[topic] = append(got[topic], n)
		mu.Unlock()
	}
	handler := func() bus.HandlerFunc {
		return func(ctx context.Context, m *bus.Message) error {
			var e Good
			_ = json.Unmarshal(m.Data, &e)
			switch {
			case e.N == -1: // panics on its first two attempts
				mu.Lock()
				panics++
				p := panics
				mu.Unlock()
				if p <= 2 {
					panic("handler bug")
				}
			case e.N == -2: // hangs until its ctx ends
				<-ctx.Done()
				return ctx.Err()
			}
			record(m.Topic, e.N)
			return nil
		}
	}

	// Plain bus: the follower retries a panicking call; a hung call
	// blocks its topic only.
	b1, _ := bus.New(tr, followerOptions(), bus.WithOnError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }))
	b1.Handle("hang.a", handler())
	b1.Handle("hang.b", handler())
	done1 := make(chan error, 1)
	go func() { done1 <- b1.Run(ctx) }()

	// With Timeout (100 ms per attempt), Retry (3 attempts) and
	// DeadLetter, a hung event is dead-lettered and the topic goes on.
	b2, _ := bus.New(tr, followerOptions(), bus.WithMiddleware(middleware.Default(middleware.Options{
		Timeout:    100 * time.Millisecond,
		Retry:      middleware.RetryConfig{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond},
		DeadLetter: pub,
	})...))
	b2.Handle("hang.c", handler())
	done2 := make(chan error, 1)
	go func() { done2 <- b2.Run(ctx) }()

	publish := func(topic string, n int) {
		if _, err := pub.Publish(ctx, Good{N: n}, bus.ToTopic(topic)); err != nil {
			t.Fatal(err)
		}
	}
	count := func(topic string) int { mu.Lock(); defer mu.Unlock(); return len(got[topic]) }
	// Both buses start NewOnly: publish only once they are subscribed.
	readyCtx, cancelReady := context.WithTimeout(ctx, waitTimeout)
	defer cancelReady()
	for _, b := range []*bus.Bus{b1, b2} {
		if err := b.Ready(readyCtx); err != nil {
			t.Fatalf("subscriber not ready after %v: %v", waitTimeout, err)
		}
	}
	publish("hang.a", 1)
	publish("hang.a", -1) // panics twice, then handled
	publish("hang.a", 2)
	waitUntil(t, "hang.a to go on after the panics", func() bool { return count("hang.a") == 3 })
	mu.Lock()
	var pe *replay.PanicError
	sawPanic := false
	for _, err := range errs {
		sawPanic = sawPanic || errors.As(err, &pe)
	}
	mu.Unlock()
	if !sawPanic {
		t.Error("the panic was not reported as a *replay.PanicError")
	}

	publish("hang.b", 1)
	publish("hang.b", -2) // hangs until the bus stops
	publish("hang.b", 3)
	publish("hang.c", 1)
	publish("hang.c", -2) // times out thrice, dead-lettered
	publish("hang.c", 3)
	for i := 10; i < 20; i++ {
		publish("hang.a", i)
	}
	waitUntil(t, "hang.a to go on while hang.b hangs", func() bool { return count("hang.a") == 13 })
	waitUntil(t, "hang.c to go on after dead-lettering", func() bool { return count("hang.c") == 2 })
	waitUntil(t, "hang.b to handle its first event", func() bool { return count("hang.b") >= 1 })
	if n := count("hang.b"); n != 1 {
		t.Errorf("hang.b handled %d events behind its hung one, want 1 (the topic waits)", n)
	}
	if head, err := tr.Head(ctx, "hang.c.dead"); err != nil || head.Seq != 1 {
		t.Errorf("dead-letter topic hang.c.dead head %v, %v; want one event", head, err)
	}
	// Stopping cancels the hung handler's ctx (after the drain timeout).
	b1.Close()
	b2.Close()
	for _, d := range []chan error{done1, done2} {
		if err := <-d; err != nil {
			t.Error(err)
		}
	}
}
