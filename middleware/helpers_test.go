package middleware_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errBoom = errors.New("boom")

// msg returns a message of topic "orders" at seq.
func msg(t testing.TB, seq uint64) *bus.Message {
	t.Helper()
	e, err := envelope.New("order.placed", map[string]int{"n": int(seq)})
	if err != nil {
		t.Fatal(err)
	}
	return &bus.Message{Envelope: e, Topic: "orders", Position: transport.Position{Epoch: "ep", Seq: seq, ID: "1-0"}}
}

// script is a handler that returns errs[i] on call i (nil past the end)
// and records the attempt numbers it saw.
type script struct {
	mu       sync.Mutex
	errs     []error
	attempts []int
	calls    atomic.Int32
	each     func(ctx context.Context, call int) error
}

func (s *script) Handle(ctx context.Context, m *bus.Message) error {
	n := int(s.calls.Add(1))
	s.mu.Lock()
	s.attempts = append(s.attempts, attemptOf(ctx))
	s.mu.Unlock()
	if s.each != nil {
		if err := s.each(ctx, n); err != nil {
			return err
		}
	}
	if n-1 < len(s.errs) {
		return s.errs[n-1]
	}
	return nil
}

// fastRetry keeps retry waits tiny.
func fastRetry(attempts int) retryCfg {
	return retryCfg{MaxAttempts: attempts, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}
}

// recordingPublisher records what DeadLetter publishes.
type recordingPublisher struct {
	mu     sync.Mutex
	topics []string
	envs   []*envelope.Envelope
	err    error
}

func (p *recordingPublisher) PublishEnvelope(_ context.Context, topic string, e *envelope.Envelope) (transport.Position, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return transport.Position{}, p.err
	}
	p.topics = append(p.topics, topic)
	p.envs = append(p.envs, e)
	return transport.Position{Epoch: "d", Seq: uint64(len(p.envs))}, nil
}
