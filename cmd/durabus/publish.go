package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

// publishBatch is how many stdin lines go into one PublishBatch call.
const publishBatch = 100

// maxLine bounds one stdin line (an event's payload).
const maxLine = envelope.DefaultMaxSize

type publishOpts struct {
	typ     string
	version int
	data    string
	dataSet bool
	source  string
}

// rawEvent is a payload given as JSON text, under a type named at run time.
type rawEvent struct {
	typ     string
	version int
	data    json.RawMessage
}

func (e rawEvent) EventType() string            { return e.typ }
func (e rawEvent) EventVersion() int            { return e.version }
func (e rawEvent) MarshalJSON() ([]byte, error) { return e.data, nil }

func init() {
	register(&command{
		name:    "publish",
		args:    "TOPIC --type TYPE [--version N] [--data JSON | -]",
		summary: "publish one event, or one per line of stdin",
		help: `Publishes to TOPIC one event of type TYPE whose payload is the JSON
given with --data, or, with "-" (as --data - or as the last argument), one
event per line of stdin, each line a JSON payload; empty lines are skipped.
Stdin lines are published in batches of 100, in order. Prints each event's
position and id: topic, seq, epoch, stream id and event id (--json: one
object per line, {topic, epoch, seq, streamid, id}). TYPE follows the rules
of topic names (A-Z a-z 0-9 . _ : -), since a subscriber's topic is its
type name by default.

A line that is not valid JSON stops the command with an error naming the
line number; the batches before it have been published.`,
		flags: func(fs *flag.FlagSet) any {
			o := &publishOpts{}
			fs.StringVar(&o.typ, "type", "", "event `TYPE`, e.g. order.placed (required)")
			fs.IntVar(&o.version, "version", 1, "schema `N` of the payload")
			fs.Func("data", "payload `JSON`, or - to read one payload per line of stdin", func(s string) error {
				o.data, o.dataSet = s, true
				return nil
			})
			fs.StringVar(&o.source, "source", "durabus-cli", "the envelope's source `NAME`")
			return o
		},
		run: runPublish,
	})
}

func runPublish(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*publishOpts)
	if len(args) == 2 && args[1] == "-" && !o.dataSet {
		o.data, o.dataSet, args = "-", true, args[:1]
	}
	if len(args) != 1 {
		return usagef("publish: want exactly one TOPIC, got %d arguments", len(args))
	}
	topic := args[0]
	if err := transport.ValidateTopic(topic); err != nil {
		return usagef("publish: %v", err)
	}
	if o.typ == "" {
		return usagef("publish: --type is required")
	}
	if err := transport.ValidateTopic(o.typ); err != nil {
		// Subscribers use a type's name as their topic unless routed: the
		// library refuses a type name that is not a valid topic name.
		why := strings.TrimPrefix(err.Error(), transport.ErrInvalidTopic.Error()+": ")
		return usagef("publish: --type: an event type name follows the rules of topic names (it is the topic of its subscribers by default): %s", why)
	}
	if o.version < 1 {
		return usagef("publish: --version %d: want 1 or more", o.version)
	}
	if !o.dataSet {
		return usagef("publish: give --data JSON, or - to read one payload per line of stdin")
	}
	if o.data != "-" && !json.Valid([]byte(o.data)) {
		return fmt.Errorf("--data is not valid JSON: %s", jsonProblem([]byte(o.data)))
	}
	var ids []string // the event ids of the call in flight, in order
	keepID := bus.WithPublishHook(func(ctx context.Context, _ string, ev *envelope.Envelope) (context.Context, func(transport.Position, error)) {
		ids = append(ids, ev.ID)
		return ctx, nil
	})
	c, err := connect(ctx, e, bus.WithSource(o.source), keepID)
	if err != nil {
		return err
	}
	defer c.Close()

	print := func(pos []transport.Position) error {
		for i, p := range pos {
			id := ""
			if i < len(ids) {
				id = ids[i]
			}
			if e.json {
				if err := writeJSONLine(e.stdout, map[string]any{"topic": topic, "epoch": p.Epoch, "seq": p.Seq, "streamid": p.ID, "id": id}); err != nil {
					return err
				}
				continue
			}
			if _, err := fmt.Fprintf(e.stdout, "%s  seq %d  epoch %s  stream id %s  event id %s\n", topic, p.Seq, p.Epoch, p.ID, id); err != nil {
				return err
			}
		}
		ids = ids[:0]
		return nil
	}
	if o.data != "-" {
		ev := rawEvent{typ: o.typ, version: o.version, data: json.RawMessage(o.data)}
		pos, err := c.bus.Publish(ctx, ev, bus.ToTopic(topic))
		if err != nil {
			return fmt.Errorf("publish to %q: %w", topic, err)
		}
		return print([]transport.Position{pos})
	}

	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64*1024), maxLine+1)
	var batch []bus.Event
	line, published := 0, 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pos, err := c.bus.PublishBatch(ctx, batch, bus.ToTopic(topic))
		if err != nil {
			return fmt.Errorf("publish to %q (stdin lines up to %d, %d event(s) published before this batch): %w", topic, line, published, err)
		}
		published += len(pos)
		if err := print(pos); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !json.Valid(b) {
			return fmt.Errorf("stdin line %d: invalid JSON: %s (%d event(s) before it published)", line, jsonProblem(b), published)
		}
		batch = append(batch, rawEvent{typ: o.typ, version: o.version, data: json.RawMessage(bytes.Clone(b))})
		if len(batch) == publishBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("stdin line %d: longer than %d bytes (%d event(s) before it published)", line+1, maxLine, published)
		}
		return fmt.Errorf("reading stdin: %w", err)
	}
	return flush()
}

// jsonProblem says what is wrong with invalid JSON b.
func jsonProblem(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	case err != nil:
		return err.Error()
	}
	return "not valid UTF-8 JSON"
}
