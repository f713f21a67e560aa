package redistransport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

func newTransport(t *testing.T, rdb redis.UniversalClient, opts ...redistransport.Option) *redistransport.Transport {
	t.Helper()
	tr, err := redistransport.New(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var idSeq atomic.Int64

// message builds a minimal envelope with a fresh id.
func message(topic string, i int) transport.Message {
	id := fmt.Sprintf("0190f3e4-0000-7000-8000-%012d", idSeq.Add(1))
	now := time.Now().UTC()
	data := fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"test","type":"test.event","version":1,"time":%q,"datacontenttype":"application/json","data":{"i":%d}}`,
		id, now.Format(time.RFC3339Nano), i)
	return transport.Message{Topic: topic, ID: id, Time: now, Data: data}
}

func envelopeID(t *testing.T, data []byte) string {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("bad envelope %q: %v", data, err)
	}
	return v.ID
}

// next returns the next event of sub, failing after d.
func next(t *testing.T, sub transport.Subscription, d time.Duration) transport.Event {
	t.Helper()
	select {
	case ev, ok := <-sub.Events():
		if !ok {
			t.Fatalf("events channel closed: %v", sub.Err())
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	panic("unreachable")
}

// waitKind reads sub until an event of kind arrives, within d.
func waitKind(t *testing.T, sub transport.Subscription, kind transport.EventKind, d time.Duration) transport.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no %v event within %v", kind, d)
		}
		ev := next(t, sub, left)
		if ev.Kind == kind {
			return ev
		}
	}
}

func rangeAll(t *testing.T, tr transport.Transport, topic string) []transport.Delivery {
	t.Helper()
	var out []transport.Delivery
	var after transport.Position
	for {
		page, err := tr.Range(context.Background(), topic, after, 100)
		if err != nil {
			t.Fatalf("Range %s: %v", topic, err)
		}
		out = append(out, page.Events...)
		if len(page.Events) < 100 {
			return out
		}
		after = page.Events[len(page.Events)-1].Position
	}
}
