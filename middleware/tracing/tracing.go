// Package tracing connects durabus to OpenTelemetry tracing: a producer
// span for every published event, whose W3C trace context travels in the
// envelope's traceparent and tracestate attributes, and a consumer span for
// every handler call that continues that trace — or, for an event replayed
// from the backlog, starts a new trace linked to the producer's span.
//
// It uses the OpenTelemetry API only; the application installs the SDK.
//
//	tr, err := tracing.New(tracing.WithTracerProvider(tp))
//	b, err := bus.New(t, bus.WithPublishHook(tr.PublishHook), bus.WithMiddleware(tr.Middleware))
package tracing

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// ScopeName is the instrumentation scope name of the tracer.
const ScopeName = "github.com/durabus/durabus/middleware/tracing"

// Attributes set besides the messaging semantic conventions.
const (
	// AttrReplayed is true on the consumer span of an event delivered from
	// the backlog (catch-up or gap repair) rather than live.
	AttrReplayed = attribute.Key("durabus.replayed")
	// AttrSeq is the event's sequence number in its topic.
	AttrSeq = attribute.Key("durabus.seq")
	// AttrEpoch is the epoch of the topic's log.
	AttrEpoch = attribute.Key("durabus.epoch")
	// AttrEventType is the CloudEvents type of the event.
	AttrEventType = attribute.Key("cloudevents.event_type")
)

// ReplayMode says how the consumer span of a replayed event relates to the
// producer span.
type ReplayMode uint8

const (
	// ReplayLink starts a new trace for a replayed event published at least
	// the link age ago (WithLinkAfter), linked to the producer span. The
	// default: a replay can come hours after the publish (a new subscriber
	// starting at the beginning, a restart), and as a child it would
	// stretch a long-finished trace and mix a later re-processing into it;
	// the link keeps the way back. Younger replayed events — the follower
	// also reads from the backlog to repair a gap, after a short reconnect,
	// and for the first event of a new topic — continue the trace.
	ReplayLink ReplayMode = iota
	// ReplayChild continues the producer's trace for every replayed event,
	// as for a live one; the span still carries durabus.replayed=true.
	ReplayChild
)

// DefaultLinkAfter is the default link age of ReplayLink.
const DefaultLinkAfter = time.Minute

// Option configures New.
type Option func(*Tracing)

// WithTracerProvider sets the tracer provider; not nil. Default
// otel.GetTracerProvider() at the time New is called.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(t *Tracing) {
		if tp == nil {
			t.invalid("nil tracer provider")
		}
		t.tp = tp
	}
}

// WithPropagator sets the propagator that writes and reads the envelope's
// trace attributes. Default propagation.TraceContext{} (W3C traceparent
// and tracestate); not nil.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(t *Tracing) {
		if p == nil {
			t.invalid("nil propagator")
		}
		t.prop = p
	}
}

// WithReplayMode sets how replayed events are traced: ReplayLink or
// ReplayChild. Default ReplayLink.
func WithReplayMode(m ReplayMode) Option {
	return func(t *Tracing) {
		if m != ReplayLink && m != ReplayChild {
			t.invalid("replay mode %d: want ReplayLink or ReplayChild", m)
		}
		t.replay = m
	}
}

// WithLinkAfter sets the age (time since the event's publish time) from
// which ReplayLink starts a new, linked trace for a replayed event; 0 links
// every replayed event; negative is invalid. Default DefaultLinkAfter.
func WithLinkAfter(d time.Duration) Option {
	return func(t *Tracing) {
		if d < 0 {
			t.invalid("link age %v: want 0 or more", d)
		}
		t.linkAfter = d
	}
}

// WithConsumerGroup sets messaging.consumer.group.name on consumer spans,
// usually the bus's consumer name. Default none.
func WithConsumerGroup(name string) Option { return func(t *Tracing) { t.group = name } }

// Tracing makes producer and consumer spans. Its PublishHook and
// Middleware methods are a bus.PublishHook and a bus.Middleware. Safe for
// concurrent use.
type Tracing struct {
	tp        trace.TracerProvider
	prop      propagation.TextMapPropagator
	replay    ReplayMode
	linkAfter time.Duration
	group     string
	tracer    trace.Tracer
	errs      []error // of the options, for New
}

func (t *Tracing) invalid(format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf("tracing: %w: "+format, append([]any{bus.ErrInvalidOption}, args...)...))
}

