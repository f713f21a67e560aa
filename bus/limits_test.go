package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

type blob struct {
	S string `json:"s"`
}

func (blob) EventType() string { return "blob" }

// The size limit is on the whole envelope; an oversized event matches both
// sentinels, whichever limit refused it; a bus limit above the
// transport's is refused at New.
func TestEventSizeLimits(t *testing.T) {
	const limit = 1000
	tr, _ := memtransport.New(memtransport.WithMaxSize(limit))
	defer tr.Close()
	if _, err := bus.New(tr, bus.WithMaxEventSize(4*limit)); !errors.Is(err, bus.ErrInvalidOption) || !strings.Contains(err.Error(), "the transport accepts at most 1000 bytes") {
		t.Errorf("WithMaxEventSize above the transport's limit: %v", err)
	}
	ctx := context.Background()
	for _, opts := range [][]bus.Option{nil, {bus.WithMaxEventSize(limit / 2)}} {
		b, err := bus.New(tr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// A payload 100 bytes under the transport's limit: the envelope
		// around it makes it too large.
		ev := blob{S: strings.Repeat("x", limit-100)}
		_, err1 := b.Publish(ctx, ev)
		_, err2 := b.PublishBatch(ctx, []bus.Event{ev})
		for _, err := range []error{err1, err2} {
			if !errors.Is(err, transport.ErrTooLarge) || !errors.Is(err, envelope.ErrTooLarge) || !strings.Contains(err.Error(), "whole encoded envelope") {
				t.Errorf("oversized publish: %v; want transport.ErrTooLarge and envelope.ErrTooLarge, saying the limit is on the envelope", err)
			}
		}
		if _, err := b.Publish(ctx, blob{S: "small"}); err != nil {
			t.Errorf("small publish: %v", err)
		}
		b.Close()
	}
	if _, err := tr.Publish(ctx, transport.Message{Topic: "t", Data: make([]byte, limit+1)}); !errors.Is(err, envelope.ErrTooLarge) {
		t.Errorf("the transport's own refusal: %v; want it to match envelope.ErrTooLarge", err)
	}
}
