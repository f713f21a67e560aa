package main

import (
	"fmt"
	"net/http"

	"github.com/chromedp/chromedp"

	"github.com/durabus/durabus/internal/redistest"

	"strings"
	"testing"
	"time"
)

func TestServeTopicsShowPublishedCountsAndSearch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "orders", "order.placed", 7)
	f.publish(t, "payments", "payment.made", 3)
	s := startServe(t, f.url, nil)
	b := newBrowser(t, 1280, 900)
	b.open(s.url + "topics")
	cell := func(topic, col string) string {
		return fmt.Sprintf(`(document.querySelector('tr[data-name=%q] td.%s')||{}).textContent`, topic, col)
	}
	b.waitJS("the orders row with 7 events", cell("orders", "backlog")+` === "7" && `+cell("orders", "head")+` === "7"`)
	b.waitJS("the payments row with 3 events", cell("payments", "backlog")+` === "3"`)

	// The page refreshes itself: 5 more events show without a reload.
	f.publish(t, "orders", "order.placed", 5)
	b.waitJS("the orders row with 12 events after a refresh", cell("orders", "backlog")+` === "12" && `+cell("orders", "head")+` === "12"`)
	b.waitJS("a rate chart for orders", `document.querySelector('tr[data-name="orders"] svg.spark polyline') !== null`)

	// Search hides what does not match, by substring or glob.
	b.do("search for pay", chromedp.SendKeys(chromedp.CSS("#q"), "pay"))
	b.waitJS("orders hidden by the search", `document.querySelector('tr[data-name="orders"]').hidden && !document.querySelector('tr[data-name="payments"]').hidden`)
}

func TestServeLiveTailShowsAnEventWithinTwoSeconds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "orders", "order.placed", 4)
	s := startServe(t, f.url, nil)
	b := newBrowser(t, 1280, 900)
	b.open(s.url + "tail")
	b.do("start a tail of orders.*",
		chromedp.SetValue(chromedp.CSS("#tail-pattern"), "orders.*"),
		chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitJS("the tail to start", `document.getElementById("tail-status").textContent.startsWith("Tailing")`)
	// A first event proves the follower is live; the second one is timed.
	warm, _ := f.publish(t, "orders.eu", "order.placed", 1)
	b.waitJS("the first live event", fmt.Sprintf(`document.querySelector('#tail-rows tr[data-id=%q]') !== null`, warm.ID))
	e, _ := f.publish(t, "orders.us", "order.placed", 1)
	published := time.Now()
	b.waitJS("the timed live event", fmt.Sprintf(`document.querySelector('#tail-rows tr[data-id=%q]') !== null`, e.ID))
	if took := time.Since(published); took > 2*time.Second {
		t.Errorf("the live event appeared %v after its publish returned, want within 2 s", took.Round(time.Millisecond))
	}
	if got := eval[string](b, `document.querySelectorAll('#tail-rows tr').length + ""`); got != "2" {
		t.Errorf("the tail of new events shows %s rows, want 2 (the 4 older events are not new)", got)
	}
	b.waitJS("the page says it samples at high rates", `document.getElementById("tail-rendering").textContent.includes("5 000 events/s")`)

	// Replay from the beginning, chosen on the page, shows the backlog.
	b.do("restart the tail of orders from the beginning",
		chromedp.SetValue(chromedp.CSS("#tail-pattern"), "orders"),
		chromedp.SetValue(chromedp.CSS("#tail-from"), "beginning"),
		chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitJS("the 4 events of orders replayed", `document.querySelectorAll('#tail-rows tr').length === 4`)
}

func TestServeRequeuesADeadLetterWithTheButton(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	first := f.deadLetter(t, "orders", "order.placed", "card declined", 3)
	second := f.deadLetter(t, "orders", "order.placed", "address unknown", 5)
	before := f.head(t, "orders")
	s := startServe(t, f.url, nil, "--allow-write")
	b := newBrowser(t, 1280, 900)
	b.open(s.url + "dead?topic=orders")
	row := func(id string) string { return fmt.Sprintf(`document.querySelector('#dead tr[data-id=%q]')`, id) }
	b.waitJS("both dead letters listed", row(first.ID)+` !== null && `+row(second.ID)+` !== null`)
	if got := b.text(`#dead tr[data-id="` + first.ID + `"]`); !strings.Contains(got, "card declined") || !strings.Contains(got, "3") {
		t.Errorf("the first dead letter's row %q lacks its error and attempts", got)
	}
	// Inspect shows the envelope pretty-printed.
	b.do("inspect the first", chromedp.Click(chromedp.CSS(`#d-`+first.ID+` summary`)))
	b.waitJS("the pretty envelope", fmt.Sprintf(`document.querySelector('#d-%s pre.json').textContent.includes('\n  "id": %q')`, first.ID, first.ID))

	b.do("requeue the first", chromedp.Click(chromedp.CSS(`#dead tr[data-id="`+first.ID+`"] button.requeue`)))
	b.waitJS("the requeued dead letter gone from the list", row(first.ID)+` === null && `+row(second.ID)+` !== null`)
	b.waitJS("the answer shown", `document.getElementById("flash").textContent.includes("requeued 1 dead letter(s) of orders")`)
	if got := f.head(t, "orders"); got != before+1 {
		t.Fatalf("orders head %d after the requeue, want %d", got, before+1)
	}
	last, err := f.srv.Client(t).XRevRangeN(t.Context(), "durabus:{orders}:log", "+", "-", 1).Result()
	if err != nil || len(last) != 1 || !strings.Contains(fmt.Sprint(last[0].Values["e"]), first.ID) {
		t.Errorf("the last entry of orders after the requeue: %v, %v; want event %s", last, err, first.ID)
	}

	b.do("requeue all", chromedp.Click(chromedp.CSS("#requeue-all")))
	b.waitJS("the list empty", `document.querySelectorAll('#dead tr[data-id]').length === 0`)
}

func TestServeRefusesAWriteWithoutAllowWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	e := f.deadLetter(t, "orders", "order.placed", "card declined", 3)
	before := f.head(t, "orders")
	s := startServe(t, f.url, nil)
	b := newBrowser(t, 1280, 900)
	b.open(s.url + "dead?topic=orders")
	b.waitJS("the dead letter listed", fmt.Sprintf(`document.querySelector('#dead tr[data-id=%q]') !== null`, e.ID))
	b.expectError("status of 403 (Forbidden) (" + s.url + "api/requeue)")
	b.do("click requeue", chromedp.Click(chromedp.CSS(`#dead tr[data-id="`+e.ID+`"] button.requeue`)))
	b.waitJS("the refusal shown", `document.getElementById("flash").textContent.includes("Refused (403)") && document.getElementById("flash").textContent.includes("--allow-write")`)
	// The page refreshes; the dead letter stays and nothing was published.
	b.waitJS("the dead letter still listed after a refresh", fmt.Sprintf(`document.getElementById("content").dataset.updated && document.querySelector('#dead tr[data-id=%q]') !== null`, e.ID))
	if got := f.head(t, "orders"); got != before {
		t.Errorf("orders head %d after a refused requeue, want %d", got, before)
	}
}

