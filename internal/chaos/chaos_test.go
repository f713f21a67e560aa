package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durabus/durabus/transport"
)

var (
	chaosDuration = flag.Duration("chaos.duration", 0,
		"how long each fault runs (default 3s, 1.5s with -short; make chaos sets 50s)")
	chaosOut  = flag.String("chaos.out", "", "write the summary table (markdown) to this file")
	chaosRate = flag.Duration("chaos.interval", 5*time.Millisecond,
		"publisher tick: one event per tick and a batch of 8 every other tick")
)

// scenario is one fault, injected in episodes until its time is up.
type scenario struct {
	name string
	// maxLen sets the publisher's retention (0: default).
	maxLen int64
	// pad makes each event bigger, in bytes.
	pad int
	// setup runs once before the subscribers start.
	setup func(e *env)
	// episode injects the fault once, holds it, heals it, and returns.
	episode func(e *env, rng *rand.Rand)
	// gap is the time between episodes.
	gap [2]time.Duration
	// expectLoss: the durable subscriber loses events (they are trimmed);
	// its loss reports must then match the lost range exactly.
	expectLoss bool
}

func between(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

var (
	clientKill = scenario{name: "client-kill", gap: [2]time.Duration{100 * time.Millisecond, 600 * time.Millisecond},
		episode: func(e *env, _ *rand.Rand) {
			if err := e.admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
				e.t.Errorf("CLIENT KILL TYPE pubsub: %v", err)
			}
		}}
	restartTerm = scenario{name: "redis-restart-sigterm", gap: [2]time.Duration{time.Second, 2 * time.Second},
		episode: func(e *env, _ *rand.Rand) { e.srv.Restart(e.t) }}
	restartKill = scenario{name: "redis-restart-sigkill", gap: [2]time.Duration{time.Second, 2 * time.Second},
		episode: func(e *env, rng *rand.Rand) {
			e.srv.Kill(e.t)
			time.Sleep(between(rng, [2]time.Duration{50 * time.Millisecond, 300 * time.Millisecond}))
			e.srv.Restart(e.t)
		}}
	blackhole = scenario{name: "blackhole", gap: [2]time.Duration{500 * time.Millisecond, 1500 * time.Millisecond},
		episode: func(e *env, rng *rand.Rand) {
			e.subProxy.Blackhole(e.t)
			time.Sleep(between(rng, [2]time.Duration{time.Second, 2 * time.Second}))
			e.subProxy.Heal(e.t)
		}}
	latency = scenario{name: "latency-200ms", gap: [2]time.Duration{300 * time.Millisecond, time.Second},
		episode: func(e *env, rng *rand.Rand) {
			e.subProxy.Latency(e.t, 200*time.Millisecond, 100*time.Millisecond)
			time.Sleep(between(rng, [2]time.Duration{time.Second, 3 * time.Second}))
			e.subProxy.Heal(e.t)
		}}
	resetPeer = scenario{name: "reset-peer", gap: [2]time.Duration{300 * time.Millisecond, time.Second},
		episode: func(e *env, rng *rand.Rand) {
			e.subProxy.ResetPeer(e.t)
			time.Sleep(between(rng, [2]time.Duration{100 * time.Millisecond, 500 * time.Millisecond}))
			e.subProxy.Heal(e.t)
		}}
	bandwidth = scenario{name: "bandwidth-64KB/s", gap: [2]time.Duration{300 * time.Millisecond, time.Second},
		episode: func(e *env, rng *rand.Rand) {
			e.subProxy.Bandwidth(e.t, 64)
			time.Sleep(between(rng, [2]time.Duration{time.Second, 3 * time.Second}))
			e.subProxy.Heal(e.t)
		}}
	slowSubscriber = scenario{name: "slow-subscriber", pad: 12 << 10, gap: [2]time.Duration{300 * time.Millisecond, time.Second},
		setup: func(e *env) {
			if err := e.admin.ConfigSet(context.Background(), "client-output-buffer-limit", "pubsub 256kb 64kb 1").Err(); err != nil {
				e.t.Fatal(err)
			}
			e.childDirect = true // no proxy buffers between Redis and the stalled process
		},
		episode: func(e *env, rng *rand.Rand) {
			// A stopped process reads nothing: Redis's output buffer for
			// its Pub/Sub connection grows past the limit and Redis
			// closes it.
			e.child.signal(syscall.SIGSTOP)
			time.Sleep(between(rng, [2]time.Duration{2 * time.Second, 3 * time.Second}))
			if os.Getenv("CHAOS_DEBUG") != "" {
				l, _ := e.admin.ClientList(context.Background()).Result()
				fmt.Println(l)
			}
			e.child.signal(syscall.SIGCONT)
		}}
	durableKill = scenario{name: "durable-sigkill", gap: [2]time.Duration{300 * time.Millisecond, 1200 * time.Millisecond},
		episode: func(e *env, rng *rand.Rand) {
			e.child.kill(syscall.SIGKILL)
			time.Sleep(between(rng, [2]time.Duration{50 * time.Millisecond, 500 * time.Millisecond}))
			e.child.start()
		}}
	publisherBreak = scenario{name: "publisher-break", gap: [2]time.Duration{200 * time.Millisecond, 800 * time.Millisecond},
		setup: func(e *env) {
			// go-redis would retry a command whose connection broke (and
			// the idempotency window would absorb the repeat): without
			// retries, the cut reaches the caller as an error.
			e.pubNoRetry = true
			// Replies come back late, so that a cut often falls between a
			// script running and its reply arriving.
			e.pubProxy.Latency(e.t, 5*time.Millisecond, 3*time.Millisecond)
		},
		episode: func(e *env, rng *rand.Rand) {
			e.pubProxy.Disable(e.t)
			time.Sleep(between(rng, [2]time.Duration{200 * time.Millisecond, time.Second}))
			e.pubProxy.Enable(e.t)
		}}
	trimming = scenario{name: "trim-stopped-subscriber", maxLen: 500, expectLoss: true, gap: [2]time.Duration{2 * time.Second, 3 * time.Second},
		episode: func(e *env, _ *rand.Rand) {
			// Stopped (SIGTERM: it saves its checkpoint on the way out)
			// until retention (500, MAXLEN ~) has trimmed every topic's
			// log past its checkpoint: about 2.5 s at 250 events/s per
			// topic, longer on a loaded machine.
			e.child.kill(syscall.SIGTERM)
			e.waitTrimmedPastCheckpoint()
			e.child.start()
		}}
	mixedFaults = []scenario{clientKill, restartTerm, restartKill, blackhole, latency, resetPeer, bandwidth, durableKill, publisherBreak}
	mixed       = scenario{name: "mixed", gap: [2]time.Duration{100 * time.Millisecond, 500 * time.Millisecond},
		episode: func(e *env, rng *rand.Rand) {
			s := mixedFaults[rng.IntN(len(mixedFaults))]
			e.notes = append(e.notes, s.name)
			s.episode(e, rng)
		}}
)

