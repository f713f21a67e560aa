package bus

import (
	"errors"
	"fmt"

	"github.com/durabus/durabus/transport"
)

var (
	// ErrUndecodable: the event's envelope or payload could not be decoded.
	ErrUndecodable = errors.New("bus: undecodable event")
	// ErrUnknownType: no handler on the topic takes the event's type.
	ErrUnknownType = errors.New("bus: no handler for event type")
	// ErrNoUpcaster: the event is older than the handler's type and no
	// upcaster bridges the versions.
	ErrNoUpcaster = errors.New("bus: no upcaster")
	// ErrNewerVersion: the event is newer than the handler's type knows.
	ErrNewerVersion = errors.New("bus: event version newer than handler")
)

// DeliveryError reports an event that could not be handed to a handler and
// was set aside: Err wraps ErrUndecodable, ErrUnknownType, ErrNoUpcaster or
// ErrNewerVersion. It is permanent: retrying cannot help. Without
// DeadLetter middleware the bus reports it through WithOnError and moves on.
type DeliveryError struct {
	Topic    string
	Position transport.Position
	// Type is the event type, when the envelope could be read.
	Type string
	// ID is the event id, when the envelope could be read.
	ID  string
	Err error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("bus: event %s (type %q) at %s seq %d set aside: %v", e.ID, e.Type, e.Topic, e.Position.Seq, e.Err)
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent reports that retrying cannot help; Retry middleware honours it.
func (e *DeliveryError) Permanent() bool { return true }
