// Package exredis connects the examples to Redis: the server named by their
// --redis flag, or, when the flag is empty, a private redis-server (from
// PATH, see internal/redisproc) started for the run and stopped at its end.
package exredis

import (
	"context"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/internal/redisproc"
)

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
