package console

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/replay"
)

// fakeSource serves fixed data and records requeues.
type fakeSource struct {
	mu       sync.Mutex
	requeued []string
	snapErr  error
	tail     func(yield func(*Event, error) bool)
}

func (f *fakeSource) Snapshot(context.Context) (*Snapshot, error) {
	if f.snapErr != nil {
		return nil, f.snapErr
	}
	now := time.Now()
	return &Snapshot{Time: now, Namespace: "durabus", Redis: "127.0.0.1:6379",
		Topics: []Topic{
			{Name: "orders", Epoch: "e1", Head: 7, Backlog: 7, Oldest: now.Add(-time.Minute), LastPublish: now},
			{Name: "orders.dead", Epoch: "e2", Head: 1, Backlog: 1},
		},
		Consumers: []Consumer{{Name: "billing", Topic: "orders", Epoch: "e1", Seq: 5, StreamID: "1700000000000-0", Lag: 2}},
	}, nil
}

func (f *fakeSource) DeadLetters(context.Context, string, int) ([]DeadLetter, error) {
	return []DeadLetter{{Seq: 1, ID: "id-1", Type: "order.placed", From: "orders", FromSeq: "3", Attempts: "3", Error: "card <declined>", Envelope: []byte(`{"id":"id-1"}`)}}, nil
}

func (f *fakeSource) Requeue(_ context.Context, topic string, _ int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requeued = append(f.requeued, topic)
	return 1, nil
}

func (f *fakeSource) Tail(ctx context.Context, _ string, _ Start) iter.Seq2[*Event, error] {
	if f.tail != nil {
		return f.tail
	}
	return func(func(*Event, error) bool) { <-ctx.Done() }
}

func newTestConsole(t *testing.T, src Source, opts ...Option) *Console {
	t.Helper()
	c, err := New(src, append([]Option{WithFollow("")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func do(h http.Handler, method, target string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPagesRenderWithoutJavaScript(t *testing.T) {
	h := newTestConsole(t, &fakeSource{}).Handler()
	for page, want := range map[string]string{
		"/topics":            `data-name="orders"`,
		"/consumers":         "No consumer groups.",
		"/dead?topic=orders": "card &lt;declined&gt;",
		"/tail":              "5 000 events/s",
		"/losses":            "Nothing lost",
	} {
		w := do(h, "GET", "http://127.0.0.1:8080"+page, nil, "")
		if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q:\n%.600s", page, w.Code, want, w.Body.String())
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", page, csp)
		}
	}
}

func TestWritesAreRefusedUnlessAllowed(t *testing.T) {
	src := &fakeSource{}
	form := url.Values{"topic": {"orders"}, "limit": {"1"}}.Encode()
	own := map[string]string{writeHeader: "1", "Origin": "http://127.0.0.1:8080"}

	w := do(newTestConsole(t, src).Handler(), "POST", "http://127.0.0.1:8080/api/requeue", own, form)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "--allow-write") {
		t.Errorf("requeue without WithWrites: %d %s, want 403 naming --allow-write", w.Code, w.Body)
	}
	h := newTestConsole(t, src, WithWrites()).Handler()
	for name, hdr := range map[string]map[string]string{
		"without the console's header": {"Origin": "http://127.0.0.1:8080"},
		"from another origin":          {writeHeader: "1", "Origin": "http://evil.example"},
	} {
		if w := do(h, "POST", "http://127.0.0.1:8080/api/requeue", hdr, form); w.Code != http.StatusForbidden {
			t.Errorf("requeue %s: %d %s, want 403", name, w.Code, w.Body)
		}
	}
	if len(src.requeued) != 0 {
		t.Fatalf("refused requeues reached the source: %v", src.requeued)
	}
	if w := do(h, "POST", "http://127.0.0.1:8080/api/requeue", own, form); w.Code != 200 || !strings.Contains(w.Body.String(), "requeued 1") {
		t.Errorf("allowed requeue: %d %s", w.Code, w.Body)
	}
	if w := do(h, "GET", "http://127.0.0.1:8080/api/requeue", own, ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET requeue: %d, want 405", w.Code)
	}
}

func TestWithoutATokenOnlyLoopbackHostsAreServed(t *testing.T) {
	h := newTestConsole(t, &fakeSource{}).Handler()
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "[::1]:8080": 200,
		"evil.example:8080": 403, "10.0.0.5:8080": 403,
	} {
		if w := do(h, "GET", "http://x/topics", map[string]string{"Host": host}, ""); w.Code != want {
			t.Errorf("Host %s: %d, want %d", host, w.Code, want)
		}
	}
}

func TestATokenIsNeededOnEveryRequest(t *testing.T) {
	const tok = "0123456789abcdef-token"
	h := newTestConsole(t, &fakeSource{}, WithToken(tok)).Handler()
	if w := do(h, "GET", "http://console.example/topics", nil, ""); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "?token=") {
		t.Errorf("no token: %d %s", w.Code, w.Body)
	}
	if w := do(h, "GET", "http://console.example/topics?token=wrong", nil, ""); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", w.Code)
	}
	w := do(h, "GET", "http://console.example/topics?q=ord&token="+tok, nil, "")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/topics?q=ord" {
		t.Fatalf("token in the URL: %d, Location %q; want a redirect without it", w.Code, w.Header().Get("Location"))
	}
	ck := w.Result().Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", ck)
	}
	if w := do(h, "GET", "http://console.example/topics", map[string]string{"Cookie": ck[0].Name + "=" + ck[0].Value}, ""); w.Code != 200 {
		t.Errorf("with the cookie: %d", w.Code)
	}
	if w := do(h, "GET", "http://console.example/topics", map[string]string{"Authorization": "Bearer " + tok}, ""); w.Code != 200 {
		t.Errorf("with a bearer token: %d", w.Code)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:80": true, "[::1]:0": true, "127.1.2.3:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:80": false, "example.com:80": false, "192.168.1.2:80": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestAFailedSnapshotIsShownNotAnError(t *testing.T) {
	src := &fakeSource{snapErr: errors.New("NOPERM User console has no permissions to run the 'scan' command")}
	w := do(newTestConsole(t, src).Handler(), "GET", "http://127.0.0.1/topics", nil, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "Cannot read the topics") || !strings.Contains(w.Body.String(), "docs/console.md") {
		t.Errorf("topics with a refused snapshot: %d\n%s", w.Code, w.Body)
	}
}

