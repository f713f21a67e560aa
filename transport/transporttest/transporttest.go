// Package transporttest is the conformance suite of transport.Transport,
// in the spirit of testing/slogtest: every transport calls Run from its own
// tests, declaring in Features what it supports.
//
// What the suite requires of live delivery: per topic, frames arrive in
// strictly increasing seq order, in one epoch, without duplicates, and a
// frame that does not arrive is signalled before the next frame of its
// topic, by a Dropped event whose range covers it (or whose range is zero,
// "unknown"), or by Reconnected or Stalled. The suite's receivers read
// continuously; a transport may still drop frames for them and stays
// conformant as long as every drop is signalled. A silent hole fails.
package transporttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/transport"
)

// Features configures the suite for the transport under test. Which
// optional abilities it tests (patterns, seeking, topic listing,
// checkpoints, partition counts) it learns from transport.FeaturesOf, as the bus and the
// follower do.
type Features struct {
	// MaxSize is the transport's limit for Message.Data in bytes: the suite
	// publishes exactly MaxSize bytes (accepted) and MaxSize+1 (rejected
	// with ErrTooLarge, alone and inside a batch). 0 skips those checks.
	MaxSize int
	// DeleteTopic removes a topic's whole log and metadata, so that the
	// next publish starts a new epoch at seq 1. nil skips the epoch tests.
	DeleteTopic func(t *testing.T, tr transport.Transport, topic string)
	// Timeout bounds each wait for a live event. Default 10 s.
	Timeout time.Duration
	// LeakOptions are extra goleak options for goroutines the transport
	// may legitimately leave running after Close (for example those of a
	// client shared by every transport of the test). Each subtest checks,
	// after its cleanups ran, that no goroutine started during the subtest
	// remains, except those these options ignore.
	LeakOptions []goleak.Option
	// NoLeakCheck turns the goroutine check off, for a test binary that
	// runs other tests in parallel with Run.
	NoLeakCheck bool
}

// Run runs the conformance suite as subtests of t.
//
// Each subtest calls newTransport once and closes the returned transport in
// a t.Cleanup (an error wrapping transport.ErrClosed from that Close is
// accepted); the factory must not close it itself. Transports returned by
// newTransport may share one back end: every subtest uses topic and
// consumer names under its own unique prefix and tolerates other topics.
// Subtests do not run in parallel.
func Run(t *testing.T, newTransport func(t *testing.T) transport.Transport, f Features) {
	if f.Timeout <= 0 {
		f.Timeout = 10 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*env)
	}{
		{"OrderUnderConcurrentPublishers", testOrder},
		{"PublisherOrder", testPublisherOrder},
		{"TopicIsolation", testIsolation},
		{"Batch", testBatch},
		{"Range", testRange},
		{"RangeOtherEpoch", testRangeOtherEpoch},
		{"Seek", testSeek},
		{"Head", testHead},
		{"Topics", testTopics},
		{"Patterns", testPatterns},
		{"EpochChange", testEpochChange},
		{"Oversize", testOversize},
		{"InvalidTopic", testInvalidTopic},
		{"SubscribeConfirmed", testSubscribeConfirmed},
		{"SubscriptionClose", testSubscriptionClose},
		{"ContextCancel", testContextCancel},
		{"TransportClose", testTransportClose},
		{"Checkpoints", testCheckpoints},
		{"DataNotAliased", testNotAliased},
		{"Partitions", testPartitions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !f.NoLeakCheck {
				opts := append([]goleak.Option{goleak.IgnoreCurrent()}, f.LeakOptions...)
				t.Cleanup(func() { goleak.VerifyNone(t, opts...) })
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			tr := newTransport(t)
			t.Cleanup(func() {
				if err := tr.Close(); err != nil && !isClosed(err) {
					t.Errorf("Close: %v", err)
				}
			})
			e := &env{T: t, tr: tr, f: f, feat: transport.FeaturesOf(tr), ctx: ctx, prefix: prefix(tc.name)}
			e.ps, _ = tr.(transport.PatternSubscriber)
			e.seek, _ = tr.(transport.Seeker)
			e.list, _ = tr.(transport.TopicLister)
			e.cps, _ = tr.(transport.CheckpointStore)
			tc.fn(e)
		})
	}
}

