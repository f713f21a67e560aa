package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/durabus/durabus/bench/benchkit"
)

// profile runs one case under the CPU profiler (for the profiling notes in
// docs/benchmarks.md): "live", "replay", "publish", "publish16", "latency", "group" (all the group cases), or one drain alone: "group1",
// "group2", "plain". The allocation
// profile goes to path + ".alloc".
func (e *env) profile(which, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	defer func() {
		// Allocations (alloc_space / alloc_objects) beside the CPU profile.
		if mf, err := os.Create(path + ".alloc"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(mf, 0)
			_ = mf.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		e.round = i
		m := metrics{}
		switch which {
		case "live":
			err = e.liveCases(m)
		case "replay":
			err = e.replayCases(m)
		case "publish":
			err = e.publishCases(m)
		case "publish16":
			// Only durabus's Publish from 16 goroutines.
			e.flush()
			tr := e.transport()
			m["pub.ours.16"], err = benchkit.Timed(e.dur, 16, 1, benchkit.PublishEach(e.ctx, tr, e.msgs, e.topic("pub16")))
			_ = tr.Close()
		case "latency":
			err = e.latencyCases(m, 5000, 2*time.Second)
		case "group":
			// The plain durable consumer, the groups of 1 and 2, and the peers' groups.
			err = e.groupCases(m)
		case "group1", "group2", "plain":
			// One drain alone: a group of 1 or 2, or the plain durable consumer.
			var topic, plain string
			if topic, plain, err = e.groupFill(); err == nil {
				switch which {
				case "plain":
					m[which], err = e.drain(plain, "", 1)
				default:
					k := int(which[5] - '0')
					m[which], err = e.drain(topic, which, k)
				}
			}
		default:
			return fmt.Errorf("-profile %q: want live, replay, publish, publish16, latency, group, group1, group2 or plain", which)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, which, m)
	}
	return nil
}
