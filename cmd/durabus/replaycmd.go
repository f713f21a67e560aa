package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/durabus/durabus/transport"
)

// replayPage is how many events one backlog read of replay fetches.
const replayPage = 1000

type replayOpts struct {
	since, until, out string
}

func init() {
	register(&command{
		name:    "replay",
		args:    "TOPIC",
		summary: "dump a range of a topic's backlog as JSON lines",
		help: `Writes the events of TOPIC's backlog from --since to --until, in order,
as JSON lines {topic, epoch, seq, streamid, event}, where event is the
envelope as stored. It ends at --until, or at the head as of the start.

--since: beginning (the default), a duration ago such as 10m, an RFC 3339
time, a seq number N (from seq N on) or a position epoch:seq:id (after that
event). --until: a time (a duration ago, RFC 3339) or a seq or position (up
to and including it).

--out FILE writes to FILE instead of stdout. A progress bar is drawn on
stderr when stderr is a terminal. Events trimmed from the backlog before
they could be read are reported on stderr.`,
		flags: func(fs *flag.FlagSet) any {
			o := &replayOpts{}
			fs.StringVar(&o.since, "since", "beginning", "first event: `WHEN` is beginning, 10m, RFC 3339, seq or epoch:seq:id")
			fs.StringVar(&o.until, "until", "", "last event: `WHEN` is a time (10m ago, RFC 3339), a seq or epoch:seq:id (default: the head at the start)")
			fs.StringVar(&o.out, "out", "", "write the JSON lines to `FILE` (default stdout)")
			return o
		},
		run: runReplay,
	})
}

func runReplay(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*replayOpts)
	if len(args) != 1 {
		return usagef("replay: want exactly one TOPIC, got %d arguments", len(args))
	}
	topic := args[0]
	if err := transport.ValidateTopic(topic); err != nil {
		return usagef("replay: %v", err)
	}
	now := time.Now()
	since, err := parsePoint("since", o.since, now)
	if err != nil {
		return err
	}
	if since.kind == pointNew {
		return usagef("replay: --since new would replay nothing; use beginning, a time or a position")
	}
	until, hasUntil, err := untilPoint(o.until, now)
	if err != nil {
		return err
	}
	c, err := connect(ctx, e)
	if err != nil {
		return err
	}
	defer c.Close()
	tr := c.tr

	head, err := tr.Head(ctx, topic)
	if errors.Is(err, transport.ErrUnknownTopic) {
		return fmt.Errorf("topic %q has no backlog in namespace %q (never published to, or its log was deleted)", topic, c.ns)
	}
	if err != nil {
		return err
	}
	var after transport.Position
	switch since.kind {
	case pointTime:
		if after, err = tr.Seek(ctx, topic, since.t); err != nil {
			return err
		}
	case pointSeq:
		after = transport.Position{Epoch: head.Epoch, Seq: since.seq - 1}
	case pointPos:
		after = since.pos
		if after.Epoch != head.Epoch {
			fmt.Fprintf(e.stderr, "durabus: warning: position %s is of epoch %s, the log is now in epoch %s: replaying from its oldest event\n", after, after.Epoch, head.Epoch)
			after = transport.Position{}
		}
	}

	var w io.Writer = e.stdout
	var file *os.File
	if o.out != "" {
		if file, err = os.Create(o.out); err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	bw := bufio.NewWriterSize(w, 64*1024)
	var bar *progress
	if f, ok := e.stderr.(*os.File); ok && isTerminal(f) {
		bar = newProgress(f, topic, after.Seq, head.Seq)
	}

	n, first := 0, true
	expect := after.Seq + 1
	err = func() error {
		for {
			page, err := tr.Range(ctx, topic, after, replayPage)
			if err != nil {
				return err
			}
			if page.Epoch != head.Epoch {
				fmt.Fprintf(e.stderr, "durabus: warning: the log of %q was reset (epoch %s → %s) during the replay; stopped\n", topic, head.Epoch, page.Epoch)
				return nil
			}
			for _, d := range page.Events {
				if d.Position.Seq > head.Seq {
					return nil
				}
				if d.Position.Seq > expect && (!first || after.Epoch != "") {
					fmt.Fprintf(e.stderr, "durabus: warning: %q seq %d..%d no longer in the backlog (trimmed)\n", topic, expect, d.Position.Seq-1)
				}
				first = false
				expect = d.Position.Seq + 1
				if hasUntil && until.kind == pointTime {
					if t, ok := eventTime(d.Data); ok && t.After(until.t) {
						return nil
					}
				} else if hasUntil && until.past(d.Position, time.Time{}) {
					return nil
				}
				if err := writeJSONLine(bw, newRecord(topic, d.Position, d.Data)); err != nil {
					return err
				}
				n++
				bar.set(d.Position.Seq)
				if hasUntil && until.reached(d.Position) {
					return nil
				}
			}
			if len(page.Events) < replayPage {
				return nil
			}
			after = page.Events[len(page.Events)-1].Position
		}
	}()
	bar.done()
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if file != nil {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			fmt.Fprintf(e.stderr, "durabus: wrote %d event(s) of %q to %s\n", n, topic, o.out)
		}
	}
	return err
}

// eventTime reads the "time" attribute of an encoded envelope.
func eventTime(data []byte) (time.Time, bool) {
	var v struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.Time.IsZero() {
		return time.Time{}, false
	}
	return v.Time, true
}

// progress draws a one-line progress bar on a terminal. A nil *progress
// draws nothing.
type progress struct {
	w        *os.File
	label    string
	from, to uint64
	last     time.Time
}

func newProgress(w *os.File, label string, from, to uint64) *progress {
	return &progress{w: w, label: label, from: from, to: to}
}

func (p *progress) set(seq uint64) {
	if p == nil || time.Since(p.last) < 100*time.Millisecond && seq < p.to {
		return
	}
	p.last = time.Now()
	total := p.to - p.from
	doneN := seq - p.from
	frac := 1.0
	if total > 0 {
		frac = float64(doneN) / float64(total)
	}
	const width = 30
	filled := int(frac * width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d %3.0f%%", p.label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), doneN, total, frac*100)
}

func (p *progress) done() {
	if p == nil {
		return
	}
	fmt.Fprint(p.w, "\r\033[K")
}
