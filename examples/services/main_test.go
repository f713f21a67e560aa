package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestServicesEveryOrderIsBilledAndMailedOnceEvenThoseBeforeTheServicesStarted(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The second run resumes at the services' checkpoints: it handles its
	// own orders only, none of the first run's again.
	for round, n := range []int{6, 4} {
		var out bytes.Buffer
		if err := run(ctx, []string{"--redis", url, "--n", strconv.Itoa(n)}, &out); err != nil {
			t.Fatalf("run %d: %v\n%s", round+1, err, out.String())
		}
		t.Log("\n" + out.String())
		want := fmt.Sprintf("summary: %d orders placed, %d payments captured, %d mails sent", n, n, 2*n)
		if !strings.Contains(out.String(), want) {
			t.Errorf("run %d: no %q", round+1, want)
		}
		if c := strings.Count(out.String(), "captured $"); c != n {
			t.Errorf("run %d: billing captured %d payments, want %d", round+1, c, n)
		}
	}
}
