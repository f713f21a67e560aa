package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

// binary is the durabus tool built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "durabus-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "durabus")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is the outcome of one run of the tool.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the tool with args, stdin and extra environment variables
// ("K=V"), with DURABUS_* variables of the test's environment removed.
func cli(t *testing.T, stdin string, env []string, args ...string) result {
	t.Helper()
	// Generous: the demo alone takes about 10 s on an idle machine, and
	// the tool is built with -race and shares two loaded cores.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = cleanEnv(env)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("durabus %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// cleanEnv is the test's environment without DURABUS_* variables, plus
// extra. GORACE drops the race runtime's one-second sleep at exit.
func cleanEnv(extra []string) []string {
	env := []string{"GORACE=atexit_sleep_ms=0 halt_on_error=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DURABUS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// ok runs the tool and fails the test unless it exits 0 with nothing on
// stderr.
func ok(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, stdin, nil, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("durabus %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// oneErrorLine checks the shape of every failure: one line on stderr,
// starting with "durabus: ", containing want.
func oneErrorLine(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "durabus: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one line starting with \"durabus: \": %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not say %q", r.stderr, want)
	}
}

func redisURL(srv *redistest.Server) string { return "redis://" + srv.Addr() }

// jsonLines decodes every line of s into a record.
func jsonLines(t *testing.T, s string) []record {
	t.Helper()
	var out []record
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func TestHelpDescribesEveryCommand(t *testing.T) {
	t.Parallel()
	out := ok(t, "", "--help")
	for _, name := range commandOrder {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("durabus --help does not list %q:\n%s", name, out)
		}
		for _, args := range [][]string{{"help", name}, {name, "-h"}, {name, "--help"}} {
			h := ok(t, "", args...)
			if !strings.HasPrefix(h, "Usage: durabus "+name) || !strings.Contains(h, "Global flags") {
				t.Errorf("durabus %s: no usage text:\n%s", strings.Join(args, " "), h)
			}
		}
	}
	if h := ok(t, "", "help", "publish"); !strings.Contains(h, "--type TYPE") || !strings.Contains(h, "--data JSON") {
		t.Errorf("publish help lacks its flags:\n%s", h)
	}
	if v := ok(t, "", "version"); !strings.HasPrefix(v, "durabus ") {
		t.Errorf("version printed %q", v)
	}
	// Every command is listed, in the help and in the README.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, cliSection, _ := strings.Cut(string(readme), "## The CLI")
	cliSection, _, _ = strings.Cut(cliSection, "\n## ")
	for _, name := range commandNames() {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("durabus --help does not list %q", name)
		}
		if name != "help" && !strings.Contains(cliSection, "`"+name) {
			t.Errorf("README.md's CLI section does not list %q", name)
		}
	}
}

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, "no command given"},
		{[]string{"publish", "orders", "--bogus"}, "flag provided but not defined: --bogus"},
		{[]string{"--bogus", "stats"}, "flag provided but not defined: --bogus"},
		{[]string{"publish", "orders", "--data", "{}"}, "--type is required"},
		{[]string{"publish", "bad topic", "--type", "x", "--data", "{}"}, "invalid topic"},
		{[]string{"tail", "orders", "--since", "yesterday"}, `--since "yesterday"`},
		{[]string{"tail", "orders.*", "--since", "5"}, "needs a single topic"},
		{[]string{"replay"}, "want exactly one TOPIC"},
		{[]string{"stats", "--watch", "-1s"}, "--watch -1s: want at least 100ms (see durabus help stats)"},
		{[]string{"stats", "--watch", "0s"}, "--watch 0s: want at least 100ms (see durabus help stats)"},
		{[]string{"stats", "--bogus"}, "flag provided but not defined: --bogus (see durabus help stats)"},
		{[]string{"stats", "--watch", "soon"}, `invalid value "soon" for flag --watch`},
		{[]string{"publish", "orders", "--type", "has space", "--data", "{}"}, `--type: an event type name follows the rules of topic names (it is the topic of its subscribers by default): "has space" has ' ' at byte 3`},
		{[]string{"publish", "orders", "--type", "star*", "--data", "{}"}, `"star*" has '*' at byte 4`},
		{[]string{"publish", "café", "--type", "x", "--data", "{}"}, `"café" has 'é' at byte 3`},
		{[]string{"--redis", "localhost:6379", "stats"}, `--redis "localhost:6379": invalid URL scheme: localhost; want redis://`},
		{[]string{"--redis", "redis://:pw@h:1/abc", "stats"}, `--redis "redis://:***@h:1/abc": invalid database number`},
		{[]string{"--redis", "://h", "stats"}, `--redis "://h": `},
		{[]string{"dead", "bury", "orders"}, "want list TOPIC or requeue TOPIC"},
		{[]string{"demo", "--topics", "9"}, "--topics 9"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			r := cli(t, "", nil, tc.args...)
			oneErrorLine(t, r, 2, tc.want)
			if strings.Contains(r.stderr, "  ") || !strings.Contains(r.stderr, "(see durabus help") {
				t.Errorf("stderr has a double space or no pointer to the help: %q", r.stderr)
			}
		})
	}
}

