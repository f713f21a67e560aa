package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestWorkerKilledWithSIGKILLResumesFromItsCheckpointAndLosesNoJob(t *testing.T) {
	const jobs = 300
	// Build first, outside the deadline: on a loaded machine the build
	// alone can take half a minute.
	bin := filepath.Join(t.TempDir(), "worker")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	url := "redis://" + redistest.Start(t).Addr()
	// A generous bound on the whole run (about a second when idle), so
	// that a hung worker fails the test rather than the package's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"--redis", url, "--enqueue", fmt.Sprint(jobs), "--work=false"}, &out); err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	// work runs the worker process until stop says so, then kills it with
	// SIGKILL (no checkpoint flush) and returns every seq it printed and the
	// line it started with.
	work := func(stop func(seqs []uint64) bool) (seqs []uint64, started string) {
		cmd := exec.CommandContext(ctx, bin, "--redis", url, "--job-time", "2ms")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killed := false
		sc := bufio.NewScanner(stdout)
		for sc.Scan() { // to EOF: what it printed before it died counts too
			var seq uint64
			if _, err := fmt.Sscanf(sc.Text(), "done seq %d", &seq); err != nil {
				started = sc.Text()
				continue
			}
			seqs = append(seqs, seq)
			if !killed && stop(seqs) {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("worker output ended after %d jobs (%v)", len(seqs), ctx.Err())
		}
		return seqs, started
	}

	first, resumed := work(func(s []uint64) bool { return len(s) == 100 })
	if resumed != "no checkpoint: starting at the oldest job" {
		t.Errorf("first start said %q", resumed)
	}
	second, resumed := work(func(s []uint64) bool { return s[len(s)-1] == jobs })
	var cp uint64
	if _, err := fmt.Sscanf(resumed, "resuming after checkpoint seq %d", &cp); err != nil {
		t.Fatalf("second start said %q", resumed)
	}

	count := map[uint64]int{}
	for _, s := range append(first, second...) {
		count[s]++
	}
	dups := 0
	for seq := uint64(1); seq <= jobs; seq++ {
		switch count[seq] {
		case 0:
			t.Errorf("job seq %d never done", seq)
		case 1:
		default:
			dups += count[seq] - 1
		}
	}
	t.Logf("%d jobs; killed after %d; restarted after checkpoint seq %d; %d done again, %d lost",
		jobs, len(first), cp, dups, 0)
	if want := int(first[len(first)-1] - cp); dups != want {
		t.Errorf("%d jobs done twice, want exactly the %d after the checkpoint", dups, want)
	}
}

// A first run without --enqueue has jobs to do; a second one adds none.
func TestWorkerEnqueuesSomeJobsByDefault(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, want := range []string{"enqueued 20 jobs, seq 1..20\n", ""} {
		var out bytes.Buffer
		if err := run(ctx, []string{"--redis", url, "--work=false"}, &out); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if out.String() != want {
			t.Errorf("run %d printed %q, want %q", i+1, out.String(), want)
		}
	}
}
