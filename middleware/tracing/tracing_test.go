package tracing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/middleware/tracing"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport/redistransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustNew(t *testing.T, opts ...tracing.Option) *tracing.Tracing {
	t.Helper()
	trc, err := tracing.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return trc
}

// New refuses invalid options instead of replacing them, and names every
// problem at once.
func TestNewInvalidOptions(t *testing.T) {
	_, err := tracing.New(tracing.WithTracerProvider(nil), tracing.WithPropagator(nil),
		tracing.WithReplayMode(7), tracing.WithLinkAfter(-time.Second))
	if !errors.Is(err, bus.ErrInvalidOption) {
		t.Fatalf("err = %v, want one wrapping bus.ErrInvalidOption", err)
	}
	for _, want := range []string{"tracer provider", "propagator", "replay mode 7", "link age -1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %q", err, want)
		}
	}
	if _, err := tracing.New(tracing.WithLinkAfter(0), tracing.WithReplayMode(tracing.ReplayChild)); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
}

type OrderPlaced struct {
	ID string `json:"id"`
}

func (OrderPlaced) EventType() string { return "order.placed" }

type InvoiceSent struct {
	Order string `json:"order"`
}

func (InvoiceSent) EventType() string { return "invoice.sent" }

var fast = bus.WithFollowerOptions(
	replay.WithHeadCheck(20*time.Millisecond),
	replay.WithBackoff(time.Millisecond, 20*time.Millisecond, 2),
	replay.WithCheckpointEvery(1, 10*time.Millisecond),
)

// service is one side: its own Redis client, transport, bus and tracer
// provider recording into sr.
type service struct {
	b    *bus.Bus
	tr   *redistransport.Transport
	done chan error
}

func newService(t *testing.T, srv *redistest.Server, tp trace.TracerProvider, opts ...bus.Option) *service {
	return newServiceT(t, srv, mustNew(t, tracing.WithTracerProvider(tp)), opts...)
}

