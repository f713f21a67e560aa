// Package metrics records durabus metrics with the OpenTelemetry metric
// API: publishes, handler durations and outcomes, and the follower's
// counters and consumer lag. It lives apart from package middleware so that
// the core middleware carry no OpenTelemetry dependency.
//
//	rec, _ := metrics.New(otel.GetMeterProvider())
//	b, _ := bus.New(t, bus.WithPublishHook(rec.PublishHook),
//		bus.WithMiddleware(middleware.Default(middleware.Options{Metrics: rec.Middleware})...))
//	reg, _ := rec.Observe(b)
package metrics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/transport"
)

// MeterName is the instrumentation scope name of the Recorder's
// instruments.
const MeterName = "github.com/durabus/durabus/middleware/metrics"

// Attribute keys of the metrics.
const (
	// AttrTopic is the topic (OpenTelemetry messaging semantic conventions).
	AttrTopic = attribute.Key("messaging.destination.name")
	// AttrSubscription is the topic or pattern a subscription follows.
	AttrSubscription = attribute.Key("durabus.subscription")
	// AttrOutcome is a handler call's outcome: ok, error, duplicate or
	// dead_letter.
	AttrOutcome = attribute.Key("durabus.outcome")
)

// Recorder records durabus metrics with the OpenTelemetry metric API:
//
//   - durabus.published{topic}, durabus.publish.errors{topic} (PublishHook)
//   - durabus.handler.duration{topic, outcome} in seconds, and
//     durabus.dedupe.dropped{topic} (Middleware)
//   - durabus.delivered, durabus.replayed, durabus.duplicates (seen twice
//     by the follower), durabus.gaps (holes detected), durabus.repairs
//     (backlog reads that repaired them), durabus.events.lost,
//     durabus.reconnects, durabus.handler.errors — observable counters per
//     subscription, with the topic as well for a subscription to one topic
//   - durabus.consumer.lag{topic}: head seq − cursor, an observable gauge
//     (Observe).
//
// Install with bus.WithPublishHook(m.PublishHook) and
// bus.WithMiddleware(m.Middleware) — or middleware.Options.Metrics, which
// puts it right inside Tracing — then call m.Observe(b). Safe for
// concurrent use.
type Recorder struct {
	meter     metric.Meter
	published metric.Int64Counter
	pubErrors metric.Int64Counter
	duration  metric.Float64Histogram
	dropped   metric.Int64Counter
}

// New creates the instruments on mp's meter MeterName. A nil mp is an
// error wrapping bus.ErrInvalidOption.
func New(mp metric.MeterProvider) (*Recorder, error) {
	if mp == nil {
		return nil, fmt.Errorf("metrics: %w: nil MeterProvider", bus.ErrInvalidOption)
	}
	m := &Recorder{meter: mp.Meter(MeterName)}
	var errs [4]error
	m.published, errs[0] = m.meter.Int64Counter("durabus.published", metric.WithUnit("{event}"),
		metric.WithDescription("Events published, by topic."))
	m.pubErrors, errs[1] = m.meter.Int64Counter("durabus.publish.errors", metric.WithUnit("{event}"),
		metric.WithDescription("Publishes that failed, by topic."))
	m.duration, errs[2] = m.meter.Float64Histogram("durabus.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of handler calls, retries included, by topic and outcome."))
	m.dropped, errs[3] = m.meter.Int64Counter("durabus.dedupe.dropped", metric.WithUnit("{event}"),
		metric.WithDescription("Events dropped by the Dedupe middleware as already handled."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return m, nil
}

var (
	_ bus.PublishHook = (*Recorder)(nil).PublishHook
	_ bus.Middleware  = (*Recorder)(nil).Middleware
)

// PublishHook counts published events and failed publishes; it is a
// bus.PublishHook.
func (m *Recorder) PublishHook(ctx context.Context, topic string, _ *envelope.Envelope) (context.Context, func(transport.Position, error)) {
	return ctx, func(_ transport.Position, err error) {
		set := metric.WithAttributeSet(attribute.NewSet(AttrTopic.String(topic)))
		if err != nil {
			m.pubErrors.Add(context.WithoutCancel(ctx), 1, set)
			return
		}
		m.published.Add(context.WithoutCancel(ctx), 1, set)
	}
}

// Middleware records the duration and outcome of every handler call and
// counts duplicates dropped by Dedupe inside it; it is a bus.Middleware.
func (m *Recorder) Middleware(next bus.Handler) bus.Handler {
	return bus.HandlerFunc(func(ctx context.Context, msg *bus.Message) error {
		ctx, report := middleware.Track(ctx)
		start := time.Now()
		err := next.Handle(ctx, msg)
		outcome := "ok"
		switch r := report(); {
		case err != nil:
			outcome = "error"
		case r.DeadTopic != "":
			outcome = "dead_letter"
		case r.Duplicate:
			outcome = "duplicate"
			m.dropped.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(AttrTopic.String(msg.Topic)))
		}
		m.duration.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(),
			metric.WithAttributes(AttrTopic.String(msg.Topic), AttrOutcome.String(outcome)))
		return err
	})
}

