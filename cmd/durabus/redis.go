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
	rdb *redis.Client // the server of the URL
	// cluster is the Redis Cluster that rdb is a node of, seeded with it;
	// nil on a standalone Redis. The transport runs on it.
	cluster *redis.ClusterClient
	tr      *redistransport.Transport
	bus     *bus.Bus
	addr    string // host:port, without credentials, for messages
	ns      string
}

// client is the client the transport runs on: the cluster's, or rdb.
func (c *conn) client() redis.UniversalClient {
	if c.cluster != nil {
		return c.cluster
	}
	return c.rdb
}

// Close closes the bus, the transport and the clients, in that order.
func (c *conn) Close() {
	_ = c.bus.Close()
	_ = c.tr.Close()
	if c.cluster != nil {
		_ = c.cluster.Close()
	}
	_ = c.rdb.Close()
}

// connect opens e.redisURL, checks with PING that Redis answers and accepts
// the credentials, and builds a transport and a bus on it: on a node of a
// Redis Cluster, on a cluster client seeded with that node.
func connect(ctx context.Context, e *env, busOpts ...bus.Option) (*conn, error) {
	// The commands print what they see themselves: the library's log says
	// only what they would not (losses, handler panics), on stderr.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return open(ctx, e.redisURL, e.namespace, "durabus-cli", log, busOpts...)
}

// open is connect with the client and bus source name and the library's
// logger given.
func open(ctx context.Context, url, namespace, name string, log *slog.Logger, busOpts ...bus.Option) (*conn, error) {
	rdb, addr, err := dial(ctx, url, name)
	if err != nil {
		return nil, err
	}
	cc, err := joinCluster(ctx, rdb, addr)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	c, err := newConn(rdb, cc, addr, namespace, name, log, busOpts...)
	if err != nil {
		if cc != nil {
			_ = cc.Close()
		}
		_ = rdb.Close()
		return nil, err
	}
	return c, nil
}

// wrap builds a transport and a bus on an open client.
func wrap(rdb *redis.Client, addr, namespace string, busOpts ...bus.Option) (*conn, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	return newConn(rdb, nil, addr, namespace, "durabus-cli", log, busOpts...)
}

// newConn builds a transport and a bus on cc when it is not nil (rdb is
// then one of its nodes), else on rdb.
func newConn(rdb *redis.Client, cc *redis.ClusterClient, addr, namespace, source string, log *slog.Logger, busOpts ...bus.Option) (*conn, error) {
	ns := namespace
	if ns == "" {
		ns = redistransport.DefaultNamespace
	}
	var uc redis.UniversalClient = rdb
	if cc != nil {
		uc = cc
	}
	tr, err := redistransport.New(uc, redistransport.WithNamespace(ns), redistransport.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, errors.Unwrap(err))
	}
	b, err := bus.New(tr, append([]bus.Option{bus.WithSource(source), bus.WithLogger(log)}, busOpts...)...)
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	return &conn{rdb: rdb, cluster: cc, tr: tr, bus: b, addr: addr, ns: ns}, nil
}

// joinCluster returns a cluster client seeded with rdb's server when that
// server is a node of a Redis Cluster (HELLO says mode "cluster"; HELLO
// needs no ACL right), with rdb's credentials, TLS and timeouts, after a
// PING through it; nil for any other server.
func joinCluster(ctx context.Context, rdb *redis.Client, addr string) (*redis.ClusterClient, error) {
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if serverMode(pctx, rdb) != "cluster" {
		return nil, nil
	}
	o := rdb.Options()
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:               []string{o.Addr},
		OnConnect:           o.OnConnect,
		Protocol:            o.Protocol,
		Username:            o.Username,
		Password:            o.Password,
		CredentialsProvider: o.CredentialsProvider,
		DialTimeout:         o.DialTimeout,
		DialerRetries:       o.DialerRetries,
		ReadTimeout:         o.ReadTimeout,
		WriteTimeout:        o.WriteTimeout,
		PoolSize:            o.PoolSize,
		TLSConfig:           o.TLSConfig,
	})
	if err := cc.Ping(pctx).Err(); err != nil {
		_ = cc.Close()
		return nil, fmt.Errorf("the Redis Cluster of node %s: %w", addr, explainRedisErr(addr, err))
	}
	return cc, nil
}

// serverMode is the "mode" of HELLO's reply: "standalone", "cluster" or
// "sentinel"; "" when HELLO fails (a server before 6.2, a proxy).
func serverMode(ctx context.Context, rdb *redis.Client) string {
	v, err := rdb.Do(ctx, "HELLO").Result()
	if err != nil {
		return ""
	}
	switch m := v.(type) {
	case map[any]any: // RESP3
		s, _ := m["mode"].(string)
		return s
	case []any: // RESP2: key, value, key, value…
		for i := 0; i+1 < len(m); i += 2 {
			if k, _ := m[i].(string); k == "mode" {
				s, _ := m[i+1].(string)
				return s
			}
		}
	}
	return ""
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