func TestUnreachableRedisIsOneClearLine(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	for _, args := range [][]string{
		{"stats"},
		{"publish", "orders", "--type", "x", "--data", "{}"},
		{"tail", "orders"},
		{"replay", "orders"},
		{"dead", "list", "orders"},
	} {
		r := cli(t, "", []string{"DURABUS_REDIS=redis://" + addr}, args...)
		oneErrorLine(t, r, 1, "cannot reach Redis at "+addr+": connection refused")
	}
	r := cli(t, "", nil, "--redis", "http://"+addr, "stats")
	oneErrorLine(t, r, 2, `--redis "http://`+addr+`": invalid URL scheme: http`)
}

func TestAuthFailuresAreExplainedWithoutThePassword(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword("s3cret"))
	r := cli(t, "", nil, "--redis", redisURL(srv), "stats")
	oneErrorLine(t, r, 1, "authentication required by Redis at "+srv.Addr()+" (NOAUTH)")

	r = cli(t, "", nil, "--redis", "redis://:wrong-pw@"+srv.Addr(), "stats")
	oneErrorLine(t, r, 1, "authentication failed at Redis "+srv.Addr()+" (WRONGPASS)")
	if strings.Contains(r.stderr, "wrong-pw") {
		t.Errorf("the password is printed: %q", r.stderr)
	}
	ok(t, "", "--redis", "redis://:s3cret@"+srv.Addr(), "stats")
}