func TestTailBatchesKeepTheNewestAndCountExactly(t *testing.T) {
	var b tailBuf
	for i := range 5000 {
		b.add(&Event{Topic: "t", Seq: uint64(i + 1), Data: []byte(`{}`)})
	}
	bt, ok := b.take()
	if !ok || bt.Total != 5000 || len(bt.Events) != tailBatchMax || bt.Skipped != 5000-tailBatchMax {
		t.Fatalf("batch of 5000: total %d, %d events, %d skipped", bt.Total, len(bt.Events), bt.Skipped)
	}
	if bt.Events[0].Seq != 5000-tailBatchMax+1 || bt.Events[len(bt.Events)-1].Seq != 5000 {
		t.Errorf("batch holds seqs %d…%d, want the newest, in order", bt.Events[0].Seq, bt.Events[len(bt.Events)-1].Seq)
	}
	b.add(&Event{Topic: "t", Seq: 5001, Data: []byte(strings.Repeat("x", 2*tailDataMax))})
	bt, _ = b.take()
	if bt.Total != 5001 || bt.Skipped != 0 || len(bt.Events) != 1 || len(bt.Events[0].Data) > tailDataMax+len("…") {
		t.Errorf("next batch: total %d, skipped %d, %d events", bt.Total, bt.Skipped, len(bt.Events))
	}
	if _, ok := b.take(); ok {
		t.Errorf("an empty batch is reported as one")
	}
}

