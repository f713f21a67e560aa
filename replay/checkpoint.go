package replay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/durabus/durabus/transport"
)

// checkpointSaveTimeout bounds the final save when Run returns.
const checkpointSaveTimeout = 5 * time.Second

// checkpointer batches a durable consumer's checkpoints: it saves the
// latest handled position per topic after cpEvery events or cpInterval,
// whichever comes first, and once more when the follower stops.
type checkpointer struct {
	f    *Follower
	kick chan struct{}

	mu      sync.Mutex
	pending map[string]transport.Position
	n       int
	saving  sync.Mutex // one save at a time, so an older map never overwrites a newer one
}

func newCheckpointer(f *Follower) *checkpointer {
	return &checkpointer{f: f, kick: make(chan struct{}, 1), pending: make(map[string]transport.Position)}
}

// note records that the event at pos of topic was handled.
func (c *checkpointer) note(topic string, pos transport.Position) {
	c.mu.Lock()
	c.pending[topic] = pos
	c.n++
	full := c.n >= c.f.cfg.cpEvery
	c.mu.Unlock()
	if full {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

func (c *checkpointer) run(ctx context.Context) {
	t := time.NewTicker(c.f.cfg.cpInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
		}
		c.save(ctx)
	}
}

// flush saves what is pending, with its own deadline.
func (c *checkpointer) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, checkpointSaveTimeout)
	defer cancel()
	c.save(ctx)
}

func (c *checkpointer) save(ctx context.Context) {
	c.saving.Lock()
	defer c.saving.Unlock()
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	batch := c.pending
	c.pending = make(map[string]transport.Position, len(batch))
	c.n = 0
	c.mu.Unlock()

	if err := c.f.saveCheckpoints(ctx, batch); err != nil {
		if ctx.Err() == nil && !errors.Is(err, transport.ErrFenced) { // fenced: reported by saveCheckpoints
			c.f.report(fmt.Errorf("replay: save checkpoints of consumer %q: %w", c.f.cfg.consumer, err))
		}
		// Keep what was not saved, unless a newer position came meanwhile.
		c.mu.Lock()
		for t, p := range batch {
			if _, newer := c.pending[t]; !newer {
				c.pending[t] = p
			}
		}
		c.mu.Unlock()
		return
	}
	c.f.c.checkpoints.Add(1)
}