func TestServeRefusesANonLoopbackAddressWithoutAToken(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":8080", "[::]:0", "192.0.2.1:8080"} {
		r := cli(t, "", nil, "serve", "--addr", addr)
		oneErrorLine(t, r, 2, "not a loopback address, without a token: give --token or DURABUS_CONSOLE_TOKEN")
	}
	r := cli(t, "", nil, "serve", "--addr", "0.0.0.0:0", "--token", "short")
	oneErrorLine(t, r, 2, "want at least 16")
}

// consoleACL is the read-only user of docs/console.md: everything the
// console shows, nothing it could change.
const consoleACL = "console on >console-secret-pw resetchannels ~durabus:* &durabus:* &durabus:{*} -@all " +
	"+ping +hmget +hget +get +hgetall +exists +xlen +xrange +xrevrange +zrange +scan +memory|usage " +
	"+pubsub|numsub +pubsub|numpat +subscribe +psubscribe +unsubscribe +punsubscribe"

func TestServeWorksWithAReadOnlyUserAndSaysWhatItCannotDo(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.WithACL(consoleACL))
	f.publish(t, "orders", "order.placed", 3)
	e := f.deadLetter(t, "orders", "order.placed", "card declined", 2)
	ro := "redis://console:console-secret-pw@" + f.srv.Addr()
	s := startServe(t, ro, nil, "--allow-write")
	b := newBrowser(t, 1280, 900)

	b.open(s.url + "topics")
	b.waitJS("the orders row", `(document.querySelector('tr[data-name="orders"] td.head')||{}).textContent === "4"`)
	if got := b.text("#snapshot-error"); got != "" {
		t.Errorf("the topics page shows an error with the read-only user: %s", got)
	}
	b.open(s.url + "dead?topic=orders")
	b.waitJS("the dead letter listed", fmt.Sprintf(`document.querySelector('#dead tr[data-id=%q]') !== null`, e.ID))
	b.expectError("status of 502 (Bad Gateway) (" + s.url + "api/requeue)")
	b.do("requeue", chromedp.Click(chromedp.CSS(`#dead tr[data-id="`+e.ID+`"] button.requeue`)))
	b.waitJS("the refusal by Redis explained", `document.getElementById("flash").textContent.includes("NOPERM") && document.getElementById("flash").textContent.includes("publishing rights")`)

	b.open(s.url + "tail?pattern=orders")
	b.do("tail orders from the beginning", chromedp.SetValue(chromedp.CSS("#tail-from"), "beginning"), chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitJS("the 4 events of orders", `document.querySelectorAll('#tail-rows tr').length === 4`)
	b.open(s.url + "losses")
	b.waitJS("the console's follower running", `document.body.textContent.includes("follows *")`)
	if got := b.text("#notices"); strings.Contains(got, "NOPERM") {
		t.Errorf("the console's follower was refused something with the read-only user:\n%s", got)
	}
}

func TestServeViewsFitA390PixelWideScreen(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "orders.with.a.rather.long.topic.name", "order.placed", 2)
	f.deadLetter(t, "orders", "order.placed", strings.Repeat("a long error message ", 20), 3)
	s := startServe(t, f.url, nil)
	b := newBrowser(t, 390, 844)
	for _, page := range []string{"topics", "consumers", "dead?topic=orders", "tail", "losses"} {
		b.open(s.url + page)
		b.waitJS(page+" rendered", `document.querySelector("#content h1") !== null`)
		if w := eval[float64](b, `document.documentElement.scrollWidth`); w > 390 {
			b.screenshot(strings.Split(page, "?")[0])
			t.Errorf("%s is %v px wide in a 390 px window: it scrolls sideways", page, w)
		}
	}
}

func TestServeTakesItsTokenFromTheEnvironment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const tok = "a-token-of-32-characters-or-so-0"
	s := startServe(t, f.url, map[string]string{"DURABUS_CONSOLE_TOKEN": tok})
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", s.url+"topics", nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(""); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", code)
	}
	if code := get(tok); code != http.StatusOK {
		t.Errorf("with the token: %d, want 200", code)
	}
}
