package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport/redistransport"
)

// connectTimeout bounds the first PING, so that an unreachable Redis gives
// a clear error instead of a hang.
const connectTimeout = 5 * time.Second

// conn is an open Redis client with a durabus transport and bus on it.
type conn struct {
	rdb  *redis.Client
	tr   *redistransport.Transport
	bus  *bus.Bus
	addr string // host:port, without credentials, for messages
	ns   string
}

// Close closes the bus, the transport and the client, in that order.
func (c *conn) Close() {
	_ = c.bus.Close()
	_ = c.tr.Close()
	_ = c.rdb.Close()
}

// connect opens e.redisURL, checks with PING that Redis answers and accepts
// the credentials, and builds a transport and a bus on it.
func connect(ctx context.Context, e *env, busOpts ...bus.Option) (*conn, error) {
	rdb, addr, err := dial(ctx, e.redisURL, "durabus-cli")
	if err != nil {
		return nil, err
	}
	c, err := wrap(rdb, addr, e.namespace, busOpts...)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return c, nil
}

// wrap builds a transport and a bus on an open client.
func wrap(rdb *redis.Client, addr, namespace string, busOpts ...bus.Option) (*conn, error) {
	// The commands print what they see themselves: the library's log says
	// only what they would not (losses, handler panics), on stderr.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return wrapWith(rdb, addr, namespace, "durabus-cli", log, busOpts...)
}

// wrapWith is wrap with the bus's source and the library's logger given.
func wrapWith(rdb *redis.Client, addr, namespace, source string, log *slog.Logger, busOpts ...bus.Option) (*conn, error) {
	ns := namespace
	if ns == "" {
		ns = redistransport.DefaultNamespace
	}
	tr, err := redistransport.New(rdb, redistransport.WithNamespace(ns), redistransport.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, errors.Unwrap(err))
	}
	b, err := bus.New(tr, append([]bus.Option{bus.WithSource(source), bus.WithLogger(log)}, busOpts...)...)
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return &conn{rdb: rdb, tr: tr, bus: b, addr: addr, ns: ns}, nil
}

// dial parses url, connects and PINGs. Errors name the address (never the
// password) and say what to do.
func dial(ctx context.Context, url, clientName string) (*redis.Client, string, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, "", &usageError{msg: badURL(url, err)}
	}
	// The name shows in CLIENT LIST; a user without the right to set it
	// (the least-privilege ACL user of docs/operations.md) works unnamed.
	opts.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		_ = cn.ClientSetName(ctx, clientName).Err()
		return nil
	}
	opts.DialTimeout = 3 * time.Second
	opts.DialerRetries = 2 // fail fast when nothing listens; the follower has its own backoff
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, "", explainRedisErr(opts.Addr, err)
	}
	return rdb, opts.Addr, nil
}

// explainRedisErr turns a failed first contact into one readable sentence.
func explainRedisErr(addr string, err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "NOAUTH"):
		return fmt.Errorf("authentication required by Redis at %s (NOAUTH): give the password in the URL, redis://:PASSWORD@%s or redis://USER:PASSWORD@%s", addr, addr, addr)
	case strings.HasPrefix(msg, "WRONGPASS"):
		return fmt.Errorf("authentication failed at Redis %s (WRONGPASS): wrong user name or password: check the URL in --redis or DURABUS_REDIS", addr)
	case strings.Contains(msg, "without any password configured"):
		return fmt.Errorf("the URL gives a password but Redis at %s has none set: remove it from --redis or DURABUS_REDIS", addr)
	case strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("permission denied by Redis at %s: %s", addr, msg)
	}
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach Redis at %s: connection refused (is redis-server running? set --redis or DURABUS_REDIS)", addr)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("cannot reach Redis at %s: no answer within %v (check the address, firewall and TLS: rediss:// for TLS)", addr, connectTimeout)
	case errors.As(err, new(*net.OpError)), errors.As(err, new(*net.DNSError)):
		return fmt.Errorf("cannot reach Redis at %s: %v", addr, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted while connecting to Redis at %s", addr)
	}
	return fmt.Errorf("talking to Redis at %s: %v", addr, err)
}

// redactURL hides the password of a Redis URL.
func redactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return u
	}
	cred := rest[:at]
	if user, _, hasPw := strings.Cut(cred, ":"); hasPw {
		cred = user + ":***"
	}
	return scheme + "://" + cred + rest[at:]
}
