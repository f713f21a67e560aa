package bus_test

import (
	"context"
	"strings"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport/memtransport"
)

type benchEvent struct {
	N int64  `json:"n"`
	S string `json:"s"`
}

func (benchEvent) EventType() string { return "bench.event" }

// BenchmarkPublish is bus.Publish's own cost (envelope, JSON encoding,
// validation) on the in-memory transport.
func BenchmarkPublish(b *testing.B) {
	mem, _ := memtransport.New(memtransport.WithMaxLen(1000))
	defer mem.Close()
	bb, err := bus.New(mem, bus.WithSource("bench"))
	if err != nil {
		b.Fatal(err)
	}
	defer bb.Close()
	ev := benchEvent{N: 1, S: strings.Repeat("x", 230)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bb.Publish(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
