package envelope

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchEnvelope has a 256-byte payload, trace context and one extension.
func benchEnvelope(b *testing.B) *Envelope {
	payload := map[string]string{"id": "o-1", "note": strings.Repeat("x", 256-len(`{"id":"o-1","note":""}`))}
	e, err := New("order.placed", payload, WithSource("checkout"), WithVersion(2), WithID(testID), WithTime(testTime),
		WithTraceContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "congo=t61rcWkgMzE"),
		WithExtension("correlationid", "abc-123"))
	if err != nil {
		b.Fatal(err)
	}
	if len(e.Data) != 256 {
		b.Fatalf("payload is %d bytes", len(e.Data))
	}
	return e
}

func BenchmarkEncode(b *testing.B) {
	e := benchEnvelope(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendEncode(b *testing.B) {
	e := benchEnvelope(b)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = e.AppendEncode(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	in, err := benchEnvelope(b).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStdlib is the reflection baseline: encoding/json into a
// struct and a map, without any of Decode's checks.
func BenchmarkDecodeStdlib(b *testing.B) {
	in, err := benchEnvelope(b).Encode()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(in, &m); err != nil {
			b.Fatal(err)
		}
	}
}
