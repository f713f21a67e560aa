package envelope

import (
	"bytes"
	"fmt"
	"maps"
	"time"
)

// diff returns "" when a and b hold the same event, else what differs.
// Time is compared with Equal; nil and empty Extensions are the same.
func diff(a, b *Envelope) string {
	switch {
	case a.ID != b.ID:
		return fmt.Sprintf("ID %q != %q", a.ID, b.ID)
	case a.Type != b.Type:
		return fmt.Sprintf("Type %q != %q", a.Type, b.Type)
	case a.Version != b.Version:
		return fmt.Sprintf("Version %d != %d", a.Version, b.Version)
	case !a.Time.Equal(b.Time):
		return fmt.Sprintf("Time %v != %v", a.Time, b.Time)
	case a.Source != b.Source:
		return fmt.Sprintf("Source %q != %q", a.Source, b.Source)
	case a.Subject != b.Subject:
		return fmt.Sprintf("Subject %q != %q", a.Subject, b.Subject)
	case a.DataSchema != b.DataSchema:
		return fmt.Sprintf("DataSchema %q != %q", a.DataSchema, b.DataSchema)
	case (a.Data == nil) != (b.Data == nil) || !bytes.Equal(a.Data, b.Data):
		return fmt.Sprintf("Data %q != %q", a.Data, b.Data)
	case a.TraceParent != b.TraceParent:
		return fmt.Sprintf("TraceParent %q != %q", a.TraceParent, b.TraceParent)
	case a.TraceState != b.TraceState:
		return fmt.Sprintf("TraceState %q != %q", a.TraceState, b.TraceState)
	case !maps.Equal(a.Extensions, b.Extensions):
		return fmt.Sprintf("Extensions %v != %v", a.Extensions, b.Extensions)
	}
	return ""
}

var testTime = time.Date(2024, 7, 1, 12, 0, 0, 123456789, time.UTC)

const testID = "0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d"

// validJSON is a complete, valid encoded envelope used as a base in tests.
const validJSON = `{"specversion":"1.0","id":"0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d","source":"checkout","type":"order.placed","time":"2024-07-01T12:00:00.123456789Z","datacontenttype":"application/json","version":2,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"congo=t61rcWkgMzE","correlationid":"abc-123","data":{"id":"o-1","total":42}}`
