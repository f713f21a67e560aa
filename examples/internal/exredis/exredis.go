// Package exredis connects the examples to Redis: the server named by their
// --redis flag, or, when the flag is empty, a private redis-server (from
// PATH) started for the run and stopped at its end.
package exredis

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/redis/go-redis/v9"
)

// Connect returns a client for url (redis://, rediss://, with user and
// password), or for a private server when url is empty, and a function that
// closes the client and stops the private server. It says on w which server
// it uses.
func Connect(ctx context.Context, url string, w io.Writer) (*redis.Client, func(), error) {
	if url == "" {
		return nil, nil, errors.New("no --redis URL given (a private server needs internal/redisproc)")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, fmt.Errorf("--redis %q: %w", url, err)
	}
	rdb := redis.NewClient(opt)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", opt.Addr, err)
	}
	return rdb, func() { rdb.Close() }, nil
}
