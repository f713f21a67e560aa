// Command tracing shows one OpenTelemetry trace crossing two services over
// Redis: checkout publishes order.placed inside a span, billing handles it
// and publishes invoice.sent, checkout handles that. Every span is printed
// when it ends, one per line: trace id, span id, parent span id, service,
// kind, name and duration; all spans of one order share a trace id, from
// the first publish to the last handler. With --json each span is the
// stdout exporter's JSON object instead, one per line.
//
//	go run ./examples/tracing                  # starts a private redis-server
//	go run ./examples/tracing --redis redis://localhost:6379/0
//	go run ./examples/tracing --json | jq .
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/internal/redisproc"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/middleware/tracing"
	"github.com/durabus/durabus/transport/redistransport"
)

// OrderPlaced is published by checkout.
type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

// EventType names the event.
func (OrderPlaced) EventType() string { return "example.order.placed" }

// InvoiceSent is published by billing for every order.
type InvoiceSent struct {
	Order string `json:"order"`
}

// EventType names the event.
func (InvoiceSent) EventType() string { return "example.invoice.sent" }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tracing:", err)
		os.Exit(1)
	}
}

// service is one process's worth of durabus: client, transport, bus and
// tracer provider.
type service struct {
	name string
	rdb  *redis.Client
	tr   *redistransport.Transport
	tp   *sdktrace.TracerProvider
	b    *bus.Bus
}

func newService(name, url string, out io.Writer, asJSON bool) (*service, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	s := &service{name: name, rdb: redis.NewClient(opt)}
	var exp sdktrace.SpanExporter = spanPrinter{w: out, service: name}
	if asJSON {
		if exp, err = stdouttrace.New(stdouttrace.WithWriter(out)); err != nil {
			return nil, err
		}
	}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", name))))
	if s.tr, err = redistransport.New(s.rdb); err != nil {
		return nil, err
	}
	trc, err := tracing.New(tracing.WithTracerProvider(s.tp), tracing.WithConsumerGroup(name))
	if err != nil {
		return nil, err
	}
	s.b, err = bus.New(s.tr, bus.WithSource(name), bus.WithPublishHook(trc.PublishHook),
		bus.WithMiddleware(middleware.Default(middleware.Options{Tracing: trc.Middleware})...))
	return s, err
}

func (s *service) close(ctx context.Context) {
	s.b.Close()
	s.tr.Close()
	_ = s.tp.Shutdown(ctx)
	s.rdb.Close()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tracing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("redis", "", "Redis URL (default: start a private redis-server from PATH)")
	orders := fs.Int("orders", 3, "orders to place")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	asJSON := fs.Bool("json", false, "print each span as the stdout exporter's JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *url == "" {
		srv, err := redisproc.Start(ctx)
		if err != nil {
			return err
		}
		defer srv.Stop()
		*url = srv.URL()
		fmt.Fprintln(stderr, "started redis-server on", srv.Addr())
	}
	out := exredis.NewSyncWriter(stdout) // the two exporters write concurrently
	if !*asJSON {
		fmt.Fprintf(out, "%-32s  %-16s  %-16s  %-8s  %-8s  %-28s  %s\n", "TRACE", "SPAN", "PARENT", "SERVICE", "KIND", "NAME", "DURATION")
	}
	checkout, err := newService("checkout", *url, out, *asJSON)
	if err != nil {
		return err
	}
	defer checkout.close(context.WithoutCancel(ctx))
	billing, err := newService("billing", *url, out, *asJSON)
	if err != nil {
		return err
	}
	defer billing.close(context.WithoutCancel(ctx))

	_, err = bus.Subscribe(billing.b, func(ctx context.Context, o *OrderPlaced) error {
		_, err := billing.b.Publish(ctx, InvoiceSent{Order: o.ID}) // ctx carries the consumer span
		return err
	})
	if err != nil {
		return err
	}
	invoices := make(chan string, *orders)
	_, err = bus.Subscribe(checkout.b, func(_ context.Context, inv *InvoiceSent) error {
		invoices <- inv.Order
		return nil
	})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	runErr := make(chan error, 2)
	for _, s := range []*service{checkout, billing} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.b.Run(ctx); err != nil {
				runErr <- fmt.Errorf("%s: %w", s.name, err)
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	if err := waitReady(ctx, checkout.b, billing.b); err != nil {
		return err
	}

	tracer := checkout.tp.Tracer("examples/tracing")
	for i := 1; i <= *orders; i++ {
		octx, span := tracer.Start(ctx, "place order")
		_, err := checkout.b.Publish(octx, OrderPlaced{ID: fmt.Sprint("o-", i), Total: 10 * i})
		fmt.Fprintf(stderr, "order o-%d: trace %s\n", i, span.SpanContext().TraceID())
		span.End()
		if err != nil {
			return err
		}
	}
	for range *orders {
		select {
		case id := <-invoices:
			fmt.Fprintln(stderr, "invoice sent for", id)
		case err := <-runErr:
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for invoices: %w", ctx.Err())
		}
	}
	return nil
}

// spanPrinter is a span exporter that prints each span on one line, in
// columns under the header run prints.
type spanPrinter struct {
	w       io.Writer
	service string
}

func (p spanPrinter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	for _, s := range spans {
		parent := "-"
		if s.Parent().IsValid() {
			parent = s.Parent().SpanID().String()
		}
		if _, err := fmt.Fprintf(p.w, "%-32s  %-16s  %-16s  %-8s  %-8s  %-28s  %v\n", s.SpanContext().TraceID(), s.SpanContext().SpanID(),
			parent, p.service, s.SpanKind(), s.Name(), s.EndTime().Sub(s.StartTime()).Round(time.Microsecond)); err != nil {
			return err
		}
	}
	return nil
}

func (spanPrinter) Shutdown(context.Context) error { return nil }

// waitReady waits until every subscription of the buses is live, so that
// events published from now on are delivered.
func waitReady(ctx context.Context, bs ...*bus.Bus) error {
	for {
		ready := true
		for _, b := range bs {
			for _, st := range b.Status() {
				ready = ready && st.Stats.Connected && len(st.Stats.Topics) > 0
			}
		}
		if ready {
			time.Sleep(100 * time.Millisecond) // the followers resolve their start
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("subscriptions did not come up")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