func TestPublishOneAndManyThenReplay(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	out := ok(t, "", "publish", "orders", "--redis", u, "--type", "order.placed", "--data", `{"id":1}`)
	if !strings.HasPrefix(out, "orders  seq 1  epoch ") || !strings.Contains(out, "  event id ") {
		t.Errorf("publish printed %q", out)
	}
	id := strings.TrimSpace(out[strings.Index(out, "  event id ")+len("  event id "):])
	stdin := "{\"id\":2}\n\n{\"id\":3}\n{\"id\":4}\n{\"id\":5}\n"
	out = ok(t, stdin, "--redis", u, "--json", "publish", "orders", "--type", "order.placed", "--version", "2", "-")
	pos := jsonLines(t, out)
	if len(pos) != 4 || pos[0].Seq != 2 || pos[3].Seq != 5 || pos[0].Epoch == "" || pos[0].StreamID == "" {
		t.Fatalf("publish from stdin printed %+v", pos)
	}
	var ids struct{ ID []string }
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var p struct{ ID string }
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.ID == "" {
			t.Fatalf("publish --json line %q has no event id (%v)", line, err)
		}
		ids.ID = append(ids.ID, p.ID)
	}

	recs := jsonLines(t, ok(t, "", "--redis", u, "replay", "orders"))
	if len(recs) != 5 {
		t.Fatalf("replay printed %d events, want 5", len(recs))
	}
	for i, r := range recs {
		var ev struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Version int             `json:"version"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(r.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if r.Topic != "orders" || r.Seq != uint64(i+1) || ev.Type != "order.placed" || string(ev.Data) != fmt.Sprintf(`{"id":%d}`, i+1) {
			t.Errorf("event %d: %+v %+v", i, r, ev)
		}
		if want := append([]string{id}, ids.ID...)[i]; ev.ID != want {
			t.Errorf("event %d has id %s; publish printed %s", i, ev.ID, want)
		}
		if want := min(i+1, 2); ev.Version != want {
			t.Errorf("event %d: version %d, want %d", i, ev.Version, want)
		}
	}

	mid := jsonLines(t, ok(t, "", "--redis", u, "replay", "orders", "--since", "2", "--until", "4"))
	if len(mid) != 3 || mid[0].Seq != 2 || mid[2].Seq != 4 {
		t.Errorf("replay --since 2 --until 4 gave %+v", mid)
	}
	after := recs[2]
	rest := jsonLines(t, ok(t, "", "--redis", u, "replay", "orders", "--since", fmt.Sprintf("%s:%d:%s", after.Epoch, after.Seq, after.StreamID)))
	if len(rest) != 2 || rest[0].Seq != 4 {
		t.Errorf("replay --since <position of seq 3> gave %+v", rest)
	}

	file := filepath.Join(t.TempDir(), "orders.jsonl")
	r := cli(t, "", nil, "--redis", u, "replay", "orders", "--since", "10m", "--out", file)
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "wrote 5 event(s)") || strings.Contains(r.stderr, "\r") {
		t.Errorf("replay --out: exit %d, stdout %q, stderr %q (no progress bar when stderr is not a terminal)", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonLines(t, string(b)); len(got) != 5 {
		t.Errorf("the file has %d events, want 5", len(got))
	}

	r = cli(t, "", nil, "--redis", u, "replay", "nothing.here")
	oneErrorLine(t, r, 1, `topic "nothing.here" has no backlog`)
}

func TestPublishBadJSONNamesTheLine(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	r := cli(t, "{\"a\":1}\n{\"a\":2}\n{\"a\": oops}\n{\"a\":4}\n", nil, "--redis", u, "publish", "bad", "--type", "x", "-")
	oneErrorLine(t, r, 1, "stdin line 3: invalid JSON")
	r = cli(t, "", nil, "--redis", u, "replay", "bad")
	oneErrorLine(t, r, 1, "has no backlog") // the batch with the bad line was not sent

	r = cli(t, "", nil, "--redis", u, "publish", "bad", "--type", "x", "--data", "{nope")
	oneErrorLine(t, r, 1, "--data is not valid JSON")
}

func TestTailReplaysAndStopsAtUntil(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	ok(t, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n", "--redis", u, "publish", "t1", "--type", "tick", "-")
	out := ok(t, "", "--redis", u, "tail", "t1", "--since", "beginning", "--until", "3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`  t1  [0-9a-f]+:1  tick  `).MatchString(lines[0]) || !strings.HasSuffix(lines[2], `{"n":3}`) {
		t.Errorf("tail --since beginning --until 3 printed:\n%s", out)
	}
	recs := jsonLines(t, ok(t, "", "--redis", u, "--json", "tail", "t1", "--since", "2", "--until", "3"))
	if len(recs) != 2 || recs[0].Seq != 2 || !recs[0].Replayed {
		t.Errorf("tail --since 2 --until 3 --json gave %+v", recs)
	}
	// A time limit in the future ends an idle tail (one that did not end
	// would be killed by cli's deadline and fail ok).
	out = ok(t, "", "--redis", u, "tail", "t?", "--since", "beginning", "--until", "+1s")
	if n := strings.Count(out, "\n"); n != 4 {
		t.Errorf("tail 't?' --until +1s printed %d lines, want 4:\n%s", n, out)
	}

	// A time limit in the past makes the tail a replay up to that time,
	// for a topic and for a pattern, as replay does; from new events on
	// it is refused, not an empty success.
	mid := time.Now().UTC().Format(time.RFC3339Nano)
	ok(t, "{\"n\":5}\n", "--redis", u, "publish", "t1", "--type", "tick", "-")
	for _, p := range []string{"t1", "t?"} {
		out = ok(t, "", "--redis", u, "tail", p, "--since", "beginning", "--until", mid)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasSuffix(lines[3], `{"n":4}`) {
			t.Errorf("tail %s --since beginning --until <before seq 5> printed:\n%s", p, out)
		}
	}
	if got := jsonLines(t, ok(t, "", "--redis", u, "replay", "t1", "--until", mid)); len(got) != 4 {
		t.Errorf("replay --until <before seq 5> printed %d events, want 4", len(got))
	}
	r := cli(t, "", nil, "--redis", u, "tail", "t1", "--until", "1m")
	oneErrorLine(t, r, 2, "--until 1m is in the past")

	// After a reset of the log, seq 1 of the new epoch does not look like
	// seq 1 of the old one.
	before := ok(t, "", "--redis", u, "tail", "t1", "--since", "beginning", "--until", "1")
	if err := srv.Client(t).Del(context.Background(), "durabus:{t1}:log", "durabus:{t1}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	ok(t, "{\"n\":1}\n", "--redis", u, "publish", "t1", "--type", "tick", "-")
	after := ok(t, "", "--redis", u, "tail", "t1", "--since", "beginning", "--until", "1")
	position := func(line string) string { return strings.Fields(line)[2] }
	if p1, p2 := position(before), position(after); p1 == p2 || !strings.HasSuffix(p1, ":1") || !strings.HasSuffix(p2, ":1") {
		t.Errorf("seq 1 before and after a reset print as %q and %q", p1, p2)
	}
}

func TestTailFollowsLiveAndEndsCleanlyOnInterrupt(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	rdb := srv.Client(t)
	cmd := exec.Command(binary, "--redis", u, "--json", "tail", "live.*")
	cmd.Env = cleanEnv(nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	ctx := context.Background()
	waitFor(t, "tail to subscribe", func() bool { return rdb.PubSubNumPat(ctx).Val() >= 1 })
	ok(t, "", "--redis", u, "publish", "live.a", "--type", "ping", "--data", `"hello"`)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line := <-lines:
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Topic != "live.a" || r.Seq != 1 || !strings.Contains(string(r.Event), `"data":"hello"`) {
			t.Errorf("tail printed %q (%v)", line, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("tail printed nothing within 60 s")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail after Ctrl-C: %v, stderr %q", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("tail wrote to stderr: %q", stderr.String())
	}
}

func TestStatsShowsTopicsSubscribersAndConsumerLag(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	u := redisURL(srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	out := ok(t, "{}\n{}\n{}\n", "--redis", u, "--json", "publish", "orders", "--type", "x", "-")
	first := jsonLines(t, out)[0]
	ok(t, "", "--redis", u, "publish", "users", "--type", "x", "--data", "{}")
	ok(t, "", "--redis", u, "publish", "aaa", "--type", "x", "--data", "{}") // published last, listed first
	cp := fmt.Sprintf("%s:%d:%s", first.Epoch, first.Seq, first.StreamID)
	if err := rdb.HSet(ctx, "durabus:consumer:billing", "orders", cp).Err(); err != nil {
		t.Fatal(err)
	}
	pubsub := rdb.Subscribe(ctx, "durabus:{orders}")
	defer pubsub.Close()
	if _, err := pubsub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	var rep statsReport
	if err := json.Unmarshal([]byte(ok(t, "", "--redis", u, "--json", "stats")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Topics) != 3 || rep.Topics[0].Topic != "aaa" || rep.Topics[1].Topic != "orders" || rep.Topics[2].Topic != "users" {
		t.Fatalf("stats topics, want them by name: %+v", rep.Topics)
	}
	if !rep.Time.Equal(rep.Time.Truncate(time.Millisecond)) {
		t.Errorf("stats time %v has more than the ms of the other times", rep.Time)
	}
	o := rep.Topics[1]
	if o.Head != 3 || o.Backlog != 3 || o.Subscribers != 1 || o.MemoryBytes <= 0 || o.Oldest == nil || o.Newest == nil || o.Epoch != first.Epoch {
		t.Errorf("stats of orders: %+v", o)
	}
	if len(rep.Consumers) != 1 || rep.Consumers[0].Consumer != "billing" || rep.Consumers[0].Lag == nil || *rep.Consumers[0].Lag != 2 {
		t.Errorf("stats consumers: %+v", rep.Consumers)
	}

	human := ok(t, "", "--redis", u, "stats", "ord*")
	for _, want := range []string{"TOPIC", "orders", "billing", "Pattern subscriptions on the server (PUBSUB NUMPAT): 0"} {
		if !strings.Contains(human, want) {
			t.Errorf("stats ord* lacks %q:\n%s", want, human)
		}
	}
	if strings.Contains(human, "users") {
		t.Errorf("stats ord* shows users:\n%s", human)
	}
	for _, out := range []string{human, ok(t, "", "--redis", u, "stats"), ok(t, "", "--redis", u, "stats", "none.*")} {
		for _, line := range strings.Split(out, "\n") {
			if strings.TrimRight(line, " ") != line {
				t.Errorf("stats line with trailing spaces: %q", line)
			}
		}
	}

	// --watch repeats the report until interrupted: wait for a third
	// one (no deadline on how fast they come: a loaded machine is slow),
	// then Ctrl-C ends it cleanly.
	cmd := exec.Command(binary, "--redis", u, "stats", "--watch", "200ms", "--json")
	cmd.Env = cleanEnv(nil)
	var wout, werr syncBuffer
	cmd.Stdout, cmd.Stderr = &wout, &werr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	const want = 3
	waitFor(t, fmt.Sprintf("stats --watch to print %d reports", want), func() bool {
		return strings.Count(wout.String(), "\n") >= want
	})
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("stats --watch after Ctrl-C: %v, stderr %q", err, werr.String())
	}
	for i, line := range strings.Split(strings.TrimSpace(wout.String()), "\n") {
		var r statsReport
		if err := json.Unmarshal([]byte(line), &r); err != nil || len(r.Topics) != 3 {
			t.Errorf("stats --watch report %d: %v, %q", i+1, err, line)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a deadline
// generous enough for a loaded machine running -race.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	const timeout = 60 * time.Second
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailReconnectsAfterRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithAOF())
	u := redisURL(srv)
	rdb := srv.Client(t)
	ctx := context.Background()
	ok(t, "", "--redis", u, "publish", "r1", "--type", "x", "--data", "1")
	cmd := exec.Command(binary, "--redis", u, "--json", "tail", "r1")
	cmd.Env = cleanEnv(nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan record)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				lines <- r
			}
		}
	}()
	waitFor(t, "tail to subscribe", func() bool { return rdb.PubSubNumSub(ctx, "durabus:{r1}").Val()["durabus:{r1}"] >= 1 })
	srv.Kill(t)
	srv.Restart(t)
	ok(t, "", "--redis", u, "publish", "r1", "--type", "x", "--data", "2")
	select {
	case r := <-lines:
		if r.Seq != 2 {
			t.Errorf("tail printed seq %d after the restart, want 2", r.Seq)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("tail printed nothing within 60 s of the restart; stderr %q", stderr.String())
	}
	// Seq 2 may come from the backlog before the live connection is back:
	// give the note its time.
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "live connection back") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail after Ctrl-C: %v", err)
	}
	if !strings.Contains(stderr.String(), "live connection back") {
		t.Errorf("tail did not say it reconnected: %q", stderr.String())
	}
}
