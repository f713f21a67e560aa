package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOneTracePerOrder runs the example against a private redis-server and
// checks that each order's spans — place order, send and process
// order.placed, send and process invoice.sent — share one trace id.
func TestOneTracePerOrder(t *testing.T) {
	var out, logs bytes.Buffer
	if err := run(context.Background(), []string{"--orders", "2", "--timeout", "20s", "--json"}, &out, &logs); err != nil {
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

// Without --json each span is one line of columns under a header: the
// five spans of an order share its trace id, and each names its service
// and kind.
func TestSpansPrintedAsReadableLines(t *testing.T) {
	var out, logs bytes.Buffer
	if err := run(context.Background(), []string{"--orders", "1", "--timeout", "20s"}, &out, &logs); err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "TRACE ") {
		t.Fatalf("want a header and 5 spans, got:\n%s", out.String())
	}
	trace := strings.Fields(lines[1])[0]
	for _, want := range []string{"checkout  internal  place order", "checkout  producer  send example.order.placed",
		"billing   consumer  process example.order.placed", "billing   producer  send example.invoice.sent",
		"checkout  consumer  process example.invoice.sent"} {
		found := false
		for _, l := range lines[1:] {
			found = found || strings.Contains(l, want) && strings.HasPrefix(l, trace)
		}
		if !found {
			t.Errorf("no span line with %q in trace %s:\n%s", want, trace, out.String())
		}
	}
}
