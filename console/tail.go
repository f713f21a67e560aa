package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/durabus/durabus/transport"
)

// The live tail sends what it saw every tailEvery, at most tailBatchMax
// events (the newest) per batch, with exact counts; the page keeps the
// newest tailRows rows. At 5 000 events/s the browser gets a sample, and
// stays responsive.
const (
	tailEvery     = 250 * time.Millisecond
	tailBatchMax  = 100
	tailRows      = 300
	tailDataMax   = 600 // bytes of data shown per event
	tailHeartbeat = 15 * time.Second
)

// tailEvent is one event as the page gets it.
type tailEvent struct {
	Topic    string `json:"topic"`
	Epoch    string `json:"epoch"`
	Seq      uint64 `json:"seq"`
	Time     string `json:"time"`
	Type     string `json:"type"`
	ID       string `json:"id"`
	Replayed bool   `json:"replayed,omitempty"`
	Data     string `json:"data"`
}

// tailBatch is one Server-Sent Event of the tail.
type tailBatch struct {
	// Total is the number of events the tail has seen so far.
	Total uint64 `json:"total"`
	// Skipped is the number of events since the last batch not in Events.
	Skipped uint64      `json:"skipped"`
	Events  []tailEvent `json:"events"`
	Notices []string    `json:"notices,omitempty"`
	// Ended is set when the tail stopped (its error is in Notices).
	Ended bool `json:"ended,omitempty"`
}

// tailBuf collects what the tail's goroutine sees for the next batch.
type tailBuf struct {
	mu      sync.Mutex
	ring    []tailEvent // the newest, at most tailBatchMax
	next    int         // where the next event goes once ring is full
	total   uint64
	taken   uint64 // total at the last take
	notices []string
	ended   bool
}

func (b *tailBuf) add(e *Event) {
	data := e.Data
	if len(data) > tailDataMax {
		data = data[:tailDataMax]
		for len(data) > 0 && !utf8.Valid(data) {
			data = data[:len(data)-1]
		}
	}
	te := tailEvent{Topic: e.Topic, Epoch: e.Epoch, Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano),
		Type: e.Type, ID: e.ID, Replayed: e.Replayed, Data: string(data)}
	if len(e.Data) > tailDataMax {
		te.Data += "…"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total++
	if len(b.ring) < tailBatchMax {
		b.ring = append(b.ring, te)
		return
	}
	b.ring[b.next] = te
	b.next = (b.next + 1) % tailBatchMax
}

func (b *tailBuf) notice(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.notices) < 20 {
		b.notices = append(b.notices, msg)
	}
}

func (b *tailBuf) end(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	if msg != "" {
		b.notices = append(b.notices, msg)
	}
}

// take returns the batch since the last take, oldest event first, and
// whether there is anything in it.
func (b *tailBuf) take() (tailBatch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := make([]tailEvent, 0, len(b.ring))
	evs = append(evs, b.ring[b.next:]...)
	evs = append(evs, b.ring[:b.next]...)
	n := b.total - b.taken
	bt := tailBatch{Total: b.total, Skipped: n - uint64(len(evs)), Events: evs, Notices: b.notices, Ended: b.ended}
	b.ring, b.next, b.taken, b.notices = b.ring[:0], 0, b.total, nil
	return bt, n > 0 || len(bt.Notices) > 0 || bt.Ended
}

// serveTail streams the events of ?pattern from ?since as Server-Sent
// Events: "batch" events with tailBatch JSON.
func (c *Console) serveTail(w http.ResponseWriter, r *http.Request) {
	pattern := r.URL.Query().Get("pattern")
	var err error
	if transport.IsPattern(pattern) {
		err = transport.ValidatePattern(pattern)
	} else {
		err = transport.ValidateTopic(pattern)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	start, err := parseSince(r.URL.Query().Get("since"), time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream has no end to wait for
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	buf := &tailBuf{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range c.src.Tail(ctx, pattern, start) {
			if err != nil {
				c.reportErr("tail "+pattern, err)
				buf.notice(err.Error())
				continue
			}
			buf.add(e)
		}
		if ctx.Err() == nil {
			buf.end("the tail ended")
		}
	}()
	defer func() {
		cancel()
		<-done
	}()

	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send("ready", map[string]any{"pattern": pattern, "start": describeStart(start)}); err != nil {
		return
	}
	tick := time.NewTicker(tailEvery)
	defer tick.Stop()
	lastWrite := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		bt, ok := buf.take()
		switch {
		case ok:
			if send("batch", bt) != nil {
				return
			}
			lastWrite = time.Now()
			if bt.Ended {
				return
			}
		case time.Since(lastWrite) > tailHeartbeat:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			lastWrite = time.Now()
		}
	}
}

func describeStart(s Start) string {
	switch {
	case s.Beginning:
		return "from the beginning of the backlog"
	case !s.Since.IsZero():
		return "since " + s.Since.UTC().Format("2006-01-02 15:04:05Z")
	}
	return "new events only"
}
