package transport

import (
	"context"
	"time"
)

// GroupStore is an optional ability of a Transport (found with a type
// assertion): it keeps the membership of consumer groups, where every
// process that uses the back end sees it. A member is alive while its
// heartbeats come within their ttl, by the back end's clock.
//
// Ownership of a group's topics is not kept here: each topic a member
// handles is a durable consumer of its own ("<group>@<topic>"), with the
// lease and fencing token of Owner. Membership only tells the members who
// is there, so that each can work out its share.
//
// Every method is safe for concurrent use.
type GroupStore interface {
	// Heartbeat records m as alive in group for ttl from now, with the
	// topics it owns, drops members whose time ran out, and returns the
	// live members, sorted by ID. m.ID names the member; m.Seen is set by
	// the back end.
	Heartbeat(ctx context.Context, group string, m GroupMember, ttl time.Duration) ([]GroupMember, error)
	// LeaveGroup removes member id from group at once, so that the others
	// need not wait for its heartbeats to lapse.
	LeaveGroup(ctx context.Context, group, id string) error
	// GroupMembers returns the live members of group, sorted by ID.
	GroupMembers(ctx context.Context, group string) ([]GroupMember, error)
	// Groups lists the groups that have had a member, sorted by name.
	Groups(ctx context.Context) ([]string, error)
}

// GroupMember is one member of a consumer group, as its last heartbeat
// said.
type GroupMember struct {
	ID      string    `json:"id"`      // the member's holder id (host/pid/random)
	Host    string    `json:"host"`    // where it runs
	Started time.Time `json:"started"` // when it joined
	// Seen is the time of its last heartbeat and Until when it lapses, by
	// the back end's clock.
	Seen  time.Time `json:"seen"`
	Until time.Time `json:"until"`
	// Owns lists the topics it owned at its last heartbeat.
	Owns []string `json:"owns,omitempty"`
}
