package transport

import (
	"errors"
	"fmt"
	"strings"

	"github.com/durabus/durabus/envelope"
)

// tooLarge is ErrTooLarge: one limit, whichever package states it.
type tooLarge struct{}

func (tooLarge) Error() string        { return "transport: event too large" }
func (tooLarge) Is(target error) bool { return target == envelope.ErrTooLarge }

var (
	// ErrClosed is returned by every method of a closed transport, and by
	// Subscription.Err when the transport closed the subscription.
	ErrClosed = errors.New("transport: closed")
	// ErrUnknownTopic is returned for a topic that has no log.
	ErrUnknownTopic = errors.New("transport: unknown topic")
	// ErrTrimmed says that a requested range is no longer held by the
	// backlog: retention removed it, or the log was reset (new epoch).
	ErrTrimmed = errors.New("transport: range no longer in backlog")
	// ErrTooLarge is returned when an encoded event (the whole envelope,
	// not only its data) exceeds the transport's size limit. It also
	// matches envelope.ErrTooLarge: errors.Is(err, envelope.ErrTooLarge)
	// holds for either limit.
	ErrTooLarge error = tooLarge{}
	// ErrInvalidTopic is returned for a topic name or pattern that breaks the
	// rules of ValidateTopic and ValidatePattern.
	ErrInvalidTopic = errors.New("transport: invalid topic")
	// ErrInvalidOption is wrapped by errors about invalid transport options.
	ErrInvalidOption = errors.New("transport: invalid option")
)

// BatchError is returned by PublishBatch when some events were not written.
// Failed lists their indexes in the batch, in order; Err is the first cause.
// An event whose outcome is unknown (its reply was lost) is listed as failed:
// with idempotent publishing, re-publishing it is safe.
type BatchError struct {
	Failed []int
	Err    error
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "transport: %d event(s) of the batch not written (indexes", len(e.Failed))
	for i, n := range e.Failed {
		if i == 8 {
			b.WriteString(" …")
			break
		}
		fmt.Fprintf(&b, " %d", n)
	}
	fmt.Fprintf(&b, "): %v", e.Err)
	return b.String()
}

// Unwrap returns the cause.
func (e *BatchError) Unwrap() error { return e.Err }
