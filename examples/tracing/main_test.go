package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOneTracePerOrder runs the example against a private redis-server and
// checks that each order's spans — place order, send and process
// order.placed, send and process invoice.sent — share one trace id.
func TestOneTracePerOrder(t *testing.T) {
	var out, logs bytes.Buffer
	if err := run(context.Background(), []string{"--orders", "2", "--timeout", "20s"}, &out, &logs); err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	names := map[string]map[string]bool{} // trace id → span names
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var span struct {
			Name        string
			SpanContext struct{ TraceID string }
		}
		if err := json.Unmarshal(sc.Bytes(), &span); err != nil {
			t.Fatalf("span line %q: %v", sc.Text(), err)
		}
		if names[span.SpanContext.TraceID] == nil {
			names[span.SpanContext.TraceID] = map[string]bool{}
		}
		names[span.SpanContext.TraceID][span.Name] = true
	}
	want := []string{"place order", "send example.order.placed", "process example.order.placed", "send example.invoice.sent", "process example.invoice.sent"}
	complete := 0
	for id, ns := range names {
		ok := true
		for _, w := range want {
			ok = ok && ns[w]
		}
		if ok {
			complete++
		} else {
			t.Errorf("trace %s has only %v", id, ns)
		}
	}
	if complete != 2 {
		t.Fatalf("complete traces = %d, want 2\n%s", complete, logs.String())
	}
}
