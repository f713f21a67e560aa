package metrics_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/middleware/metrics"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport/memtransport"
)

type Ping struct {
	N int `json:"n"`
}

func (Ping) EventType() string { return "ping" }

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	met, err := metrics.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := memtransport.New()
	defer mem.Close()
	store := middleware.NewMemoryStore(0, 0)
	b, err := bus.New(mem, bus.WithPublishHook(met.PublishHook),
		bus.WithMiddleware(middleware.Default(middleware.Options{Metrics: met.Middleware, Dedupe: store})...),
		bus.WithFollowerOptions(replay.WithHeadCheck(10*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 10)
	if _, err := bus.Subscribe(b, func(_ context.Context, p *Ping) error { got <- p.N; return nil }, bus.StartAt(bus.Beginning())); err != nil {
		t.Fatal(err)
	}
	reg, err := met.Observe(b)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	ctx := context.Background()
	for i := range 3 {
		if _, err := b.Publish(ctx, Ping{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	// One event id published twice: the follower delivers both, Dedupe
	// drops the second.
	e, err := envelope.New("ping", Ping{N: 9})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := b.PublishEnvelope(ctx, "ping", e.Clone()); err != nil {
			t.Fatal(err)
		}
	}
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx) }()
	for range 4 {
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("events not delivered")
		}
	}
	// Wait until the follower's cursor reached the head (lag 0, delivered 3).
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := b.Status()
		if len(st) == 1 && st[0].Stats.Delivered == 5 && len(st[0].Stats.Topics) == 1 && st[0].Stats.Topics[0].Head.Seq == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	var durations uint64
	var lag int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if v, ok := p.Attributes.Value(metrics.AttrTopic); !ok || v.AsString() != "ping" {
						t.Errorf("%s without topic attribute: %v", mt.Name, p.Attributes)
					}
					sums[mt.Name] += p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					lag = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					durations += p.Count
				}
			}
		}
	}
	want := map[string]int64{"durabus.published": 5, "durabus.delivered": 5, "durabus.replayed": 5, "durabus.dedupe.dropped": 1,
		"durabus.events.lost": 0, "durabus.reconnects": 0, "durabus.gaps": 0}
	for k, v := range want {
		if got, ok := sums[k]; !ok || got != v {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, v)
		}
	}
	if durations != 5 || lag != 0 {
		t.Errorf("handler durations %d, lag %d; want 5 and 0", durations, lag)
	}
}

func TestGroupMemberMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec, err := metrics.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := memtransport.New()
	defer mem.Close()
	b, err := bus.New(mem, bus.WithPartitions("ping", 4), bus.WithGroup("g"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.Subscribe(b, func(context.Context, *Ping) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	reg, err := rec.Observe(b)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- b.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for g := sub.Status().Group; g == nil || len(g.Owned) != 4; g = sub.Status().Group {
		if time.Now().After(deadline) {
			t.Fatalf("the member does not own the 4 partitions: %+v", g)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	var owned, rebalances int64 = -1, -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				if m.Name == "durabus.group.owned" && len(d.DataPoints) == 1 {
					owned = d.DataPoints[0].Value
				}
			case metricdata.Sum[int64]:
				if m.Name == "durabus.group.rebalances" && len(d.DataPoints) == 1 {
					rebalances = d.DataPoints[0].Value
				}
			}
		}
	}
	if owned != 4 || rebalances < 1 {
		t.Errorf("durabus.group.owned %d, durabus.group.rebalances %d; want 4 and at least 1", owned, rebalances)
	}
}
