package redistest

import (
	"context"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Importing redistest, which only tests do, silences two process-wide
// loggers of libraries the tests drive: go-redis's ("failed to dial" every
// half second while a fault test keeps Redis away, sentinel and TLS
// notices) and zerolog's global one (toxiproxy's bandwidth toxic logs
// through it as JSON). Their lines would otherwise be mixed into the test
// results, hundreds of them under faults. A test's own t.Log output, shown
// when it fails, is unaffected; so is the slog output of durabus's own
// packages.
func init() {
	redis.SetLogger(quiet{})
	zerolog.SetGlobalLevel(zerolog.Disabled)
}

// quiet is a go-redis logger that drops every line.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
