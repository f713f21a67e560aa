package redistransport

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redistest"
)

// logBuffer is a concurrency-safe sink for a text slog.Logger.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// policyCheck builds a transport on rdb with a capturing logger, waits for
// its memory policy check to end (it ends by itself within
// policyCheckTimeout) and returns what was logged.
func policyCheck(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	var out logBuffer
	tr, err := New(rdb, WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { tr.checks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the memory policy check did not end within 30 s")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// configGetCalls returns how many CONFIG GET calls the server ran and
// refused (INFO commandstats).
func configGetCalls(t *testing.T, admin *redis.Client) string {
	t.Helper()
	stats, err := admin.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(stats, "\n") {
		if strings.HasPrefix(line, "cmdstat_config|get:") {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// New warns once when maxmemory-policy lets Redis evict durabus's keys, and
// says what can be lost and where to read more.
func TestPolicyWarningForEvictingPolicy(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"))
	rdb := srv.Client(t)
	out := policyCheck(t, rdb)
	if n := strings.Count(out, "maxmemory-policy is allkeys-lru"); n != 1 {
		t.Fatalf("want one warning about allkeys-lru, got %d:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "docs/operations.md", "checkpoints", "meta hash"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning misses %q:\n%s", want, out)
		}
	}
	t.Logf("logged: %s", out)
}

// The default policy, noeviction, gives no warning (and the check ran).
func TestPolicyNoWarningForNoeviction(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", "noeviction"))
	rdb := srv.Client(t)
	if out := policyCheck(t, rdb); out != "" {
		t.Fatalf("want no log with noeviction, got:\n%s", out)
	}
	if calls := configGetCalls(t, rdb); !strings.Contains(calls, "calls=1,") {
		t.Fatalf("want one CONFIG GET call, commandstats: %q", calls)
	}
}

// A user without the right to read the config gets no warning and no error
// log: the check was refused (NOPERM) and that is not worth a word.
func TestPolicyNoWarningWithoutConfigRight(t *testing.T) {
	srv := redistest.Start(t,
		redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"),
		redistest.WithACL("app on >app-secret ~durabus:* &durabus:* +@all -config"))
	app := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "app", Password: "app-secret"})
	t.Cleanup(func() { _ = app.Close() })
	if out := policyCheck(t, app); out != "" {
		t.Fatalf("want no log for a user without +config, got:\n%s", out)
	}
	entries, err := srv.Client(t).ACLLog(context.Background(), 10).Result()
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, e := range entries {
		refused = refused || e.Username == "app" && strings.EqualFold(e.Object, "config|get")
	}
	if !refused {
		t.Fatalf("the check was not refused by the ACL (ACL LOG %+v)", entries)
	}
}
