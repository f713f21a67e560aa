package bus

import (
	"context"
	"time"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// Subscription is the handle of one subscription: a topic with its typed
// handlers and catch-all, or a pattern. Subscribe and Handle return it.
// The registrations on one topic share one cursor, so they share one
// Subscription: stopping it stops them all.
//
// Subscriptions may be added and stopped while the bus runs. A stopped
// subscription is forgotten by the bus: its topic or pattern may be
// subscribed again (a durable consumer goes on from its checkpoint).
type Subscription struct {
	b *Bus
	g *group
}

// Key returns the topic or pattern followed.
func (s *Subscription) Key() string { return s.g.key }

// Done returns a channel closed when the subscription has stopped: after
// Stop or Drain, or when the bus stopped. Before the bus runs it is closed
// only by Stop.
func (s *Subscription) Done() <-chan struct{} { return s.g.done }

// Stop stops the subscription now: no new handler call starts, the calls
// in flight finish, and a durable consumer's checkpoints are saved. It
// returns when that is done. The other subscriptions go on. Stop is safe
// to call more than once, and from a handler of another subscription (not
// from one of its own: it would wait for itself).
func (s *Subscription) Stop() {
	b, g := s.b, s.g
	b.mu.Lock()
	if g.stopped {
		b.mu.Unlock()
		<-g.done
		return
	}
	g.stopped = true
	if g.follower == nil { // not started: nothing to wait for
		b.forgetLocked(g)
		close(g.done)
		b.mu.Unlock()
		return
	}
	g.stop()
	b.mu.Unlock()
	<-g.done
}

// drainPoll is how often Drain looks at the cursors.
const drainPoll = 5 * time.Millisecond

// Drain delivers what was published to the subscription's topics before
// the call, then stops as Stop does. When ctx ends first it stops at once
// and returns ctx's error. A pattern subscription drains the topics it
// follows at the time of the call.
func (s *Subscription) Drain(ctx context.Context) error {
	b, g := s.b, s.g
	b.mu.Lock()
	f := g.follower
	b.mu.Unlock()
	if f == nil {
		s.Stop()
		return nil
	}
	targets := make(map[string]transport.Position)
	for _, ts := range f.Stats().Topics {
		head, err := b.tr.Head(ctx, ts.Topic)
		if err == nil {
			targets[ts.Topic] = head
		}
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for !drained(f.Stats().Topics, targets) {
		select {
		case <-g.done:
			return nil
		case <-ctx.Done():
			s.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	s.Stop()
	return nil
}

// drained reports whether every topic's cursor reached its target: the
// head of the topic when Drain began, or a later epoch.
func drained(topics []replay.TopicStats, targets map[string]transport.Position) bool {
	for _, ts := range topics {
		want, ok := targets[ts.Topic]
		if !ok {
			continue
		}
		c := ts.Cursor
		switch {
		case c.Epoch == want.Epoch && c.Seq >= want.Seq:
		case c.Epoch != want.Epoch && c.Epoch != "" && c.Epoch == ts.Head.Epoch:
			// The topic moved on to a new epoch, and the cursor with it.
		default:
			return false
		}
	}
	return true
}

// Status describes the subscription as Bus.Status does.
func (s *Subscription) Status() SubscriptionStatus {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.g.statusLocked()
}
