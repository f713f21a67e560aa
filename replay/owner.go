package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/durabus/durabus/transport"
)

// ErrNotOwner is reported (WithOnError) when a durable follower lost the
// lease on its consumer: it stopped handling and waits as a standby.
var ErrNotOwner = errors.New("replay: durable consumer owned by another process")

// DefaultLeaseTTL is the lease of a durable consumer (WithLease).
const DefaultLeaseTTL = 10 * time.Second

// lease is a durable follower's claim on its consumer, kept alive by
// keep. A follower handles events only while it holds one whose deadline,
// by its own monotonic clock, has not passed.
type lease struct {
	o     transport.Owner
	claim transport.Claim
	ttl   time.Duration
	// until is the monotonic time (ns since the lease was taken) before
	// which the follower may handle: the send time of the last successful
	// claim or renewal, plus ttl, less a margin for clock rates.
	start time.Time
	until atomic.Int64
	lost  atomic.Bool
	stop  func() // ends the term of ownership
}

// margin is how long before its lease lapses in Redis a follower stops
// handling: a tenth of the ttl.
func (l *lease) margin() time.Duration { return l.ttl / 10 }

func (l *lease) extend(sent time.Time) {
	l.until.Store(int64(sent.Sub(l.start) + l.ttl - l.margin()))
}

// valid reports whether the follower may still start a handler call.
func (l *lease) valid() bool {
	return l == nil || !l.lost.Load() && int64(time.Since(l.start)) < l.until.Load()
}

// HolderID returns a new id for a consumer's lease (WithLeaseHolder): host,
// pid and a random part, so that a restarted process is another holder.
func HolderID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// claim takes the lease on the follower's consumer, waiting as a standby
// while another process holds it. It returns nil when ctx ended.
func (f *Follower) claim(ctx context.Context, o transport.Owner) *lease {
	bo := f.newBackoff()
	standby := false
	for {
		sent := time.Now()
		c, err := o.ClaimConsumer(ctx, f.cfg.consumer, f.holder, f.cfg.leaseTTL)
		if err == nil {
			if standby {
				f.log.Log(ctx, f.standbyLevel(), "durabus: took over durable consumer", "consumer", f.cfg.consumer, "token", c.Token)
			}
			l := &lease{o: o, claim: c, ttl: f.cfg.leaseTTL, start: sent}
			l.extend(sent)
			return l
		}
		if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
			return nil
		}
		wait := bo.NextBackOff()
		var held *transport.HeldError
		if errors.As(err, &held) {
			if !standby {
				standby = true
				if f.cfg.standbyPoll > 0 {
					// A group member waiting for a topic another member
					// is handing over: the normal course of a rebalance.
					f.log.Debug("durabus: group topic held by another member; waiting", "consumer", f.cfg.consumer, "holder", held.Holder)
				} else {
					f.log.Warn("durabus: durable consumer is owned by another process; waiting as a standby until its lease lapses (to share work between replicas, use a consumer group)",
						"consumer", f.cfg.consumer, "holder", held.Holder, "lease_left", held.Remaining)
					f.reportOnly(err)
				}
			}
			poll := f.cfg.leaseTTL / 3
			if f.cfg.standbyPoll > 0 {
				poll = f.cfg.standbyPoll
			}
			wait = min(max(held.Remaining, f.cfg.boInitial), poll)
		} else {
			f.report(fmt.Errorf("replay: claim consumer %q: %w", f.cfg.consumer, err))
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// keep renews l every third of its ttl until ctx ends. When the lease is
// lost (fenced, or not renewed before its deadline) it marks it lost and
// calls stop.
func (f *Follower) keep(ctx context.Context, l *lease, stop func()) {
	every := l.ttl / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		deadline := time.Duration(l.until.Load()) - time.Since(l.start)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-time.After(max(deadline, 0)):
			l.lost.Store(true)
			f.report(fmt.Errorf("replay: consumer %q: lease not renewed in time, handling stopped: %w", f.cfg.consumer, ErrNotOwner))
			stop()
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := l.o.RenewConsumer(rctx, l.claim, l.ttl)
		cancel()
		switch {
		case err == nil:
			l.extend(sent)
			t.Reset(every)
		case errors.Is(err, transport.ErrFenced):
			l.lost.Store(true)
			f.report(fmt.Errorf("replay: consumer %q: %w: %w", f.cfg.consumer, ErrNotOwner, err))
			stop()
			return
		case ctx.Err() != nil:
			return
		default:
			f.report(fmt.Errorf("replay: consumer %q: renew lease: %w", f.cfg.consumer, err))
			t.Reset(every / 4)
		}
	}
}

// standbyLevel is the level of a take-over's log line: a group member's
// (the normal course of a rebalance, counted in GroupStats) is Debug, a
// standby's Warn.
func (f *Follower) standbyLevel() slog.Level {
	if f.cfg.standbyPoll > 0 {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
