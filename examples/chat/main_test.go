package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestChatLateJoinerGetsHistoryAndReturningUserGetsWhatHeMissed(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"--redis", url}, strings.NewReader(""), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	seen := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if who, rest, ok := strings.Cut(line, " | "); ok {
			who = strings.TrimSpace(who)
			seen[who] = append(seen[who], rest)
		}
	}
	want := map[string][]string{
		"alice": {"live    | alice: hi bob", "live    | bob: hi alice", "live    | alice: welcome carol",
			"live    | alice: bob, are you there?", "live    | carol: he left", "live    | bob: sorry, train tunnel"},
		"carol": {"history | alice: hi bob", "history | bob: hi alice", "live    | alice: welcome carol",
			"live    | alice: bob, are you there?", "live    | carol: he left", "live    | bob: sorry, train tunnel"},
		"bob": {"live    | alice: hi bob", "live    | bob: hi alice", "live    | alice: welcome carol",
			"history | alice: bob, are you there?", "history | carol: he left", "live    | bob: sorry, train tunnel"},
	}
	for who, lines := range want {
		if got := strings.Join(seen[who], "\n"); got != strings.Join(lines, "\n") {
			t.Errorf("%s saw:\n%s\nwant:\n%s", who, got, strings.Join(lines, "\n"))
		}
	}
}

func TestChatUserSeesWhatWasSaidBeforeTheyJoined(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	// chatFor runs the chat as user, typing typed, until its screen shows
	// want (or a deadline generous enough for a loaded machine passes),
	// then leaves as Ctrl-C would.
	chatFor := func(user, typed, want string) string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stdin, w := io.Pipe() // stays open, like a terminal
		t.Cleanup(func() { w.Close() })
		go io.WriteString(w, typed)
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"--redis", url, "--user", user}, stdin, &out) }()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return out.String()
	}
	// alice's own line on her screen: it was posted.
	if got := chatFor("alice", "anyone here?\n", "alice: anyone here?"); !strings.Contains(got, "alice: anyone here?") {
		t.Fatalf("alice's screen:\n%s\nwant her own line", got)
	}
	if got := chatFor("bob", "", "alice: anyone here?"); !strings.Contains(got, "alice: anyone here?") {
		t.Errorf("bob's screen:\n%s\nwant alice's earlier line", got)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// With piped input the user's lines are posted, and shown, before the
// program ends at the end of its input.
func TestChatWithPipedInputShowsWhatItPosted(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"--redis", url, "--user", "dave"}, strings.NewReader("hello\nanyone here?\n"), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " dave: hello\n") || !strings.HasSuffix(out.String(), " dave: anyone here?\n") {
		t.Errorf("piped chat printed:\n%s", out.String())
	}
}
