package transport

import (
	"context"
	"errors"
	"fmt"
	"time"
)

var (
	// ErrHeld is wrapped by the *HeldError ClaimConsumer returns while
	// another live process holds the consumer.
	ErrHeld = errors.New("transport: durable consumer held by another process")
	// ErrFenced is returned by a write made under a Claim that is no longer
	// the consumer's current one: its lease lapsed and another process (or
	// a later claim) took the consumer over. Nothing was written.
	ErrFenced = errors.New("transport: durable consumer's lease lost (fenced)")
)

// Owner is an optional ability of a Transport (found with a type
// assertion): it gives a durable consumer an identity in the back end and a
// single owner at a time.
//
// A consumer's record says that it exists (its name, when it was created,
// which topics it has saved a position for), so that a restart can tell a
// consumer whose positions vanished (evicted) from a new one. Its lease
// names the process (holder) that owns it, until a deadline on the back
// end's clock, and a fencing token that grows with every claim: a
// checkpoint write carries the token and is refused, atomically with the
// write, unless it is still the current one.
//
// Every method is safe for concurrent use.
type Owner interface {
	// ClaimConsumer takes the lease of consumer for holder, for ttl, and
	// creates the consumer's record when it has none. While another holder's
	// lease has not lapsed it returns a *HeldError (wrapping ErrHeld) and
	// changes nothing. A claim by the holder of the running lease extends it
	// and returns its token, so that several followers of one process can
	// share a lease; every other successful claim has a larger token than
	// the one before.
	ClaimConsumer(ctx context.Context, consumer, holder string, ttl time.Duration) (Claim, error)
	// RenewConsumer extends the lease of c by ttl from now. It returns
	// ErrFenced when c is not the current claim any more.
	RenewConsumer(ctx context.Context, c Claim, ttl time.Duration) error
	// ReleaseConsumer ends the lease of c at once, so that a standby takes
	// over without waiting for it to lapse. A stale c changes nothing.
	ReleaseConsumer(ctx context.Context, c Claim) error
	// SaveClaimed stores positions of c's consumer, like
	// Transport.SaveCheckpoints, and adds their topics to its record, only
	// when c is still the current claim; otherwise it returns ErrFenced and
	// writes nothing.
	SaveClaimed(ctx context.Context, c Claim, cps map[string]Position) error
}

// Claim is a lease on a durable consumer, returned by Owner.ClaimConsumer.
type Claim struct {
	Consumer string
	Holder   string
	// Token is the fencing token: it grows with every claim of Consumer.
	Token uint64
	// Created is when the consumer's record was made, by the back end's
	// clock; New is true when this claim made it.
	Created time.Time
	New     bool
	// Known lists the topics for which the consumer had saved a position,
	// by its record, when it was claimed (sorted). A topic listed here
	// without a checkpoint lost it (evicted, or deleted by hand).
	Known []string
}

// HeldError is returned by ClaimConsumer while another holder's lease on
// the consumer runs.
type HeldError struct {
	Consumer string
	// Holder is the current owner's holder id.
	Holder string
	// Remaining is how long its lease runs at most, unless renewed.
	Remaining time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("transport: durable consumer %q is held by %s (lease runs %v more): one process at a time owns a durable consumer's position; to share work between replicas use a consumer group",
		e.Consumer, e.Holder, e.Remaining.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }
