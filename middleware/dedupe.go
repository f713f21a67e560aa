package middleware

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/durabus/durabus/bus"
)

// Defaults of the dedupe stores.
const (
	// DefaultDedupeWindow is how long an id is remembered as handled.
	DefaultDedupeWindow = time.Hour
	// DefaultDedupeLease is how long a claim on an id in flight lasts
	// before another call may take it over. Keep it above the handler's
	// timeout.
	DefaultDedupeLease = time.Minute
	// DefaultMemoryDedupeSize bounds the ids a MemoryStore remembers.
	DefaultMemoryDedupeSize = 100_000
)

// dedupeSaveTimeout bounds Commit and Abort, from the moment the handler
// returned. A variable so that a test can shorten it.
var dedupeSaveTimeout = 5 * time.Second

// ErrInFlight is returned by Dedupe when another call holds a live claim on
// the same event id (another process of the same consumer, or the same
// event on two topics). It is not permanent: Retry tries again, and the
// claim expires after the store's lease if its holder died.
var ErrInFlight = errors.New("middleware: dedupe: event is being handled elsewhere")

// DedupeStore remembers which event ids a consumer has handled. The
// protocol (claim, run, then commit or abort) is documented on Dedupe.
// Implementations must be safe for concurrent use.
type DedupeStore interface {
	// Claim takes id for one handler call. It returns done = true when id
	// was handled within the window, ErrInFlight when another live claim
	// holds it, and otherwise a token for Commit or Abort.
	Claim(ctx context.Context, id string) (token string, done bool, err error)
	// Commit marks id handled for the window, replacing the claim.
	Commit(ctx context.Context, id, token string) error
	// Abort releases the claim if token still holds it.
	Abort(ctx context.Context, id, token string) error
}

// Dedupe gives a handler the exactly-once effect for events with the same
// envelope id within the store's window: an id already handled by this
// subscription (Message.Subscription) is dropped (the call returns nil
// without calling the handler). The store's keys are "<subscription>|<id>".
//
// The protocol is claim → run → commit: Claim marks the id "in flight"
// with a lease (SET NX with a short expiry in Redis), the handler runs,
// and only its success turns the claim into "handled" for the window;
// a failure or panic releases the claim, so the retry runs the handler
// again. The one window left is a crash (or a failed Commit) after the
// handler succeeded and before Commit: then the event is handled again
// once the lease expires — make the handler's own writes idempotent if
// that matters. A Commit that fails is noted for Logging and does not fail
// the call: the handler's effect has happened.
//
// Events without an id pass through.
func Dedupe(store DedupeStore) bus.Middleware {
	return func(next bus.Handler) bus.Handler {
		return bus.HandlerFunc(func(ctx context.Context, m *bus.Message) (err error) {
			if m.ID == "" {
				return next.Handle(ctx, m)
			}
			// Per subscription: the same event reaching two handlers of a
			// bus (a typed one and a pattern one) is handled by each.
			id := m.ID
			if m.Subscription != "" {
				id = m.Subscription + "|" + m.ID
			}
			token, done, err := store.Claim(ctx, id)
			if err != nil {
				return fmt.Errorf("middleware: dedupe claim of %s: %w", m.ID, err)
			}
			c := callFrom(ctx)
			if done {
				if c != nil {
					c.markDuplicate()
				}
				return nil
			}
			// Commit and Abort run on a ctx detached from the handler's
			// (whose deadline may have passed), with a bound that starts
			// when the handler returns: a slow handler must not eat it.
			saveCtx := func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.WithoutCancel(ctx), dedupeSaveTimeout)
			}
			ok := false
			defer func() {
				if !ok {
					sctx, cancel := saveCtx()
					defer cancel()
					if aerr := store.Abort(sctx, id, token); aerr != nil && c != nil {
						c.note(fmt.Errorf("middleware: dedupe abort of %s: %w", m.ID, aerr))
					}
				}
			}()
			if err = next.Handle(ctx, m); err != nil {
				return err
			}
			ok = true
			sctx, cancel := saveCtx()
			defer cancel()
			if cerr := store.Commit(sctx, id, token); cerr != nil && c != nil {
				c.note(fmt.Errorf("middleware: dedupe commit of %s (a redelivery may run the handler again): %w", m.ID, cerr))
			}
			return nil
		})
	}
}

// MemoryStore is a DedupeStore in process memory: a bounded LRU of ids
// with a time to live. It dedupes within one process only. Safe for
// concurrent use.
type MemoryStore struct {
	window, lease time.Duration
	size          int
	now           func() time.Time

	mu    sync.Mutex
	ids   map[string]*list.Element
	order *list.List // front: most recently used
	seq   uint64
}

type memEntry struct {
	id      string
	token   string // "" once handled
	expires time.Time
}

// NewMemoryStore returns a MemoryStore that remembers at most size handled
// ids (the least recently used go first) for window each. size ≤ 0 means
// DefaultMemoryDedupeSize, window ≤ 0 DefaultDedupeWindow. Claims last
// DefaultDedupeLease.
func NewMemoryStore(size int, window time.Duration) *MemoryStore {
	if size <= 0 {
		size = DefaultMemoryDedupeSize
	}
	if window <= 0 {
		window = DefaultDedupeWindow
	}
	return &MemoryStore{window: window, lease: DefaultDedupeLease, size: size, now: time.Now,
		ids: make(map[string]*list.Element), order: list.New()}
}

// Len returns the number of ids held (handled or claimed), expired ones
// included until they are evicted.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// Claim implements DedupeStore.
func (s *MemoryStore) Claim(_ context.Context, id string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if el, ok := s.ids[id]; ok {
		e := el.Value.(*memEntry)
		if now.Before(e.expires) {
			s.order.MoveToFront(el)
			if e.token == "" {
				return "", true, nil
			}
			return "", false, ErrInFlight
		}
		s.remove(el)
	}
	s.seq++
	token := fmt.Sprintf("m%d", s.seq)
	s.ids[id] = s.order.PushFront(&memEntry{id: id, token: token, expires: now.Add(s.lease)})
	for s.order.Len() > s.size {
		s.remove(s.order.Back())
	}
	return token, false, nil
}

// Commit implements DedupeStore.
func (s *MemoryStore) Commit(_ context.Context, id, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.ids[id]
	if !ok {
		el = s.order.PushFront(&memEntry{id: id})
		s.ids[id] = el
	}
	e := el.Value.(*memEntry)
	e.token, e.expires = "", s.now().Add(s.window)
	s.order.MoveToFront(el)
	for s.order.Len() > s.size {
		s.remove(s.order.Back())
	}
	return nil
}

// Abort implements DedupeStore.
func (s *MemoryStore) Abort(_ context.Context, id, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.ids[id]; ok && el.Value.(*memEntry).token == token {
		s.remove(el)
	}
	return nil
}

func (s *MemoryStore) remove(el *list.Element) {
	s.order.Remove(el)
	delete(s.ids, el.Value.(*memEntry).id)
}