func newServiceT(t *testing.T, srv *redistest.Server, trc *tracing.Tracing, opts ...bus.Option) *service {
	t.Helper()
	tr, err := redistransport.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(tr, append([]bus.Option{fast, bus.WithPublishHook(trc.PublishHook), bus.WithMiddleware(trc.Middleware)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s := &service{b: b, tr: tr}
	t.Cleanup(func() { s.stop(t); tr.Close() })
	return s
}

func (s *service) run(t *testing.T) {
	t.Helper()
	s.done = make(chan error, 1)
	go func() { s.done <- s.b.Run(context.Background()) }()
	// Ready: subscribed with the start resolved, so that an event
	// published next is delivered live (before, under load, it could
	// come from the backlog, replayed, and the tests' span shapes differ).
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := s.b.Ready(ctx); err != nil {
		t.Fatalf("subscriptions not ready after %v: %v", waitTimeout, err)
	}
}

func (s *service) stop(t *testing.T) {
	s.b.Close()
	if s.done != nil {
		if err := <-s.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		s.done = nil
	}
}

// waitTimeout bounds every wait: generous, for a loaded 2-core machine
// running -race.
const waitTimeout = 60 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newProvider() (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	sr := tracetest.NewSpanRecorder()
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr)), sr
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestOneTraceAcrossServices: checkout publishes order.placed inside its
// own span; billing, another bus on another connection, handles it and
// publishes invoice.sent. Through real Redis, every span is in one trace:
// checkout → send order.placed → process order.placed → send invoice.sent.
func TestOneTraceAcrossServices(t *testing.T) {
	srv := redistest.Start(t)
	pubTP, pubRec := newProvider()
	subTP, subRec := newProvider()
	defer pubTP.Shutdown(context.Background())
	defer subTP.Shutdown(context.Background())

	checkout := newService(t, srv, pubTP, bus.WithSource("checkout"))
	billing := newService(t, srv, subTP, bus.WithSource("billing"))
	handled := make(chan string, 1)
	_, err := bus.Subscribe(billing.b, func(ctx context.Context, e *OrderPlaced) error {
		if _, err := billing.b.Publish(ctx, InvoiceSent{Order: e.ID}); err != nil {
			return err
		}
		m, _ := bus.MessageFrom(ctx)
		handled <- m.TraceParent
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	billing.run(t)

	ctx, root := pubTP.Tracer("test").Start(context.Background(), "checkout")
	if _, err := checkout.b.Publish(ctx, OrderPlaced{ID: "o-1"}); err != nil {
		t.Fatal(err)
	}
	root.End()
	var tp string
	select {
	case tp = <-handled:
	case <-time.After(waitTimeout):
		t.Fatal("order not handled")
	}
	billing.stop(t)

	traceID := root.SpanContext().TraceID()
	if !strings.Contains(tp, traceID.String()) {
		t.Fatalf("envelope traceparent %q does not carry trace %s", tp, traceID)
	}
	send := byName(pubRec.Ended(), "send order.placed")
	process := byName(subRec.Ended(), "process order.placed")
	followUp := byName(subRec.Ended(), "send invoice.sent")
	if len(send) != 1 || len(process) != 1 || len(followUp) != 1 {
		t.Fatalf("spans: send %d, process %d, follow-up %d", len(send), len(process), len(followUp))
	}
	chain := []struct {
		span   sdktrace.ReadOnlySpan
		parent trace.SpanContext
		kind   trace.SpanKind
	}{
		{send[0], root.SpanContext(), trace.SpanKindProducer},
		{process[0], send[0].SpanContext(), trace.SpanKindConsumer},
		{followUp[0], process[0].SpanContext(), trace.SpanKindProducer},
	}
	for _, c := range chain {
		if c.span.SpanContext().TraceID() != traceID {
			t.Errorf("%s: trace %s, want %s", c.span.Name(), c.span.SpanContext().TraceID(), traceID)
		}
		if c.span.Parent().SpanID() != c.parent.SpanID() {
			t.Errorf("%s: parent %s, want %s", c.span.Name(), c.span.Parent().SpanID(), c.parent.SpanID())
		}
		if c.span.SpanKind() != c.kind {
			t.Errorf("%s: kind %v, want %v", c.span.Name(), c.span.SpanKind(), c.kind)
		}
		if attr(c.span, "messaging.system") != "redis" || attr(c.span, "messaging.message.id") == "" {
			t.Errorf("%s: attributes %v", c.span.Name(), c.span.Attributes())
		}
	}
	// The first event of a new topic comes from the backlog (the follower
	// repairs from it); being fresh, it continues the trace.
	if !process[0].Parent().IsRemote() || len(process[0].Links()) != 0 {
		t.Errorf("fresh consumer span: remote parent %v, links %v", process[0].Parent().IsRemote(), process[0].Links())
	}
	if attr(process[0], "messaging.destination.name") != "order.placed" || attr(process[0], "messaging.operation.type") != "process" || attr(send[0], "messaging.operation.type") != "send" {
		t.Errorf("attributes: %v / %v", process[0].Attributes(), send[0].Attributes())
	}
	if attr(send[0], "durabus.seq") != "1" {
		t.Errorf("producer span seq = %q", attr(send[0], "durabus.seq"))
	}
}

// TestReplayLinksToProducer: a durable consumer handles one event live,
// stops, misses two, and on restart gets them replayed from the backlog
// at least a link age (1 s) later: their consumer spans start new traces
// linked to the producer spans and say they were replayed; the live one
// continued its producer's trace. (On a loaded machine the live one may
// reach the handler through the backlog, the follower's gap repair: being
// fresh, it continues its trace all the same.)
func TestReplayLinksToProducer(t *testing.T) {
	srv := redistest.Start(t)
	pubTP, pubRec := newProvider()
	subTP, subRec := newProvider()
	defer pubTP.Shutdown(context.Background())
	defer subTP.Shutdown(context.Background())
	checkout := newService(t, srv, pubTP)
	if _, err := checkout.b.Publish(context.Background(), OrderPlaced{ID: "before"}); err != nil {
		t.Fatal(err) // the topic exists: the next event is delivered live
	}
	const linkAfter = time.Second
	subTrc := mustNew(t, tracing.WithTracerProvider(subTP), tracing.WithLinkAfter(linkAfter))

	var mu sync.Mutex
	var seen []string
	subscribe := func(s *service) {
		if _, err := bus.Subscribe(s.b, func(_ context.Context, e *OrderPlaced) error {
			mu.Lock()
			seen = append(seen, e.ID)
			mu.Unlock()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	first := newServiceT(t, srv, subTrc, bus.WithConsumer("billing"))
	subscribe(first)
	first.run(t)
	if _, err := checkout.b.Publish(context.Background(), OrderPlaced{ID: "live"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live event", func() bool { return count() == 1 })
	first.stop(t) // saves the checkpoint

	for i := range 2 {
		if _, err := checkout.b.Publish(context.Background(), OrderPlaced{ID: fmt.Sprint("missed-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Let the missed events age past the link age (a precondition, not
	// an assertion: waiting longer changes nothing).
	time.Sleep(linkAfter + 100*time.Millisecond)
	second := newServiceT(t, srv, subTrc, bus.WithConsumer("billing"))
	subscribe(second)
	second.run(t)
	waitFor(t, "replayed events", func() bool { return count() == 3 })
	second.stop(t)

	producers := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range byName(pubRec.Ended(), "send order.placed") {
		producers[s.SpanContext().SpanID()] = s
	}
	process := byName(subRec.Ended(), "process order.placed")
	if len(process) != 3 || len(producers) != 4 {
		t.Fatalf("consumer spans %d, producer spans %d; want 3 and 4", len(process), len(producers))
	}
	replayed := 0
	for _, s := range process {
		// Seq 1 was published before the first start (NewOnly), 2 live,
		// 3 and 4 while the consumer was away.
		if seq := attr(s, "durabus.seq"); seq == "3" || seq == "4" {
			if attr(s, "durabus.replayed") != "true" {
				t.Errorf("span of seq %s: durabus.replayed %q, want true", seq, attr(s, "durabus.replayed"))
			}
			replayed++
			if s.Parent().IsValid() {
				t.Errorf("replayed span %s has parent %s, want a new root", s.SpanContext().SpanID(), s.Parent().SpanID())
			}
			if len(s.Links()) != 1 {
				t.Fatalf("replayed span links = %v", s.Links())
			}
			p, ok := producers[s.Links()[0].SpanContext.SpanID()]
			if !ok || s.Links()[0].SpanContext.TraceID() != p.SpanContext().TraceID() {
				t.Errorf("link %v does not point at a producer span", s.Links()[0].SpanContext)
			}
			if s.SpanContext().TraceID() == p.SpanContext().TraceID() {
				t.Errorf("replayed span continued the producer's trace")
			}
			if attr(s, "messaging.message.id") != attr(p, "messaging.message.id") {
				t.Errorf("link points at the wrong event")
			}
			continue
		}
		p, ok := producers[s.Parent().SpanID()]
		if !ok || s.SpanContext().TraceID() != p.SpanContext().TraceID() || attr(s, "durabus.seq") != "2" || len(s.Links()) != 0 {
			t.Errorf("live span not a child of its producer span: %v", s.Attributes())
		}
	}
	if replayed != 2 {
		t.Fatalf("replayed spans = %d, want 2", replayed)
	}
}

func TestReplayAsChild(t *testing.T) {
	tp, rec := newProvider()
	defer tp.Shutdown(context.Background())
	trc := mustNew(t, tracing.WithTracerProvider(tp), tracing.WithReplayMode(tracing.ReplayChild), tracing.WithConsumerGroup("billing"))
	e, _ := envelope.New("order.placed", OrderPlaced{ID: "x"})
	_, done := trc.PublishHook(context.Background(), "orders", e)
	done(bus.Message{}.Position, nil)
	h := trc.Middleware(bus.HandlerFunc(func(context.Context, *bus.Message) error { return fmt.Errorf("failed") }))
	_ = h.Handle(context.Background(), &bus.Message{Envelope: e, Topic: "orders", Replayed: true})
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("spans %d", len(spans))
	}
	c := spans[1]
	if c.Parent().SpanID() != spans[0].SpanContext().SpanID() || len(c.Links()) != 0 || attr(c, "durabus.replayed") != "true" {
		t.Fatalf("ReplayChild span: parent %v links %v", c.Parent(), c.Links())
	}
	if c.Status().Code.String() != "Error" || attr(c, "messaging.consumer.group.name") != "billing" {
		t.Fatalf("status %v attrs %v", c.Status(), c.Attributes())
	}
}

func TestPublishHookKeepsForwardedTrace(t *testing.T) {
	tp, rec := newProvider()
	defer tp.Shutdown(context.Background())
	trc := mustNew(t, tracing.WithTracerProvider(tp))
	ctx, root := tp.Tracer("t").Start(context.Background(), "origin")
	e, _ := envelope.New("order.placed", OrderPlaced{ID: "x"})
	_, done := trc.PublishHook(ctx, "orders", e)
	done(bus.Message{}.Position, nil)
	root.End()
	// A requeue or forward: no span in ctx, the envelope carries one.
	_, done = trc.PublishHook(context.Background(), "orders", e)
	done(bus.Message{}.Position, fmt.Errorf("redis down"))
	spans := byName(rec.Ended(), "send orders")
	if len(spans) != 2 || spans[1].SpanContext().TraceID() != root.SpanContext().TraceID() || spans[1].Parent().SpanID() != spans[0].SpanContext().SpanID() {
		t.Fatalf("re-published event did not continue its trace")
	}
	if spans[1].Status().Code.String() != "Error" || !strings.Contains(e.TraceParent, spans[1].SpanContext().SpanID().String()) {
		t.Fatalf("status %v, traceparent %q", spans[1].Status(), e.TraceParent)
	}
}

func TestCarrier(t *testing.T) {
	e := &envelope.Envelope{}
	c := tracing.Carrier{E: e}
	c.Set("traceparent", "tp")
	c.Set("tracestate", "ts")
	c.Set("baggage", "k=v")
	if e.TraceParent != "tp" || e.TraceState != "ts" || e.Extensions["baggage"] != "k=v" || c.Get("baggage") != "k=v" || c.Get("traceparent") != "tp" {
		t.Fatalf("carrier: %+v", e)
	}
	if got := strings.Join(c.Keys(), ","); got != "baggage,traceparent,tracestate" {
		t.Fatalf("keys = %s", got)
	}
}
