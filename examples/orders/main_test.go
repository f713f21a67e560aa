package main

import (
	"bufio"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

// TestOrdersThreeReplicasShareTheWorkAndSurviveAKill runs the example as a
// user does: the parent process, three replica processes, a SIGKILL of
// replica 2, and the parent's own check of the handled events' order.
func TestOrdersThreeReplicasShareTheWorkAndSurviveAKill(t *testing.T) {
	// Build first, outside the deadline: on a loaded machine the build
	// alone can take half a minute.
	bin := filepath.Join(t.TempDir(), "orders")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	url := "redis://" + redistest.Start(t).Addr()
	// About 10 s when idle (5 s of it the killed replica's lease): a
	// generous bound, so that a hung run fails the test rather than the
	// package's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--redis", url, "--orders", "200")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	err = cmd.Wait()
	all := strings.Join(out, "\n")
	t.Log("\n" + all)
	if err != nil {
		t.Fatalf("orders: %v (ctx: %v)\nstderr:\n%s", err, ctx.Err(), stderr.String())
	}
	has := func(prefix string) string {
		for _, l := range out {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		t.Errorf("no line starting with %q", prefix)
		return ""
	}
	for _, r := range []string{"1", "2", "3"} {
		has("replica " + r + " owns")
	}
	has("SIGKILL replica 2 after")
	has("takeover ")
	has("all 600 events handled")
	if v := has("verdict: "); !strings.HasPrefix(v, "verdict: OK: 200 orders, all 600 events handled, in order per order;") {
		t.Errorf("verdict %q", v)
	}
}

func TestCheckAcceptsRedeliveriesOnlyWhereTheKilledReplicaLeftOff(t *testing.T) {
	r := func(replica, order string, step int) record { return record{replica, order, step} }
	for _, tc := range []struct {
		name    string
		records []record
		again   int
		ok      bool
	}{
		{"in order, one replica", []record{r("1", "order-1", 1), r("1", "order-1", 2), r("1", "order-1", 3)}, 0, true},
		{"handed over between live replicas", []record{r("1", "order-1", 1), r("3", "order-1", 2), r("3", "order-1", 3)}, 0, true},
		{"taken over from the killed replica, two steps again", []record{r("2", "order-1", 1), r("2", "order-1", 2), r("1", "order-1", 1), r("1", "order-1", 2), r("1", "order-1", 3)}, 2, true},
		{"again after a live replica", []record{r("1", "order-1", 1), r("1", "order-1", 2), r("3", "order-1", 2), r("3", "order-1", 3)}, 1, false},
		{"a step skipped", []record{r("1", "order-1", 1), r("1", "order-1", 3)}, 0, false},
		{"out of order in one replica", []record{r("1", "order-1", 1), r("1", "order-1", 2), r("1", "order-1", 1), r("1", "order-1", 2), r("1", "order-1", 3)}, 0, false},
		{"an order not finished", []record{r("1", "order-1", 1), r("1", "order-1", 2)}, 0, false},
	} {
		v := check(tc.records, 1)
		if v.ok() != tc.ok || v.again != tc.again {
			t.Errorf("%s: ok %v, again %d, want %v, %d (%s)", tc.name, v.ok(), v.again, tc.ok, tc.again, v)
		}
	}
}
