// Package redisdedupe is a middleware.DedupeStore in Redis, shared by every
// process of one durable consumer. It lives apart from package middleware
// so that the core middleware carry no go-redis dependency.
//
//	store, err := redisdedupe.New(rdb, "billing")
//	mw := middleware.Default(middleware.Options{Dedupe: store})
package redisdedupe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

// DefaultNamespace prefixes the keys of a Store; it is the namespace of
// redistransport.
const DefaultNamespace = "durabus"

// Store is a middleware.DedupeStore in Redis, shared by every process of
// one durable consumer. Each id is one string key
//
//	<ns>:dedupe:<consumer>:<id>
//
// holding "pending:<token>" with the lease as expiry while a call is in
// flight (SET NX PX), then "done" with the window as expiry. Every command
// touches one key, so it works unchanged on Redis Cluster (a consumer name
// with a {hash tag} puts all its keys in one slot). Safe for concurrent
// use; it never closes the client.
type Store struct {
	rdb           redis.UniversalClient
	prefix        string
	window, lease time.Duration
}

var _ middleware.DedupeStore = (*Store)(nil)

// Option configures New.
type Option func(*Store)

// WithNamespace sets the key prefix, a valid topic name. Default
// DefaultNamespace.
func WithNamespace(ns string) Option {
	return func(s *Store) { s.prefix = ns }
}

// WithWindow sets how long a handled id is remembered; at least 1 ms.
// Default middleware.DefaultDedupeWindow (1 h).
func WithWindow(d time.Duration) Option {
	return func(s *Store) { s.window = d }
}

// WithLease sets how long a claim lasts; at least 1 ms, and keep it above
// the handler's timeout. Default middleware.DefaultDedupeLease (1 min).
func WithLease(d time.Duration) Option {
	return func(s *Store) { s.lease = d }
}

// New returns a Store for the durable consumer named consumer, which
// accepts the names bus.WithConsumer accepts (usually the same name). An
// invalid argument or option is an error wrapping bus.ErrInvalidOption
// that names every problem at once.
func New(rdb redis.UniversalClient, consumer string, opts ...Option) (*Store, error) {
	s := &Store{rdb: rdb, prefix: DefaultNamespace, window: middleware.DefaultDedupeWindow, lease: middleware.DefaultDedupeLease}
	for _, o := range opts {
		o(s)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("redisdedupe: %w: "+format, append([]any{bus.ErrInvalidOption}, args...)...))
	}
	if rdb == nil {
		bad("nil redis client")
	}
	if err := replay.ValidateConsumer(consumer); err != nil {
		bad("%v", err)
	}
	if err := transport.ValidateTopic(s.prefix); err != nil {
		bad("namespace %q: %v", s.prefix, err)
	}
	if s.window < time.Millisecond {
		bad("window %v: want at least 1ms", s.window)
	}
	if s.lease < time.Millisecond {
		bad("lease %v: want at least 1ms", s.lease)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.prefix = s.prefix + ":dedupe:" + consumer + ":"
	return s, nil
}

// Key returns the Redis key of id.
func (s *Store) Key(id string) string { return s.prefix + id }

// claimScript: SET NX the claim; else report what holds the key.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'claimed' end
local v = redis.call('GET', KEYS[1])
if v == 'done' then return 'done' end
return 'busy'
`)

// abortScript deletes the claim only while it is ours.
var abortScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Claim implements middleware.DedupeStore.
func (s *Store) Claim(ctx context.Context, id string) (string, bool, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	token := "pending:" + hex.EncodeToString(b[:])
	res, err := claimScript.Run(ctx, s.rdb, []string{s.Key(id)}, token, s.lease.Milliseconds()).Text()
	switch {
	case err != nil:
		return "", false, err
	case res == "done":
		return "", true, nil
	case res == "busy":
		return "", false, middleware.ErrInFlight
	}
	return token, false, nil
}

// Commit implements middleware.DedupeStore.
func (s *Store) Commit(ctx context.Context, id, _ string) error {
	return s.rdb.Set(ctx, s.Key(id), "done", s.window).Err()
}

// Abort implements middleware.DedupeStore.
func (s *Store) Abort(ctx context.Context, id, token string) error {
	return abortScript.Run(ctx, s.rdb, []string{s.Key(id)}, token).Err()
}
