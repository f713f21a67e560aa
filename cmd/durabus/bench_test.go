package main

import (
	"context"
	"strings"
	"testing"

	"github.com/durabus/durabus/internal/redistest"
)

// bench runs every case once on a private Redis, prints one line per case
// and leaves no key behind (it writes only under its own namespace).
func TestBenchRunsEveryCaseAndCleansUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	out := ok(t, "", "--redis", redisURL(srv), "bench", "--rounds", "1", "--duration", "20ms", "--events", "1000")
	for _, c := range []string{"Publish, 1 goroutine", "Publish, 16 goroutines", "PublishBatch of 100",
		"live delivery, typed handler", "live delivery with the publisher", "replay", "latency p50", "latency p99"} {
		if !strings.Contains(out, c) {
			t.Errorf("output lacks %q:\n%s", c, out)
		}
	}
	keys, err := srv.Client(t).Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("bench left %d keys behind, e.g. %v", len(keys), keys[:min(3, len(keys))])
	}
}
