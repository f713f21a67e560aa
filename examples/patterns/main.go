// Command patterns follows every topic named like "user:*:notifications"
// with one handler: the topics that existed before it started (replayed
// from their backlogs) and those created while it runs (picked up from
// their first event). "user:1:settings" does not match and is not
// delivered.
//
//	go run ./examples/patterns [--users 4] [--redis redis://localhost:6379]
//
// Topic names may hold A-Z a-z 0-9 . _ : - so "user:42:notifications" is a
// topic; a pattern adds the glob characters * ? [ ].
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
)

// Notification is published to one user's topic.
type Notification struct {
	Text string `json:"text"`
}

func (Notification) EventType() string { return "notification" }

func main() { exredis.Main("patterns", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("patterns", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	users := fs.Int("users", 4, "users; the first half have topics before the subscriber starts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tr, _, closeAll, err := exredis.Transport(ctx, *redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeAll()
	out := exredis.NewSyncWriter(stdout) // topics run concurrently: so do handler calls

	pub, err := bus.New(tr, bus.WithSource("notifier"))
	if err != nil {
		return err
	}
	defer pub.Close()
	sent := 0
	notify := func(topic, text string) error {
		_, err := pub.Publish(ctx, Notification{Text: text}, bus.ToTopic(topic))
		sent++
		return err
	}

	// Before the subscriber: topics of the first half of the users, and one
	// topic that does not match the pattern.
	for u := 1; u <= *users/2; u++ {
		if err := notify(fmt.Sprintf("user:%d:notifications", u), "welcome (sent before the subscriber started)"); err != nil {
			return err
		}
	}
	if err := notify("user:1:settings", "theme=dark"); err != nil {
		return err
	}
	sent-- // not for the pattern

	sub, err := bus.New(tr)
	if err != nil {
		return err
	}
	defer sub.Close()
	var got atomic.Int64
	_, err = sub.Handle("user:*:notifications", bus.HandlerFunc(func(ctx context.Context, m *bus.Message) error {
		var n Notification
		if err := m.Bind(&n); err != nil { // Handle is untyped: it sees the envelope
			return err
		}
		fmt.Fprintf(out, "%-22s seq %d: %s\n", m.Topic, m.Position.Seq, n.Text)
		got.Add(1)
		return nil
	}), bus.StartAt(bus.Beginning()))
	if err != nil {
		return err
	}
	go sub.Run(ctx) // until ctx ends or Close

	// While it runs: every user, so the second half's topics are new.
	for u := 1; u <= *users; u++ {
		if err := notify(fmt.Sprintf("user:%d:notifications", u), "you have a new message"); err != nil {
			return err
		}
	}
	for got.Load() < int64(sent) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	topics, err := tr.Topics(ctx, "user:*:notifications")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "summary: %d notifications on %d topics matching user:*:notifications\n", got.Load(), len(topics))
	return nil
}
