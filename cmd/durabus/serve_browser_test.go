package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/redistransport"
)

// browserNames are the headless Chromium binaries the tests look for on
// PATH, in this order: Debian's chromium-headless-shell and chromium,
// Ubuntu's chromium-browser, and Chrome for Testing's headless_shell.
var browserNames = []string{"chromium-headless-shell", "chromium", "chromium-browser", "headless_shell"}

// browserWait bounds every wait for a condition in a page: generous, for a
// loaded 2-core machine running -race.
const browserWait = 60 * time.Second

// browserPath finds Chromium, or fails the test saying how to install it.
func browserPath(t testing.TB) string {
	t.Helper()
	for _, n := range browserNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("no headless Chromium on PATH (looked for %s): the console's browser tests need one; "+
		"run make test, which installs it, or: sudo apt-get install chromium-headless-shell (Debian; or chromium)",
		strings.Join(browserNames, ", "))
	return ""
}

// browser is one headless Chromium tab, closed at the end of the test; it
// saves a screenshot when the test failed.
type browser struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	problems []string // JavaScript exceptions and errors the page logged
	expected []string // substrings of errors a test provokes
}

// expectError lets the page log errors containing substr (a request the
// test expects to be refused).
func (b *browser) expectError(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expected = append(b.expected, substr)
}

// newBrowser starts Chromium with a width×height window.
func newBrowser(t testing.TB, width, height int) *browser {
	t.Helper()
	path := browserPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests may run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser, which lives as long as the
	// context of that action: ctx, not one with a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	// Every JavaScript exception or logged error (a script or style the
	// Content-Security-Policy refused, a failed request) fails the test.
	err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				p += " " + ex.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				p = fmt.Sprintf("%s error: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p != "" {
			b.mu.Lock()
			b.problems = append(b.problems, p)
			b.mu.Unlock()
		}
	})
	if err == nil {
		_, err = chromedp.Call(ctx, cdplog.Enable, cdp.Empty{})
	}
	if err != nil {
		t.Fatalf("listen to the page's errors: %v", err)
	}
	t.Cleanup(func() {
		b.mu.Lock()
		problems, expected := b.problems, b.expected
		b.mu.Unlock()
	next:
		for _, p := range problems {
			for _, x := range expected {
				if strings.Contains(p, x) {
					continue next
				}
			}
			t.Errorf("the page logged: %s", p)
		}
		if t.Failed() {
			b.screenshot("failure")
		}
	})
	return b
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// screenshot saves the page as a PNG in a directory that outlives the
// test, and logs its path.
func (b *browser) screenshot(what string) {
	dir := filepath.Join(os.TempDir(), "durabus-console-screenshots")
	name := unsafeName.ReplaceAllString(b.t.Name()+"-"+what, "_") + ".png"
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), png, 0o644)
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot of the page: %s", filepath.Join(dir, name))
}

// do runs steps, failing the test on an error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to url and waits for the page's content.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do("open "+url, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("#content")))
}

// waitJS waits until the JavaScript expression is truthy.
func (b *browser) waitJS(what, expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(browserWait), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v; the page says: %s", what, expr, err, b.text("body"))
	}
}

// eval returns the value of a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the text of the first element matching a CSS selector, or "".
func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel)))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// served is a durabus serve running in the test's process.
type served struct {
	url    string
	stdout *syncBuffer
	stderr *syncBuffer
}

// startServe runs "durabus serve" against redisURL on a free loopback
// port, with extra flags, until the test ends.
func startServe(t *testing.T, redisURL string, env map[string]string, extra ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	args := append([]string{"serve", "--redis", redisURL, "--addr", "127.0.0.1:0"}, extra...)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, strings.NewReader(""), s.stdout, s.stderr, func(k string) string { return env[k] })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("durabus serve exited %d; stderr: %s", code, s.stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("durabus serve did not stop within 30 s of its interrupt")
		}
	})
	re := regexp.MustCompile(`durabus console on (http://[0-9.:]+/)`)
	deadline := time.Now().Add(browserWait)
	for {
		if m := re.FindStringSubmatch(s.stdout.String()); m != nil {
			s.url = m[1]
			return s
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("durabus serve exited %d before serving; stderr: %s", code, s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("durabus serve did not say where it listens within %v; stdout %q, stderr %q", browserWait, s.stdout.String(), s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fixture is a private Redis with a bus on it for publishing test data.
type fixture struct {
	srv *redistest.Server
	url string
	tr  *redistransport.Transport
	bus *bus.Bus
}

func newFixture(t *testing.T, opts ...redistest.Option) *fixture {
	t.Helper()
	srv := redistest.Start(t, opts...)
	tr, err := redistransport.New(srv.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(tr, bus.WithSource("console-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = tr.Close()
	})
	return &fixture{srv: srv, url: redisURL(srv), tr: tr, bus: b}
}

// publish publishes n events of type typ to topic and returns the last
// one's envelope.
func (f *fixture) publish(t testing.TB, topic, typ string, n int) (*envelope.Envelope, transport.Position) {
	t.Helper()
	var last *envelope.Envelope
	var pos transport.Position
	for i := range n {
		e, err := envelope.NewRaw(typ, fmt.Appendf(nil, `{"n":%d,"topic":%q}`, i+1, topic))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		pos, err = f.bus.PublishEnvelope(ctx, topic, e)
		cancel()
		if err != nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
		last = e
	}
	return last, pos
}

// deadLetter publishes an event to topic and its dead letter (cause,
// attempts) to topic.dead, and returns the event.
func (f *fixture) deadLetter(t testing.TB, topic, typ, cause string, attempts int) *envelope.Envelope {
	t.Helper()
	e, pos := f.publish(t, topic, typ, 1)
	m := &bus.Message{Envelope: e, Topic: topic, Position: pos}
	if _, err := f.bus.PublishEnvelope(context.Background(), bus.DeadLetterTopic(topic), bus.NewDeadLetter(m, fmt.Errorf("%s", cause), attempts)); err != nil {
		t.Fatal(err)
	}
	return e
}

// head is topic's head seq.
func (f *fixture) head(t testing.TB, topic string) uint64 {
	t.Helper()
	h, err := f.tr.Head(context.Background(), topic)
	if err != nil {
		t.Fatalf("head of %s: %v", topic, err)
	}
	return h.Seq
}
