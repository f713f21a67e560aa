// Command chat is the chat room of the Redis Pub/Sub guides, made durable.
// Each room is a topic. A user who joins late gets the room's history
// replayed, then live messages; a user who drops out and comes back gets
// exactly what was said meanwhile (plain Pub/Sub would show neither).
//
//	go run ./examples/chat                      # a scripted room on a private Redis
//	go run ./examples/chat --redis redis://localhost:6379 --user alice
//	go run ./examples/chat --redis redis://localhost:6379 --user bob
//
// With --user, lines typed on stdin are posted to the room; stop with
// Ctrl-C and start again to see what you missed.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/transport"
)

// ChatMessage is one line said in a room.
type ChatMessage struct {
	User string `json:"user"`
	Text string `json:"text"`
}

// EventType names the event on the wire; it never changes.
func (ChatMessage) EventType() string { return "chat.message" }

func main() {
	exredis.Main("chat", func(ctx context.Context, args []string, stdout io.Writer) error {
		return run(ctx, args, os.Stdin, stdout)
	})
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	room := fs.String("room", "lobby", "room to join")
	user := fs.String("user", "", "chat as this user, posting lines from stdin (default: a scripted demo)")
	history := fs.Duration("history", time.Hour, "how far back a user's first join replays")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tr, _, closeAll, err := exredis.Transport(ctx, *redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeAll()

	out := exredis.NewSyncWriter(stdout)
	topic := "chat." + *room
	if *user == "" {
		return demo(ctx, tr, topic, out)
	}
	var shown atomic.Uint64 // seq of the last message shown
	showed := make(chan struct{}, 1)
	b, err := join(ctx, tr, topic, *user, time.Now().Add(-*history), func(m *bus.Message, c *ChatMessage) {
		fmt.Fprintf(out, "%s %s: %s\n", m.Time.Local().Format("15:04:05"), c.User, c.Text)
		shown.Store(m.Position.Seq)
		select {
		case showed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	defer b.Close() // saves the checkpoint: the next join resumes here
	var last transport.Position
	for line := range lines(ctx, stdin) {
		if last, err = b.Publish(ctx, ChatMessage{User: *user, Text: line}, bus.ToTopic(topic)); err != nil {
			return err
		}
	}
	// Stdin ended (piped input): show the room up to what we said before
	// leaving, for at most a few seconds.
	wait := time.NewTimer(5 * time.Second)
	defer wait.Stop()
	for shown.Load() < last.Seq {
		select {
		case <-showed:
		case <-wait.C:
			return fmt.Errorf("left before seeing our own message #%d in the room", last.Seq)
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// join puts user in the room as a durable consumer named after the user:
// a later join resumes after the last message the user saw; a first join
// replays the messages since the given time. show gets every message, in
// order.
func join(ctx context.Context, tr transport.Transport, topic, user string, since time.Time, show func(*bus.Message, *ChatMessage)) (*bus.Bus, error) {
	b, err := bus.New(tr, bus.WithSource("chat"), bus.WithConsumer("chat-"+user))
	if err != nil {
		return nil, err
	}
	_, err = bus.Subscribe(b, func(ctx context.Context, c *ChatMessage) error {
		m, _ := bus.MessageFrom(ctx) // the envelope and position around c
		show(m, c)
		return nil
	}, bus.OnTopic(topic), bus.StartAt(bus.Since(since)))
	if err != nil {
		return nil, err
	}
	go b.Run(ctx) // until ctx ends or b.Close
	return b, nil
}

// demo plays a conversation in which carol joins late and bob drops out
// and comes back.
func demo(ctx context.Context, tr transport.Transport, topic string, out io.Writer) error {
	r := &room{ctx: ctx, tr: tr, topic: topic, out: out, since: time.Now(), users: map[string]*member{}}
	defer r.closeAll()
	script := []struct{ who, says string }{
		{"alice", "+"}, // + joins, - leaves
		{"bob", "+"},
		{"alice", "hi bob"},
		{"bob", "hi alice"},
		{"carol", "+"}, // late: the two lines above are replayed to her
		{"alice", "welcome carol"},
		{"bob", "-"},
		{"alice", "bob, are you there?"},
		{"carol", "he left"},
		{"bob", "+"}, // back: he gets the two lines he missed, then live
		{"bob", "sorry, train tunnel"},
	}
	for _, s := range script {
		var err error
		switch s.says {
		case "+":
			err = r.enter(s.who)
		case "-":
			r.leave(s.who)
		default:
			err = r.say(s.who, s.says)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// room runs the demo's users, each with its own bus, as separate
// processes would.
type room struct {
	ctx    context.Context
	tr     transport.Transport
	topic  string
	out    io.Writer
	since  time.Time
	posted int64
	users  map[string]*member
}

type member struct {
	b    *bus.Bus // nil while away
	seen atomic.Int64
}

func (r *room) enter(name string) error {
	u := r.users[name]
	if u == nil {
		u = &member{}
		r.users[name] = u
	}
	fmt.Fprintf(r.out, "--- %s joins %s\n", name, r.topic)
	joined := time.Now()
	b, err := join(r.ctx, r.tr, r.topic, name, r.since, func(m *bus.Message, c *ChatMessage) {
		how := "live"
		if m.Time.Before(joined) { // m.Replayed says whether it came from the backlog
			how = "history"
		}
		fmt.Fprintf(r.out, "%-5s | %-7s | %s: %s\n", name, how, c.User, c.Text)
		u.seen.Add(1)
	})
	u.b = b
	if err != nil {
		return err
	}
	return r.waitAll() // until the newcomer has caught up
}

func (r *room) leave(name string) {
	fmt.Fprintf(r.out, "--- %s leaves\n", name)
	r.users[name].b.Close() // saves the checkpoint
	r.users[name].b = nil
}

func (r *room) say(name, text string) error {
	if _, err := r.users[name].b.Publish(r.ctx, ChatMessage{User: name, Text: text}, bus.ToTopic(r.topic)); err != nil {
		return err
	}
	r.posted++
	return r.waitAll()
}

// waitAll waits until everyone in the room has seen every message, so the
// output reads in order.
func (r *room) waitAll() error {
	for _, u := range r.users {
		for u.b != nil && u.seen.Load() < r.posted {
			select {
			case <-r.ctx.Done():
				return r.ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

func (r *room) closeAll() {
	for _, u := range r.users {
		if u.b != nil {
			u.b.Close()
		}
	}
}

// lines yields the lines of r until it ends or ctx does.
func lines(ctx context.Context, r io.Reader) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		ch := make(chan string)
		go func() {
			defer close(ch)
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				select {
				case ch <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case line, ok := <-ch:
				if !ok || !yield(line) {
					return
				}
			}
		}
	}
}
