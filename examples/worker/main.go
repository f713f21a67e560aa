// Command worker is a durable job worker: kill it with kill -9 at any
// moment, start it again, and it resumes from its last checkpoint. No job
// is lost; the few handled after the last checkpoint are handled again
// (at least once), so a job handler must be idempotent.
//
//	redis-server &                                  # or any Redis 6.2+
//	go run ./examples/worker --redis redis://localhost:6379 --enqueue 2000
//	kill -9 <its pid>                               # or Ctrl-\ in its terminal
//	go run ./examples/worker --redis redis://localhost:6379
//
// Without --enqueue a first run (a queue that never had a job) enqueues 20
// jobs, so that there is something to watch; later runs enqueue none.
// Without --redis it runs on a private Redis that ends with the process, so
// it resumes nothing: use it to watch the output, not the crash.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/examples/internal/exredis"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// Job is one unit of work on the topic "jobs".
type Job struct {
	Image string `json:"image"`
}

func (Job) EventType() string { return "jobs.resize" }

const consumer = "resizer" // the checkpoint's name: keep it stable

// defaultJobs are enqueued when --enqueue is not given and the queue has
// never had a job, so that a first run has work to show.
const defaultJobs = 20

func main() { exredis.Main("worker", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	redisURL := fs.String("redis", "", "Redis URL (default: a private redis-server for this run)")
	enqueue := fs.Int("enqueue", -1, "publish this many jobs first (default: 20 when the queue has never had a job, none after)")
	work := fs.Bool("work", true, "work on the jobs (false: only enqueue)")
	jobTime := fs.Duration("job-time", 10*time.Millisecond, "how long one job takes")
	runFor := fs.Duration("for", 0, "stop after this long (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tr, _, closeAll, err := exredis.Transport(ctx, *redisURL, stdout)
	if err != nil {
		return err
	}
	defer closeAll()

	b, err := bus.New(tr, bus.WithSource("worker"), bus.WithRoute("jobs.resize", "jobs"),
		bus.WithConsumer(consumer),
		// Save the checkpoint every 10 jobs or 250 ms: that bounds the
		// work redone after a crash (defaults: 100 and 1 s).
		bus.WithFollowerOptions(replay.WithCheckpointEvery(10, 250*time.Millisecond)))
	if err != nil {
		return err
	}
	defer b.Close()

	if *enqueue < 0 { // the default: something to watch on a first run
		*enqueue = 0
		if _, err := tr.Head(ctx, "jobs"); errors.Is(err, transport.ErrUnknownTopic) {
			*enqueue = defaultJobs
		} else if err != nil {
			return err
		}
	}
	if *enqueue > 0 {
		jobs := make([]bus.Event, *enqueue)
		for i := range jobs {
			jobs[i] = Job{Image: fmt.Sprintf("img-%d.png", i+1)}
		}
		pos, err := b.PublishBatch(ctx, jobs)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enqueued %d jobs, seq %d..%d\n", len(pos), pos[0].Seq, pos[len(pos)-1].Seq)
	}
	if !*work {
		return nil
	}

	cps, err := tr.LoadCheckpoints(ctx, consumer)
	if err != nil {
		return err
	}
	if cp, ok := cps["jobs"]; ok {
		fmt.Fprintf(stdout, "resuming after checkpoint seq %d\n", cp.Seq)
	} else {
		fmt.Fprintln(stdout, "no checkpoint: starting at the oldest job")
	}
	_, err = bus.Subscribe(b, func(ctx context.Context, j *Job) error {
		time.Sleep(*jobTime) // the work
		m, _ := bus.MessageFrom(ctx)
		_, err := fmt.Fprintf(stdout, "done seq %d %s\n", m.Position.Seq, j.Image)
		return err // an error is retried with backoff; nothing is skipped
	}, bus.StartAt(bus.Beginning())) // only without a checkpoint
	if err != nil {
		return err
	}
	if *runFor > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *runFor)
		defer cancel()
	}
	return b.Run(ctx) // returns when ctx ends, after saving the checkpoint
}