// Observe registers observable instruments that read b.Status() at each
// collection: the follower counters per subscription, the consumer lag
// per topic and, for a consumer-group member (bus.WithGroup), the topics
// it owns, its rebalances, lease losses and last handover time. Unregister the returned registration when b is gone.
func (m *Recorder) Observe(b *bus.Bus) (metric.Registration, error) {
	type counter struct {
		name, desc string
		inst       metric.Int64ObservableCounter
		get        func(s bus.SubscriptionStatus) uint64
	}
	cs := []*counter{
		{name: "durabus.delivered", desc: "Events handled successfully.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Delivered }},
		{name: "durabus.replayed", desc: "Events handled that came from the backlog.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Replayed }},
		{name: "durabus.duplicates", desc: "Events the follower dropped as already delivered.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Duplicates }},
		{name: "durabus.gaps", desc: "Holes in the live sequence detected.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Gaps }},
		{name: "durabus.repairs", desc: "Backlog reads that repaired gaps.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Repairs }},
		{name: "durabus.events.lost", desc: "Events the backlog no longer held when needed.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Lost }},
		{name: "durabus.reconnects", desc: "Live connections re-established.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.Reconnects }},
		{name: "durabus.handler.errors", desc: "Failed handler calls seen by the follower.", get: func(s bus.SubscriptionStatus) uint64 { return s.Stats.HandlerErrors }},
	}
	insts := make([]metric.Observable, 0, len(cs)+1)
	for _, c := range cs {
		var err error
		if c.inst, err = m.meter.Int64ObservableCounter(c.name, metric.WithUnit("{event}"), metric.WithDescription(c.desc)); err != nil {
			return nil, err
		}
		insts = append(insts, c.inst)
	}
	lag, err := m.meter.Int64ObservableGauge("durabus.consumer.lag", metric.WithUnit("{event}"),
		metric.WithDescription("Head seq of a topic minus the subscription's cursor."))
	if err != nil {
		return nil, err
	}
	insts = append(insts, lag)
	gcs := []*counter{
		{name: "durabus.group.rebalances", desc: "Changes of this consumer-group member's share.", get: func(s bus.SubscriptionStatus) uint64 { return s.Group.Rebalances }},
		{name: "durabus.group.lease.losses", desc: "Topics whose lease this group member lost without giving them up.", get: func(s bus.SubscriptionStatus) uint64 { return s.Group.LeaseLosses }},
	}
	for _, c := range gcs {
		if c.inst, err = m.meter.Int64ObservableCounter(c.name, metric.WithUnit("{event}"), metric.WithDescription(c.desc)); err != nil {
			return nil, err
		}
		insts = append(insts, c.inst)
	}
	ownedG, err := m.meter.Int64ObservableGauge("durabus.group.owned", metric.WithUnit("{partition}"),
		metric.WithDescription("Topics (partitions) this consumer-group member owns."))
	if err != nil {
		return nil, err
	}
	handover, err := m.meter.Float64ObservableGauge("durabus.group.handover", metric.WithUnit("s"),
		metric.WithDescription("How long this group member waited for the lease of the topic it took last."))
	if err != nil {
		return nil, err
	}
	insts = append(insts, ownedG, handover)
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range b.Status() {
			attrs := []attribute.KeyValue{AttrSubscription.String(s.Key)}
			if !s.Pattern {
				attrs = append(attrs, AttrTopic.String(s.Key))
			}
			set := metric.WithAttributeSet(attribute.NewSet(attrs...))
			for _, c := range cs {
				o.ObserveInt64(c.inst, int64(c.get(s)), set)
			}
			for _, t := range s.Stats.Topics {
				o.ObserveInt64(lag, int64(t.Lag), metric.WithAttributeSet(attribute.NewSet(AttrSubscription.String(s.Key), AttrTopic.String(t.Topic))))
			}
			if s.Group != nil {
				for _, c := range gcs {
					o.ObserveInt64(c.inst, int64(c.get(s)), set)
				}
				o.ObserveInt64(ownedG, int64(len(s.Group.Owned)), set)
				o.ObserveFloat64(handover, s.Group.Handover.Seconds(), set)
			}
		}
		return nil
	}, insts...)
}
