package redistransport_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/durabus/durabus/transport/redistransport"
)

// FuzzParseFrame feeds arbitrary channel messages to the frame parser: it
// must never panic, never hand out an event that is not wholly inside the
// message, and number the events it returns first-seq, first-seq+1, ….
func FuzzParseFrame(f *testing.F) {
	env := `{"specversion":"1.0","id":"x","type":"t","source":"s","time":"2026-01-01T00:00:00Z"}`
	f.Add(fmt.Sprintf("v1 6b0000aa12345678 7 1\n1700000000000-0 %d\n%s", len(env), env))
	f.Add(fmt.Sprintf("v1 e 1 2\n1-0 %d\n%s2-5 2\n{}", len(env), env))
	f.Add("v1 e 18446744073709551615 2\n1-0 0\n1-1 0\n")
	f.Add("v1 e 1 4294967295\n1-0 0\n")
	f.Add("v1 e 1 1\n1-0 99999999999\n{}")
	f.Add("v1 e:x 1 1\n1-0 2\n{}")
	f.Add("v1 e 1 1\r\n1-0 2\r\n{}")
	f.Add("hello")
	f.Add("")
	f.Fuzz(func(t *testing.T, msg string) {
		out, err := redistransport.ParseFrame("topic", msg, nil)
		total := 0
		for i, d := range out {
			if d.Topic != "topic" {
				t.Fatalf("event %d: topic %q", i, d.Topic)
			}
			if i > 0 && d.Position.Seq != out[0].Position.Seq+uint64(i) {
				t.Fatalf("event %d: seq %d after first seq %d", i, d.Position.Seq, out[0].Position.Seq)
			}
			if d.Position.Seq == 0 || d.Position.Epoch == "" || d.Position.ID == "" {
				t.Fatalf("event %d: incomplete position %+v", i, d.Position)
			}
			if !strings.Contains(msg, string(d.Data)) {
				t.Fatalf("event %d: data not from the message", i)
			}
			total += len(d.Data)
		}
		if total > len(msg) {
			t.Fatalf("%d bytes of events from a %d-byte message", total, len(msg))
		}
		if err == nil && len(out) == 0 {
			t.Fatal("no error and no event")
		}
	})
}
