package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport/redistransport"
)

// TestMain runs main instead of the tests when asked to by a test (the
// program as a user runs it, in a child process).
func TestMain(m *testing.M) {
	if os.Getenv("QUICKSTART_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The README's Quick start is this program, from its event type on.
func TestReadmeQuickStartIsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## Quick start")
	_, rest, ok2 := strings.Cut(rest, "```go\n")
	snippet, _, ok3 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no Go block under \"## Quick start\"")
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	_, prog, _ := strings.Cut(string(src), "\ntype OrderPlaced struct")
	if want := "type OrderPlaced struct" + prog; snippet != want {
		t.Errorf("README.md's Quick start differs from examples/quickstart/main.go; README:\n%s\nmain.go:\n%s", snippet, want)
	}
}

func runMain(t *testing.T, addr string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "QUICKSTART_RUN_MAIN=1", "REDIS_ADDR="+addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run twice: the durable consumer resumes after what it handled.
func TestQuickStartPublishesAndHandles(t *testing.T) {
	srv := redistest.Start(t)
	for _, seq := range []string{"1", "2"} {
		out, err := runMain(t, srv.Addr())
		if err != nil || !strings.Contains(out, "published, seq "+seq+"\n") || !strings.Contains(out, "bill o-1 42 seq "+seq+"\n") ||
			strings.Count(out, "bill ") != 1 {
			t.Fatalf("run %s: %v\n%s", seq, err, out)
		}
	}
}

// Against a Redis that is down, Ready and Publish end with the caller's
// ctx and say why.
func TestUnreachableRedisFailsWithinTheCallersDeadline(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	tr, err := redistransport.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	b, err := bus.New(tr, bus.WithConsumer("billing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Subscribe(b, func(context.Context, *OrderPlaced) error { return nil }); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go b.Run(runCtx)
	defer b.Close()

	const deadline, slack = time.Second, 5 * time.Second // slack: a loaded machine
	for name, call := range map[string]func(context.Context) error{
		"Ready": b.Ready,
		"Publish": func(ctx context.Context) error {
			_, err := b.Publish(ctx, OrderPlaced{ID: "o-1"})
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+addr) {
			t.Errorf("%s: %v; want an error saying \"cannot reach Redis at %s\"", name, err, addr)
		}
		if took > deadline+slack {
			t.Errorf("%s returned after %v, the caller's deadline was %v", name, took, deadline)
		}
	}
}
