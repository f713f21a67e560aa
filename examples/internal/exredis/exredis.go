// Package exredis holds what the examples share: Main, their entry point;
// Connect and Transport, which connect them to Redis (the server named by
// their --redis flag, or, when the flag is empty, a private redis-server
// from PATH, see internal/redisproc, started for the run and stopped at its
// end); and SyncWriter, for output written by concurrent handlers.
package exredis

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redisproc"
	"github.com/durabus/durabus/transport/redistransport"
)

// Main runs an example: it calls run with the command-line arguments and
// os.Stdout, under a context that ends on Ctrl-C or SIGTERM. When run fails
// it prints "name: error" on stderr and exits with status 1.
func Main(name string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Connect returns a client for url (redis://, rediss://, with user and
// password), or for a private server when url is empty, and a function that
// closes the client and stops the private server. It says on w when it
// starts a private server.
func Connect(ctx context.Context, url string, w io.Writer) (*redis.Client, func(), error) {
	stop := func() {}
	if url == "" {
		srv, err := redisproc.Start(ctx)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(w, "(no --redis given: started a private redis-server on %s for this run)\n", srv.Addr())
		url, stop = srv.URL(), func() { srv.Stop() }
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("--redis %q: %w", url, err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		stop()
		return nil, nil, fmt.Errorf("redis at %s: %w", opt.Addr, err)
	}
	return rdb, func() { rdb.Close(); stop() }, nil
}

// Transport connects as Connect does and returns a Redis transport on the
// client, the client itself (for the examples that use Redis directly), and
// one function that closes the transport, the client and the private
// server, in that order. On error everything opened is closed again.
func Transport(ctx context.Context, url string, w io.Writer) (*redistransport.Transport, *redis.Client, func(), error) {
	rdb, closeRedis, err := Connect(ctx, url, w)
	if err != nil {
		return nil, nil, nil, err
	}
	tr, err := redistransport.New(rdb)
	if err != nil {
		closeRedis()
		return nil, nil, nil, err
	}
	return tr, rdb, func() { tr.Close(); closeRedis() }, nil
}

// SyncWriter serialises the writes of concurrent goroutines (handlers of
// different topics, a status loop) to one io.Writer. It is safe for
// concurrent use.
type SyncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewSyncWriter returns a SyncWriter that writes to w.
func NewSyncWriter(w io.Writer) *SyncWriter { return &SyncWriter{w: w} }

// Write writes p to the underlying writer, one call at a time.
func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