var scenarios = []scenario{
	{name: "none"}, clientKill, restartTerm, restartKill, blackhole, latency, resetPeer, bandwidth,
	slowSubscriber, durableKill, publisherBreak, trimming, mixed,
}

func faultDuration() time.Duration {
	if *chaosDuration > 0 {
		return *chaosDuration
	}
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil && d > 0 {
		return d
	}
	if testing.Short() {
		return 1500 * time.Millisecond
	}
	return 3 * time.Second
}

var (
	reportsMu sync.Mutex
	reports   []*runReport
)

// TestChaos runs every fault on its own, then all of them mixed, against a
// steady publisher and three subscribers, and checks the recorded history:
// nothing acknowledged is lost, nothing is reordered, no subscriber sees an
// event twice within one process, and the trimmed range is reported
// exactly.
func TestChaos(t *testing.T) {
	d := faultDuration()
	for _, s := range scenarios {
		t.Run(s.name, func(t *testing.T) {
			r := runScenario(t, s, d)
			t.Logf("\n%s", r.table())
			reportsMu.Lock()
			reports = append(reports, r)
			reportsMu.Unlock()
		})
	}
	reportsMu.Lock()
	defer reportsMu.Unlock()
	sum := summary(reports)
	fmt.Printf("chaos: %d runs, each fault for %v\n%s", len(reports), d, sum)
	if *chaosOut != "" {
		if err := os.WriteFile(*chaosOut, []byte(sum), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func runScenario(t *testing.T, s scenario, d time.Duration) *runReport {
	began := time.Now()
	e := newEnv(t, s.maxLen)
	e.pad = s.pad
	if s.setup != nil {
		s.setup(e)
	}
	e.startInproc(subPlain)
	e.startInproc(subPattern)
	e.startChild()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); e.sampleHeap(ctx) }()
	go e.child.follow(ctx, &bg)

	pubCtx, stopPub := context.WithCancel(ctx)
	var pw sync.WaitGroup
	pw.Add(1)
	go e.newPublisher().run(pubCtx, *chaosRate, &pw)

	// The fault schedule, on the test goroutine (the fault helpers may
	// call t.Fatal).
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	// No fault before every subscriber is ready (subscribed; the durable
	// one with its position saved): the time this takes on a loaded
	// machine does not count against the fault's duration.
	e.waitReady()
	faults := 0
	if s.episode != nil {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			// A restarted durable child, too: it may wait as a standby
			// until the lease of the one killed lapses. That wait can use
			// up the fault's time: then no further episode starts.
			e.waitReady()
			if !time.Now().Before(deadline) {
				break
			}
			s.episode(e, rng)
			faults++
			e.healed(ctx, &bg)
			time.Sleep(between(rng, s.gap))
		}
	} else {
		time.Sleep(d)
	}
	time.Sleep(300 * time.Millisecond)
	stopPub()
	pw.Wait()

	// Wait (generously) until every subscriber has what the log holds.
	heads := e.logHeads()
	for _, sub := range []string{subPlain, subPattern, subDurable} {
		deadline := time.Now().Add(90 * time.Second)
		for !e.h.reached(sub, heads) {
			if time.Now().After(deadline) {
				t.Errorf("%s: not caught up with %v after 90 s", sub, heads)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // let late duplicates show
	stop()
	bg.Wait()

	r := &runReport{scenario: s.name, duration: time.Since(began), faults: faults,
		published: int(e.acked.Load()), failed: int(e.failed.Load())}
	inLog := e.checkLog(t, r, topics, s.maxLen > 0)

	var inprocRec []uint64
	for _, sub := range e.inproc {
		inprocRec = append(inprocRec, sub.reconnects())
	}
	for i, sub := range []string{subPlain, subPattern, subDurable} {
		v := e.h.check(sub, inLog)
		v.recovery = e.recovery(sub)
		if sub == subDurable {
			e.child.tail()
			v.reconnects = e.child.reconnects
			v.peakMem, v.memKind = e.child.hwm, "VmHWM"
		} else {
			v.reconnects = inprocRec[i]
			v.peakMem, v.memKind = e.heapMax.Load(), "heap"
		}
		r.rows = append(r.rows, v)
		judge(t, s, v)
	}
	if s.name == slowSubscriber.name {
		r.notes = append(r.notes, "Redis: "+e.outputBufferDisconnects())
	}
	if len(e.notes) > 0 {
		r.notes = append(r.notes, "faults: "+strings.Join(e.notes, ", "))
	}
	r.notes = append(r.notes, "seed "+strconv.FormatUint(seed, 10))
	return r
}

// waitTrimmedPastCheckpoint waits until the oldest entry of every topic's
// log lies beyond the durable consumer's saved checkpoint plus one, so
// that a restart from that checkpoint must find events gone.
func (e *env) waitTrimmedPastCheckpoint() {
	e.t.Helper()
	ctx := context.Background()
	cps, err := e.admin.HGetAll(ctx, checkpointKey).Result()
	if err != nil {
		e.t.Fatalf("read %s: %v", checkpointKey, err)
	}
	cursor := map[string]uint64{}
	for _, tp := range topics {
		pos, err := transport.ParsePosition(cps[tp])
		if err != nil {
			e.t.Fatalf("%s: checkpoint of %s %q: %v", checkpointKey, tp, cps[tp], err)
		}
		cursor[tp] = pos.Seq
	}
	const timeout = 2 * time.Minute
	deadline := time.Now().Add(timeout)
	for {
		oldest := map[string]uint64{}
		trimmed := true
		for _, tp := range topics {
			first, err := e.admin.XRangeN(ctx, "durabus:{"+tp+"}:log", "-", "+", 1).Result()
			if err != nil {
				e.t.Fatalf("read the oldest entry of %s: %v", tp, err)
			}
			if len(first) == 1 {
				oldest[tp], _ = strconv.ParseUint(fmt.Sprint(first[0].Values["seq"]), 10, 64)
			}
			if oldest[tp] <= cursor[tp]+1 {
				trimmed = false
			}
		}
		if trimmed {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the logs were not trimmed past the stopped subscriber's checkpoint within %v: checkpoints %v, oldest %v", timeout, cursor, oldest)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func judge(t *testing.T, s scenario, v verdict) {
	t.Helper()
	lossy := s.expectLoss && v.sub == subDurable
	if lossy {
		if v.losses == 0 || !v.lossExact {
			t.Errorf("%s: %d events lost, %d loss reports of %d events: reported ranges must equal the lost ones exactly", v.sub, v.lost, v.losses, v.lossEvents)
		}
	} else {
		if v.lost != 0 {
			t.Errorf("%s: %d acknowledged events never delivered, e.g. %v", v.sub, v.lost, v.lostSamples)
		}
		if v.losses != 0 {
			t.Errorf("%s: %d loss reports where nothing may be lost", v.sub, v.losses)
		}
	}
	if v.unexpected != 0 {
		t.Errorf("%s: %d unexpected deliveries", v.sub, v.unexpected)
	}
	if v.reordered != 0 {
		t.Errorf("%s: %d deliveries out of order", v.sub, v.reordered)
	}
	if v.dupInRun != 0 {
		t.Errorf("%s: %d duplicates within one process", v.sub, v.dupInRun)
	}
	if v.sub != subDurable && v.duplicated != 0 {
		t.Errorf("%s: %d duplicates", v.sub, v.duplicated)
	}
}