// env is what a subtest works with.
type env struct {
	*testing.T
	tr     transport.Transport
	f      Features
	feat   transport.Features // what tr offers (transport.FeaturesOf)
	ps     transport.PatternSubscriber
	seek   transport.Seeker
	list   transport.TopicLister
	cps    transport.CheckpointStore
	ctx    context.Context
	prefix string
}

// prefix returns a unique topic prefix for a subtest: "tt" + random hex +
// the subtest name, in the topic character set.
func prefix(name string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	clean := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, name)
	return "tt" + hex.EncodeToString(b[:]) + "." + clean
}

// topic returns the subtest's topic named name.
func (e *env) topic(name string) string { return e.prefix + "." + name }

// payload is the data of the suite's envelopes.
type payload struct {
	P int    `json:"p"`
	I int    `json:"i"`
	S string `json:"s,omitempty"`
}

// envelope builds a minimal valid envelope (CloudEvents structured mode)
// by hand: the suite does not depend on the envelope package.
func envelope(tm time.Time, data payload) []byte {
	d, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"transporttest","type":"transporttest.event","version":1,"time":%q,"datacontenttype":"application/json","data":%s}`,
		newID(), tm.UTC().Format(time.RFC3339Nano), d)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// msg returns a message to topic with time tm and the given payload.
func msg(topic string, tm time.Time, data payload) transport.Message {
	m := transport.Message{Topic: topic, Time: tm, Data: envelope(tm, data)}
	var env struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(m.Data, &env)
	m.ID = env.ID
	return m
}

// sized returns a message whose Data is exactly size bytes long.
func sized(topic string, size int) transport.Message {
	tm := time.Now()
	m := msg(topic, tm, payload{})
	pad := size - len(m.Data) - len(`,"s":""`)
	if pad < 0 {
		panic(fmt.Sprintf("transporttest: size %d too small for an envelope", size))
	}
	m = msg(topic, tm, payload{S: strings.Repeat("x", pad)})
	if len(m.Data) != size {
		panic(fmt.Sprintf("transporttest: built %d bytes, want %d", len(m.Data), size))
	}
	return m
}

func decode(e *env, d transport.Delivery) payload {
	e.Helper()
	var v struct {
		Data payload `json:"data"`
	}
	if err := json.Unmarshal(d.Data, &v); err != nil {
		e.Fatalf("delivery %s %v: bad envelope %q: %v", d.Topic, d.Position, d.Data, err)
	}
	return v.Data
}

func (e *env) publish(topic string, data payload) transport.Position {
	e.Helper()
	p, err := e.tr.Publish(e.ctx, msg(topic, time.Now(), data))
	if err != nil {
		e.Fatalf("Publish to %s: %v", topic, err)
	}
	return p
}

func (e *env) subscribe(topics ...string) transport.Subscription {
	e.Helper()
	sub, err := e.tr.Subscribe(e.ctx, topics...)
	if err != nil {
		e.Fatalf("Subscribe %v: %v", topics, err)
	}
	e.Cleanup(func() { _ = sub.Close() })
	return sub
}

// rangeAll reads the whole backlog of topic after pos, in pages of limit.
func (e *env) rangeAll(topic string, after transport.Position, limit int) []transport.Delivery {
	e.Helper()
	var out []transport.Delivery
	for {
		page, err := e.tr.Range(e.ctx, topic, after, limit)
		if err != nil {
			e.Fatalf("Range %s after %v: %v", topic, after, err)
		}
		if len(page.Events) > limit {
			e.Fatalf("Range %s: %d events, limit %d", topic, len(page.Events), limit)
		}
		out = append(out, page.Events...)
		if len(page.Events) < limit {
			return out
		}
		after = page.Events[len(page.Events)-1].Position
	}
}

// follow reads sub until each topic of want has been accounted for up to
// its seq, by frames or Dropped ranges, and checks the delivery rules of the
// package doc. It returns the frames received, by topic.
func (e *env) follow(sub transport.Subscription, want map[string]uint64) map[string][]transport.Delivery {
	e.Helper()
	type state struct {
		epoch   string
		last    uint64 // seq of the last frame
		reached uint64 // highest seq accounted for
		drops   [][2]uint64
		unknown bool // a loss of unknown range was signalled since the last frame
	}
	st := make(map[string]*state, len(want))
	for topic := range want {
		st[topic] = &state{}
	}
	frames := make(map[string][]transport.Delivery)
	done := func() bool {
		for topic, seq := range want {
			if st[topic].reached < seq {
				return false
			}
		}
		return true
	}
	timer := time.NewTimer(e.f.Timeout)
	defer timer.Stop()
	for !done() {
		var ev transport.Event
		var ok bool
		select {
		case ev, ok = <-sub.Events():
			if !ok {
				e.Fatalf("events channel closed early: %v", sub.Err())
			}
		case <-timer.C:
			for topic, s := range st {
				if s.reached < want[topic] && !s.unknown {
					e.Fatalf("topic %s: no event for %v; reached seq %d of %d", topic, e.f.Timeout, s.reached, want[topic])
				}
			}
			e.Logf("loss of unknown range signalled; stopped waiting after %v", e.f.Timeout)
			return frames
		}
		timer.Reset(e.f.Timeout)
		switch ev.Kind {
		case transport.Frame:
			d := ev.Delivery
			s := st[d.Topic]
			if s == nil {
				e.Fatalf("frame of topic %q, not subscribed here", d.Topic)
			}
			if s.epoch != "" && d.Position.Epoch != s.epoch {
				e.Fatalf("topic %s: epoch changed from %s to %s", d.Topic, s.epoch, d.Position.Epoch)
			}
			s.epoch = d.Position.Epoch
			if d.Position.Seq <= s.last {
				e.Fatalf("topic %s: frame seq %d after seq %d (out of order or duplicate)", d.Topic, d.Position.Seq, s.last)
			}
			for seq := s.last + 1; seq < d.Position.Seq && !s.unknown; seq++ {
				covered := false
				for _, r := range s.drops {
					covered = covered || r[0] <= seq && seq <= r[1]
				}
				if !covered {
					e.Fatalf("topic %s: seq %d missing before frame %d, without a Dropped, Reconnected or Stalled signal", d.Topic, seq, d.Position.Seq)
				}
			}
			s.last, s.drops, s.unknown = d.Position.Seq, nil, false
			s.reached = max(s.reached, s.last)
			frames[d.Topic] = append(frames[d.Topic], d)
		case transport.Dropped:
			s := st[ev.Topic]
			switch {
			case ev.Topic == "":
				for _, s := range st {
					s.unknown = true
				}
			case s == nil:
				e.Fatalf("Dropped for topic %q, not subscribed here", ev.Topic)
			case ev.From == 0 && ev.To == 0:
				s.unknown = true
			case ev.From > ev.To || ev.From <= s.last:
				e.Fatalf("topic %s: Dropped %d..%d after frame %d", ev.Topic, ev.From, ev.To, s.last)
			default:
				s.drops = append(s.drops, [2]uint64{ev.From, ev.To})
				s.reached = max(s.reached, ev.To)
			}
		case transport.Reconnected, transport.Stalled:
			for _, s := range st {
				s.unknown = true
			}
		default:
			e.Fatalf("unexpected %v event: %+v", ev.Kind, ev)
		}
	}
	return frames
}

// noFrame fails when sub has a frame ready; it does not wait.
func noFrame(e *env, sub transport.Subscription) {
	e.Helper()
	for {
		select {
		case ev := <-sub.Events():
			if ev.Kind == transport.Frame {
				e.Fatalf("unexpected frame of %s seq %d", ev.Delivery.Topic, ev.Delivery.Position.Seq)
			}
		default:
			return
		}
	}
}

// drainClosed reads sub until its events channel is closed.
func drainClosed(e *env, sub transport.Subscription) {
	e.Helper()
	timer := time.NewTimer(e.f.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-sub.Events():
			if !ok {
				return
			}
		case <-timer.C:
			e.Fatalf("events channel not closed within %v", e.f.Timeout)
		}
	}
}

func isClosed(err error) bool { return errors.Is(err, transport.ErrClosed) }
