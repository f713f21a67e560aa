package middleware

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// DefaultDedupeNamespace prefixes the keys of a RedisStore; it is the
// namespace of redistransport.
const DefaultDedupeNamespace = "durabus"

// RedisStore is a DedupeStore in Redis, shared by every process of one
// durable consumer. Each id is one string key
//
//	<ns>:dedupe:<consumer>:<id>
//
// holding "pending:<token>" with the lease as expiry while a call is in
// flight (SET NX PX), then "done" with the window as expiry. Every command
// touches one key, so on Redis Cluster the keys need no hash tag and are
// spread over all slots (neither consumer names nor UUIDs contain braces).
// Safe for concurrent use; it never closes the client.
type RedisStore struct {
	rdb           redis.UniversalClient
	prefix        string
	window, lease time.Duration
}

// RedisStoreOption configures NewRedisStore.
type RedisStoreOption func(*RedisStore)

// WithDedupeNamespace sets the key prefix. Default DefaultDedupeNamespace.
func WithDedupeNamespace(ns string) RedisStoreOption {
	return func(s *RedisStore) { s.prefix = ns }
}

// WithDedupeWindow sets how long a handled id is remembered. Default
// DefaultDedupeWindow.
func WithDedupeWindow(d time.Duration) RedisStoreOption {
	return func(s *RedisStore) { s.window = d }
}

// WithDedupeLease sets how long a claim lasts; keep it above the handler's
// timeout. Default DefaultDedupeLease.
func WithDedupeLease(d time.Duration) RedisStoreOption {
	return func(s *RedisStore) { s.lease = d }
}

// NewRedisStore returns a RedisStore for the durable consumer named
// consumer (a valid topic name, usually the bus's WithConsumer name).
func NewRedisStore(rdb redis.UniversalClient, consumer string, opts ...RedisStoreOption) (*RedisStore, error) {
	s := &RedisStore{rdb: rdb, prefix: DefaultDedupeNamespace, window: DefaultDedupeWindow, lease: DefaultDedupeLease}
	for _, o := range opts {
		o(s)
	}
	var problems []string
	if rdb == nil {
		problems = append(problems, "nil redis client")
	}
	if err := transport.ValidateTopic(consumer); err != nil {
		problems = append(problems, fmt.Sprintf("consumer name: %v", err))
	}
	if err := transport.ValidateTopic(s.prefix); err != nil {
		problems = append(problems, fmt.Sprintf("namespace: %v", err))
	}
	if s.window < time.Millisecond || s.lease < time.Millisecond {
		problems = append(problems, fmt.Sprintf("window %v and lease %v must be at least 1 ms", s.window, s.lease))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("middleware: redis dedupe store: %s", strings.Join(problems, "; "))
	}
	s.prefix = s.prefix + ":dedupe:" + consumer + ":"
	return s, nil
}

// Key returns the Redis key of id.
func (s *RedisStore) Key(id string) string { return s.prefix + id }

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

// Claim implements DedupeStore.
func (s *RedisStore) Claim(ctx context.Context, id string) (string, bool, error) {
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
		return "", false, ErrInFlight
	}
	return token, false, nil
}

// Commit implements DedupeStore.
func (s *RedisStore) Commit(ctx context.Context, id, _ string) error {
	return s.rdb.Set(ctx, s.Key(id), "done", s.window).Err()
}

// Abort implements DedupeStore.
func (s *RedisStore) Abort(ctx context.Context, id, token string) error {
	return abortScript.Run(ctx, s.rdb, []string{s.Key(id)}, token).Err()
}