func TestTailStreamsBatchesOverSSE(t *testing.T) {
	src := &fakeSource{tail: func(yield func(*Event, error) bool) {
		for i := range 3 {
			if !yield(&Event{Topic: "orders", Seq: uint64(i + 1), ID: fmt.Sprint("id-", i+1), Data: []byte(`{"n":1}`)}, nil) {
				return
			}
		}
		yield(nil, &replay.LossError{Topic: "orders", Epoch: "e1", From: 4, To: 9, Reason: replay.Trimmed})
	}}
	c := newTestConsole(t, src)
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/tail?pattern=orders&since=beginning")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), `"ended":true`) {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	for _, want := range []string{"event: ready", "from the beginning", "event: batch", `"total":3`, `"id":"id-3"`, "seq 4..9"} {
		if !strings.Contains(got.String(), want) {
			t.Errorf("stream lacks %q:\n%s", want, got.String())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts.losses != 1 || c.counts.lost != 6 {
		t.Errorf("losses recorded: %+v", c.counts)
	}
	if w := do(c.Handler(), "GET", "http://127.0.0.1/api/tail?pattern=bad%20name", nil, ""); w.Code != 400 {
		t.Errorf("a bad pattern: %d", w.Code)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]Start{
		"": {}, "new": {}, "beginning": {Beginning: true},
		"10m":                  {Since: now.Add(-10 * time.Minute)},
		"2026-01-02T01:00:00Z": {Since: time.Date(2026, 1, 2, 1, 0, 0, 0, time.UTC)},
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Since.Equal(want.Since) || got.Beginning != want.Beginning {
			t.Errorf("parseSince(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-5m", "yesterday", "2026-01-02"} {
		if _, err := parseSince(bad, now); !errors.Is(err, errBadSince) {
			t.Errorf("parseSince(%q): %v, want errBadSince", bad, err)
		}
	}
}

func TestRatesFromHeadSamples(t *testing.T) {
	c := newTestConsole(t, &fakeSource{})
	t0 := time.Now().Add(-10 * time.Second)
	snap := func(epoch string, head uint64) *Snapshot {
		return &Snapshot{Topics: []Topic{{Name: "orders", Epoch: epoch, Head: head}}}
	}
	c.addSamples(snap("e1", 100), t0)
	c.addSamples(snap("e1", 300), t0.Add(2*time.Second)) // 100/s
	c.addSamples(snap("e2", 5), t0.Add(4*time.Second))   // a new epoch: no point
	c.addSamples(snap("e2", 105), t0.Add(8*time.Second)) // 25/s
	rs := c.rates("orders")
	if len(rs) != 2 || rs[0].rate != 100 || rs[1].rate != 25 {
		t.Fatalf("rates %+v", rs)
	}
	sl := spark(rs, t0.Add(8*time.Second))
	if sl.Empty || sl.Now != 25 || sl.Max != 100 || strings.Count(sl.Points, ",") != 2 {
		t.Errorf("sparkline %+v", sl)
	}
	// Samples older than the window go, but one stays for the first interval.
	for i := range 40 {
		c.addSamples(snap("e2", 105+uint64(i)), t0.Add(time.Duration(10+2*i)*time.Second))
	}
	if n := len(c.samples["orders"]); n > 32 {
		t.Errorf("%d samples kept for a minute of 2 s samples", n)
	}
	c.addSamples(&Snapshot{}, time.Now())
	if len(c.samples) != 0 {
		t.Errorf("samples of a topic gone: %v", c.samples)
	}
}

// clusterSource is a fakeSource whose topics each name their master.
type clusterSource struct{ fakeSource }

func (f *clusterSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	s, err := f.fakeSource.Snapshot(ctx)
	if err == nil {
		s.Topics[0].Master, s.Topics[1].Master = "10.0.0.1:6379", "10.0.0.2:6379"
	}
	return s, err
}

// On a Redis Cluster the topics page has a Master column; on a standalone
// Redis it has none.
func TestTopicsShowTheirMasterOnlyOnACluster(t *testing.T) {
	w := do(newTestConsole(t, &clusterSource{}).Handler(), "GET", "http://127.0.0.1:8080/topics", nil, "")
	for _, want := range []string{"<th>Master</th>", `<td data-label="Master"><code>10.0.0.1:6379</code>`, `<td data-label="Master"><code>10.0.0.2:6379</code>`, "summed over every node"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("cluster topics page lacks %q:\n%.2000s", want, w.Body.String())
		}
	}
	w = do(newTestConsole(t, &fakeSource{}).Handler(), "GET", "http://127.0.0.1:8080/topics", nil, "")
	if body := w.Body.String(); strings.Contains(body, "Master") || !strings.Contains(body, `data-name="orders"`) {
		t.Errorf("standalone topics page:\n%.2000s", body)
	}
}