// New returns a Tracing. Invalid options are reported all at once, in an
// error wrapping bus.ErrInvalidOption.
func New(opts ...Option) (*Tracing, error) {
	t := &Tracing{linkAfter: DefaultLinkAfter, tp: otel.GetTracerProvider(), prop: propagation.TraceContext{}}
	for _, o := range opts {
		o(t)
	}
	if err := errors.Join(t.errs...); err != nil {
		return nil, err
	}
	t.errs = nil
	t.tracer = t.tp.Tracer(ScopeName)
	return t, nil
}

var (
	_ bus.PublishHook = (*Tracing)(nil).PublishHook
	_ bus.Middleware  = (*Tracing)(nil).Middleware
)

// Carrier adapts an envelope to propagation.TextMapCarrier: "traceparent"
// and "tracestate" are the envelope's fields, other keys its extensions.
type Carrier struct{ E *envelope.Envelope }

// Get returns the value of key.
func (c Carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.E.TraceParent
	case "tracestate":
		return c.E.TraceState
	}
	return c.E.Extensions[key]
}

// Set sets key to value.
func (c Carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.E.TraceParent = value
	case "tracestate":
		c.E.TraceState = value
	default:
		if c.E.Extensions == nil {
			c.E.Extensions = make(map[string]string)
		}
		c.E.Extensions[key] = value
	}
}

// Keys lists the keys present.
func (c Carrier) Keys() []string {
	var ks []string
	if c.E.TraceParent != "" {
		ks = append(ks, "traceparent")
	}
	if c.E.TraceState != "" {
		ks = append(ks, "tracestate")
	}
	for k := range c.E.Extensions {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func baseAttrs(topic string, e *envelope.Envelope) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemKey.String("redis"),
		semconv.MessagingDestinationName(topic),
		semconv.MessagingMessageID(e.ID),
		AttrEventType.String(e.Type),
	}
}

// PublishHook starts a producer span "send <topic>" for the event, as a
// child of the span in ctx — or, when ctx has none and the envelope already
// carries a trace context (a requeued or forwarded event), of that one —
// writes the span's context into the envelope, and ends the span with the
// publish's outcome.
func (t *Tracing) PublishHook(ctx context.Context, topic string, e *envelope.Envelope) (context.Context, func(transport.Position, error)) {
	if !trace.SpanContextFromContext(ctx).IsValid() && e.TraceParent != "" {
		ctx = t.prop.Extract(ctx, Carrier{E: e})
	}
	ctx, span := t.tracer.Start(ctx, "send "+topic,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(baseAttrs(topic, e)...),
		trace.WithAttributes(semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish")))
	e.TraceParent, e.TraceState = "", ""
	t.prop.Inject(ctx, Carrier{E: e})
	return ctx, func(pos transport.Position, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(AttrSeq.Int64(int64(pos.Seq)), AttrEpoch.String(pos.Epoch))
		}
		span.End()
	}
}

// Middleware starts a consumer span "process <topic>" around the handler
// call: a child of the producer span for a live event, and for an event
// replayed from the backlog a minute or more after its publish a new root
// linked to it (see ReplayMode and WithLinkAfter); durabus.replayed says
// whether the event came from the backlog.
// Events published by the handler with its ctx continue the consumer's
// trace. A failed call sets the span's status to error.
func (t *Tracing) Middleware(next bus.Handler) bus.Handler {
	return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
		producer := trace.SpanContextFromContext(t.prop.Extract(context.Background(), Carrier{E: m.Envelope}))
		attrs := append(baseAttrs(m.Topic, m.Envelope),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			AttrSeq.Int64(int64(m.Position.Seq)),
			AttrEpoch.String(m.Position.Epoch),
			AttrReplayed.Bool(m.Replayed))
		if t.group != "" {
			attrs = append(attrs, semconv.MessagingConsumerGroupName(t.group))
		}
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
		parent := ctx
		switch {
		case !producer.IsValid():
			opts = append(opts, trace.WithNewRoot())
		case m.Replayed && t.replay == ReplayLink && time.Since(m.Time) >= t.linkAfter:
			opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{
				SpanContext: producer,
				Attributes:  []attribute.KeyValue{AttrReplayed.Bool(true)},
			}))
		default:
			parent = trace.ContextWithRemoteSpanContext(ctx, producer)
		}
		ctx, span := t.tracer.Start(parent, "process "+m.Topic, opts...)
		defer span.End()
		err := next.Handle(ctx, m)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	})
}
