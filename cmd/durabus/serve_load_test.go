package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/durabus/durabus/envelope"
)

// TestServeTailAt5000PerSecond measures the live tail's page under 5 000
// events/s, when DURABUS_CONSOLE_LOAD is set (it loads the machine for
// DURABUS_CONSOLE_LOAD seconds, so it is not part of make test):
//
//	DURABUS_CONSOLE_LOAD=15 go test -run TestServeTailAt5000PerSecond -v ./cmd/durabus
//
// It reports the rate the page saw, the longest gap between two animation
// frames (how long the page could not react) and how long a click on
// Pause took to show.
func TestServeTailAt5000PerSecond(t *testing.T) {
	secs := os.Getenv("DURABUS_CONSOLE_LOAD")
	if secs == "" {
		t.Skip("a measurement: set DURABUS_CONSOLE_LOAD=15 to run it")
	}
	dur, err := time.ParseDuration(secs + "s")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	s := startServe(t, f.url, nil, "--follow", "")
	b := newBrowser(t, 1280, 900)
	b.open(s.url + "tail")
	b.do("tail load", chromedp.SetValue(chromedp.CSS("#tail-pattern"), "load"), chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitJS("the tail to start", `document.getElementById("tail-status").textContent.startsWith("Tailing")`)

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	published := 0
	go func() { // 50 events every 10 ms
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			evs := make([]*envelope.Envelope, 50)
			for i := range evs {
				evs[i], _ = envelope.NewRaw("load.tick", fmt.Appendf(nil, `{"i":%d}`, published+i))
			}
			for _, e := range evs {
				if _, err := f.bus.PublishEnvelope(ctx, "load", e); err == nil {
					published++
				}
			}
			<-tick.C
		}
	}()
	// Watch the frames while the load runs.
	b.do("watch frames", chromedp.Evaluate[chromedp.Void](`window.__gap = 0; (function f(last){ requestAnimationFrame(function(now){ if (last) window.__gap = Math.max(window.__gap, now - last); f(now); }); })(0)`))
	time.Sleep(dur / 2) // a measurement, not a test condition
	clicked := time.Now()
	b.do("pause", chromedp.Click(chromedp.CSS("#tail-pause")))
	b.waitJS("paused", `document.getElementById("tail-status").textContent.startsWith("Paused")`)
	pauseTook := time.Since(clicked)
	<-ctx.Done()
	wg.Wait()
	gap := eval[float64](b, `window.__gap`)
	status := b.text("#tail-status")
	rows := eval[float64](b, `document.querySelectorAll('#tail-rows tr').length`)
	t.Logf("published %d events in %v (%.0f/s); longest frame gap %.0f ms; Pause showed after %v; %v rows in the page; status: %s",
		published, dur, float64(published)/dur.Seconds(), gap, pauseTook.Round(time.Millisecond), rows, status)
}
