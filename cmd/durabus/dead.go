package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
)

type deadOpts struct {
	limit  int
	newIDs bool
}

func init() {
	register(&command{
		name:    "dead",
		args:    "list|requeue TOPIC",
		summary: "list or requeue the dead letters of a topic",
		help: `Dead letters are the events of TOPIC whose handlers failed for good; the
DeadLetter middleware publishes them to the topic TOPIC.dead, with the
error, the attempts and the original position.

  dead list TOPIC      lists the dead letters not requeued yet, oldest first:
                       dead-letter seq, time, type, event id, original
                       topic#seq, attempts and error (--json: one object
                       per line, {topic, epoch, seq, streamid, event})
  dead requeue TOPIC   re-publishes them to the topics they came from, with
                       their original ids (see --new-ids), and remembers
                       how far it got: a second requeue continues there`,
		flags: func(fs *flag.FlagSet) any {
			o := &deadOpts{}
			fs.IntVar(&o.limit, "limit", 0, "list or requeue at most `N` dead letters (default: list 100, requeue all)")
			fs.BoolVar(&o.newIDs, "new-ids", false, "requeue with new event ids (when an idempotency window would swallow the old ones)")
			return o
		},
		run: runDead,
	})
}

func runDead(ctx context.Context, e *env, opts any, args []string) error {
	o := opts.(*deadOpts)
	if len(args) != 2 || args[0] != "list" && args[0] != "requeue" {
		return usagef("dead: want list TOPIC or requeue TOPIC")
	}
	topic := args[1]
	if err := transport.ValidateTopic(topic); err != nil {
		return usagef("dead: %v", err)
	}
	if o.limit < 0 {
		return usagef("dead: --limit %d: want 0 or more", o.limit)
	}
	var reported []error
	c, err := connect(ctx, e, bus.WithOnError(func(err error) { reported = append(reported, err) }))
	if err != nil {
		return err
	}
	defer c.Close()
	defer func() {
		for _, err := range reported {
			fmt.Fprintf(e.stderr, "durabus: warning: %v\n", err)
		}
	}()

	if args[0] == "requeue" {
		var ropts []bus.RequeueOption
		if o.limit > 0 {
			ropts = append(ropts, bus.RequeueLimit(o.limit))
		}
		if o.newIDs {
			ropts = append(ropts, bus.RequeueNewIDs())
		}
		n, err := c.bus.Requeue(ctx, topic, ropts...)
		if e.json {
			if werr := writeJSONLine(e.stdout, map[string]any{"topic": topic, "requeued": n}); err == nil {
				err = werr
			}
		} else {
			fmt.Fprintf(e.stdout, "requeued %d dead letter(s) of %q\n", n, topic)
		}
		if errors.Is(err, bus.ErrRequeueSwallowed) {
			return fmt.Errorf("%w; run again with --new-ids", err)
		}
		return err
	}

	ms, err := c.bus.DeadLetters(ctx, topic, o.limit)
	if err != nil {
		return err
	}
	if e.json {
		for _, m := range ms {
			data, err := m.Envelope.Encode()
			if err != nil {
				return err
			}
			if err := writeJSONLine(e.stdout, newRecord(m.Topic, m.Position, data)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ms) == 0 {
		fmt.Fprintf(e.stdout, "no dead letters for %q (topic %s)\n", topic, bus.DeadLetterTopic(topic))
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD AT\tTYPE\tID\tFROM\tATTEMPTS\tERROR")
	for _, m := range ms {
		x := m.Extensions
		from := x[bus.ExtDeadTopic]
		if s := x[bus.ExtDeadSeq]; s != "" {
			from += "#" + s
		}
		at := x[bus.ExtDeadTime]
		if at == "" {
			at = formatTime(m.Time)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Position.Seq, at, m.Type, m.ID, from, x[bus.ExtDeadAttempts], strconv.Quote(x[bus.ExtDeadError]))
	}
	return tw.Flush()
}
