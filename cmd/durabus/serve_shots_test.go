package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// TestServeScreenshots takes the screenshots of docs/console.md against a
// demo data set, when DURABUS_CONSOLE_SHOTS names the directory to write
// them to:
//
//	DURABUS_CONSOLE_SHOTS=$PWD/docs go test -run TestServeScreenshots ./cmd/durabus
//
// Without it, it checks that the demo data set renders, and that the
// console's own follower reports a log reset as a loss and a killed
// Pub/Sub connection as a reconnect; it writes nothing.
func TestServeScreenshotsAndFollowerNotices(t *testing.T) {
	t.Parallel()
	dir := os.Getenv("DURABUS_CONSOLE_SHOTS")
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})

	// Dead letters, a durable consumer behind and one up to date.
	f.deadLetter(t, "orders", "order.placed", "payment service: card declined (402)", 3)
	f.deadLetter(t, "orders", "order.placed", "inventory: sku A-113 unknown", 5)
	f.deadLetter(t, "orders", "order.placed", "context deadline exceeded", 1)
	f.publish(t, "shipments", "shipment.sent", 40)
	f.publish(t, "users.signup", "user.signed_up", 12)
	f.publish(t, "audit", "audit.entry", 3)
	_, ordersPos := f.publish(t, "orders", "order.placed", 200)
	_, shipPos := f.publish(t, "shipments", "shipment.sent", 1)
	mustSave(t, f.tr, "billing", map[string]transport.Position{"orders": {Epoch: ordersPos.Epoch, Seq: ordersPos.Seq - 180, ID: ordersPos.ID}})
	mustSave(t, f.tr, "shipping", map[string]transport.Position{"shipments": shipPos})

	s := startServe(t, f.url, nil)
	// Publishers at changing rates, so the rate charts have a shape.
	for _, p := range []struct {
		topic, typ string
		base       float64
	}{{"orders", "order.placed", 40}, {"payments", "payment.made", 15}, {"shipments", "shipment.sent", 6}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			for i := 0; ctx.Err() == nil; i++ {
				rate := p.base * (1.2 + math.Sin(time.Since(start).Seconds()/4))
				e, _ := envelope.NewRaw(p.typ, fmt.Appendf(nil, `{"id":"%s-%d","total":%d}`, p.topic[:1], i, 10+i%90))
				_, _ = f.bus.PublishEnvelope(ctx, p.topic, e)
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(float64(time.Second) / max(rate, 1))):
				}
			}
		}()
	}
	// A log reset under the console's follower: it reports the loss.
	b := newBrowser(t, 1280, 800)
	b.open(s.url + "losses")
	b.waitJS("the follower running", `document.body.textContent.includes("follows *")`)
	f.publish(t, "audit", "audit.entry", 2)
	rdb := f.srv.Client(t)
	if err := rdb.Del(context.Background(), "durabus:{audit}:log", "durabus:{audit}:meta").Err(); err != nil {
		t.Fatal(err)
	}
	f.publish(t, "audit", "audit.entry", 1)
	if err := rdb.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	b.waitJS("a loss and a reconnect", `document.getElementById("loss-count").textContent !== "0" && document.getElementById("reconnect-count").textContent !== "0"`)

	b.open(s.url + "topics")
	if dir != "" {
		time.Sleep(25 * time.Second) // not a test condition: a rate chart worth looking at
	}
	b.waitJS("the topics", `document.querySelectorAll('tr[data-name]').length >= 5`)
	shot(t, b, dir, "console-topics.png")
	b.open(s.url + "consumers")
	shot(t, b, dir, "console-consumers.png")
	b.open(s.url + "dead?topic=orders")
	b.waitJS("the dead letters", `document.querySelectorAll('#dead tr[data-id]').length === 3`)
	b.do("inspect the first", chromedp.Click(chromedp.CSS(`#dead tr.detail summary`)))
	shot(t, b, dir, "console-dead.png")
	b.open(s.url + "tail")
	b.do("tail orders", chromedp.SetValue(chromedp.CSS("#tail-pattern"), "orders"),
		chromedp.SetValue(chromedp.CSS("#tail-from"), "1m"), chromedp.Click(chromedp.CSS("#tail-start")))
	b.waitJS("events in the tail", `document.querySelectorAll('#tail-rows tr').length > 20`)
	shot(t, b, dir, "console-tail.png")
	b.open(s.url + "losses")
	shot(t, b, dir, "console-losses.png")

	m := newBrowser(t, 390, 844)
	m.open(s.url + "topics")
	m.waitJS("the topics", `document.querySelectorAll('tr[data-name]').length >= 5`)
	shot(t, m, dir, "console-topics-390.png")
}

func mustSave(t *testing.T, tr transport.CheckpointStore, consumer string, cps map[string]transport.Position) {
	t.Helper()
	if err := tr.SaveCheckpoints(context.Background(), consumer, cps); err != nil {
		t.Fatalf("save checkpoints of %s: %v", consumer, err)
	}
}

// shot saves the browser's viewport as dir/name, when dir is set.
func shot(t *testing.T, b *browser, dir, name string) {
	t.Helper()
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d KiB)", filepath.Join(dir, name), len(png)/1024)
}
