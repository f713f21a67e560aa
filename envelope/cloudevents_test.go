package envelope

import (
	"encoding/json"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// Our encoding is read by the CloudEvents Go SDK as a valid 1.0 event with
// every attribute where the spec puts it.
func TestCloudEventsSDKReadsEncode(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e, err := New("order.placed", map[string]any{"id": "o-1", "total": 42},
		WithSource("checkout"), WithVersion(3), WithTime(testTime), WithID(testID),
		WithTraceContext(traceparent, "congo=t61rcWkgMzE"),
		WithExtension("correlationid", "abc-123"),
		WithSubject("o-1"), WithDataSchema("https://schemas.example.com/order.placed/3"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}

	ev := cloudevents.NewEvent()
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("SDK cannot unmarshal our event: %v\n%s", err, b)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("SDK says our event is invalid: %v", err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	check("specversion", ev.SpecVersion(), "1.0")
	check("id", ev.ID(), testID)
	check("source", ev.Source(), "checkout")
	check("type", ev.Type(), "order.placed")
	check("subject", ev.Subject(), "o-1")
	check("dataschema", ev.DataSchema(), "https://schemas.example.com/order.placed/3")
	check("datacontenttype", ev.DataContentType(), "application/json")
	if !ev.Time().Equal(testTime) {
		t.Errorf("time = %v, want %v (nanoseconds kept)", ev.Time(), testTime)
	}
	var data struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	if err := ev.DataAs(&data); err != nil {
		t.Fatal(err)
	}
	check("data.id", data.ID, "o-1")
	check("data.total", data.Total, 42)

	ext := ev.Extensions()
	check("traceparent", ext["traceparent"], traceparent)
	check("tracestate", ext["tracestate"], "congo=t61rcWkgMzE")
	check("correlationid", ext["correlationid"], "abc-123")
	switch v := ext["version"].(type) {
	case int32:
		check("version", v, int32(3))
	case int:
		check("version", v, 3)
	case float64:
		check("version", v, float64(3))
	default:
		t.Errorf("version extension = %#v (%T), want integer 3", v, v)
	}
	if len(ext) != 4 {
		t.Errorf("extensions = %v, want exactly traceparent, tracestate, correlationid, version", ext)
	}

	// And back: what the SDK writes for this event, we read.
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatalf("decoding the SDK's JSON: %v\n%s", err, out)
	}
	if d := diff(back, e); d != "" {
		t.Errorf("SDK round trip changed the event: %s\n%s", d, out)
	}
}
