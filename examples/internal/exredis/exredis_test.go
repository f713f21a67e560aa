package exredis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConnectWithoutURLStartsAndStopsAPrivateServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out bytes.Buffer
	rdb, closeRedis, err := Connect(ctx, "", &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "private redis-server") {
		t.Errorf("said %q, want a note about the private server", out.String())
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := rdb.Options().Addr
	closeRedis()
	if _, _, err := Connect(ctx, "redis://"+addr, &out); err == nil {
		t.Errorf("the private server on %s still answers after the stop", addr)
	}
}

func TestConnectReportsABadURLAndAnUnreachableServer(t *testing.T) {
	ctx := context.Background()
	if _, _, err := Connect(ctx, "http://nope", nil); err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Errorf("bad URL: %v", err)
	}
	if _, _, err := Connect(ctx, "redis://127.0.0.1:1", nil); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestTransportClosesTransportClientAndPrivateServerWithOneCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tr, rdb, closeAll, err := Transport(ctx, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Topics(ctx, "*"); err != nil {
		t.Fatalf("transport on the private server: %v", err)
	}
	addr := rdb.Options().Addr
	closeAll()
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Error("the client still answers after closeAll")
	}
	if _, _, _, err := Transport(ctx, "redis://"+addr, io.Discard); err == nil {
		t.Errorf("the private server on %s still answers after closeAll", addr)
	}
}

func TestSyncWriterKeepsConcurrentWritesWhole(t *testing.T) {
	var buf bytes.Buffer
	w := NewSyncWriter(&buf)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 50 {
				fmt.Fprintln(w, "one whole line")
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("wrote 1000 lines, got %d", len(lines))
	}
	for _, l := range lines {
		if l != "one whole line" {
			t.Fatalf("a line was interleaved: %q", l)
		}
	}
}

// TestMainPrintsTheErrorWithTheNameAndExits1 runs Main in a child process
// (this test binary again), since Main exits.
func TestMainPrintsTheErrorWithTheNameAndExits1(t *testing.T) {
	if os.Getenv("EXREDIS_MAIN_CHILD") == "1" {
		Main("demo", func(_ context.Context, args []string, stdout io.Writer) error {
			fmt.Fprintln(stdout, "args:", strings.Join(args, " "))
			return errors.New("it failed")
		})
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainPrintsTheErrorWithTheNameAndExits1$")
	cmd.Env = append(os.Environ(), "EXREDIS_MAIN_CHILD=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if got := stderr.String(); got != "demo: it failed\n" {
		t.Errorf("stderr %q, want %q", got, "demo: it failed\n")
	}
	if got := stdout.String(); !strings.HasPrefix(got, "args: -test.run=") {
		t.Errorf("stdout %q, want run's output with the process arguments", got)
	}
}
