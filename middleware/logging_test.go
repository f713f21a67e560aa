package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
)

func TestLogging(t *testing.T) {
	tests := []struct {
		name        string
		mw          []bus.Middleware // inside Logging
		h           *script
		wantLevel   string
		wantMsg     string
		wantAttempt float64
	}{
		{"success is debug", nil, &script{}, "DEBUG", "durabus: handled", 1},
		{"failure is error with attempts", []bus.Middleware{middleware.Retry(fastRetry(3))},
			&script{errs: []error{errBoom, errBoom, errBoom}}, "ERROR", "durabus: handler failed", 3},
		{"dead letter is error", []bus.Middleware{middleware.DeadLetter(&recordingPublisher{}), middleware.Retry(fastRetry(2))},
			&script{errs: []error{errBoom, errBoom}}, "ERROR", "durabus: handler failed, event dead-lettered", 2},
		{"duplicate is debug", []bus.Middleware{middleware.Dedupe(dupStore{})}, &script{}, "DEBUG", "durabus: duplicate dropped", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			m := msg(t, 7)
			h := bus.Chain(tt.h, append([]bus.Middleware{middleware.Logging(l)}, tt.mw...)...)
			_ = h.Handle(context.Background(), m)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line, got %d:\n%s", len(lines), buf.String())
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
				t.Fatal(err)
			}
			if rec["level"] != tt.wantLevel || rec["msg"] != tt.wantMsg {
				t.Fatalf("line = %s", lines[0])
			}
			for k, v := range map[string]any{"topic": "orders", "seq": 7.0, "id": m.ID, "type": "order.placed", "attempt": tt.wantAttempt} {
				if rec[k] != v {
					t.Fatalf("%s = %v, want %v in %s", k, rec[k], v, lines[0])
				}
			}
			if _, ok := rec["duration"]; !ok {
				t.Fatalf("no duration in %s", lines[0])
			}
			if tt.wantLevel == "ERROR" && tt.name == "failure is error with attempts" && rec["err"] != "boom" {
				t.Fatalf("err = %v", rec["err"])
			}
		})
	}
}

func TestLoggingNilLoggerIsPassThrough(t *testing.T) {
	s := &script{errs: []error{errBoom}}
	if err := middleware.Logging(nil)(s).Handle(context.Background(), msg(t, 1)); err != errBoom {
		t.Fatalf("err = %v", err)
	}
}

// dupStore says every id was handled.
type dupStore struct{}

func (dupStore) Claim(context.Context, string) (string, bool, error) { return "", true, nil }
func (dupStore) Commit(context.Context, string, string) error        { return nil }
func (dupStore) Abort(context.Context, string, string) error         { return nil }
