package memtransport

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/durabus/durabus/transport"
)

// groupState is the membership of consumer groups in the process: group →
// member id → member. Guarded by Transport.mu.
type groupState map[string]map[string]transport.GroupMember

// ownerState is the durable consumers' records and leases in the process.
// Guarded by Transport.mu.
type ownerState map[string]*owner

type owner struct {
	created time.Time
	holder  string
	until   time.Time
	token   uint64
	known   map[string]bool
}

// Heartbeat implements transport.GroupStore.
func (t *Transport) Heartbeat(ctx context.Context, group string, m transport.GroupMember, ttl time.Duration) ([]transport.GroupMember, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if group == "" || m.ID == "" || ttl < time.Millisecond {
		return nil, fmt.Errorf("memtransport: group heartbeat %q: want a group, a member id and a ttl of at least 1 ms", group)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("group heartbeat")
	}
	if t.groups == nil {
		t.groups = groupState{}
	}
	ms := t.groups[group]
	if ms == nil {
		ms = map[string]transport.GroupMember{}
		t.groups[group] = ms
	}
	now := t.now()
	m.Seen, m.Until = now, now.Add(ttl)
	m.Owns = slices.Clone(m.Owns)
	ms[m.ID] = m
	return t.liveLocked(group, now), nil
}

// liveLocked drops the lapsed members of group and returns the others,
// sorted by id; t.mu is held.
func (t *Transport) liveLocked(group string, now time.Time) []transport.GroupMember {
	ms := t.groups[group]
	out := make([]transport.GroupMember, 0, len(ms))
	for id, m := range ms {
		if m.Until.Before(now) {
			delete(ms, id)
			continue
		}
		m.Owns = slices.Clone(m.Owns)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaveGroup implements transport.GroupStore.
func (t *Transport) LeaveGroup(ctx context.Context, group, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errClosed("leave group")
	}
	delete(t.groups[group], id)
	return nil
}

// GroupMembers implements transport.GroupStore.
func (t *Transport) GroupMembers(ctx context.Context, group string) ([]transport.GroupMember, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("group members")
	}
	return t.liveLocked(group, t.now()), nil
}

// Groups implements transport.GroupStore.
func (t *Transport) Groups(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed("groups")
	}
	return slices.Sorted(maps.Keys(t.groups)), nil
}

// ClaimConsumer implements transport.Owner.
func (t *Transport) ClaimConsumer(ctx context.Context, consumer, holder string, ttl time.Duration) (transport.Claim, error) {
	if err := ctx.Err(); err != nil {
		return transport.Claim{}, err
	}
	if consumer == "" || holder == "" || ttl < time.Millisecond {
		return transport.Claim{}, fmt.Errorf("memtransport: claim consumer %q: want a name, a holder and a ttl of at least 1 ms", consumer)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return transport.Claim{}, errClosed("claim consumer")
	}
	if t.owners == nil {
		t.owners = ownerState{}
	}
	now := t.now()
	o := t.owners[consumer]
	isNew := o == nil
	if isNew {
		o = &owner{created: now, known: map[string]bool{}}
		t.owners[consumer] = o
	}
	switch {
	case o.holder != "" && o.holder != holder && now.Before(o.until):
		return transport.Claim{}, &transport.HeldError{Consumer: consumer, Holder: o.holder, Remaining: o.until.Sub(now)}
	case o.holder != holder || !now.Before(o.until):
		o.token++
	}
	o.holder, o.until = holder, now.Add(ttl)
	return transport.Claim{Consumer: consumer, Holder: holder, Token: o.token, Created: o.created, New: isNew,
		Known: slices.Sorted(maps.Keys(o.known))}, nil
}

// currentLocked returns c's consumer when c is its current claim (its
// holder and token, as Redis checks: a lapsed lease nobody took since is
// still current); t.mu is held.
func (t *Transport) currentLocked(c transport.Claim) (*owner, error) {
	if t.closed {
		return nil, errClosed("consumer lease")
	}
	o := t.owners[c.Consumer]
	if o == nil || o.holder != c.Holder || o.token != c.Token {
		return nil, fmt.Errorf("memtransport: consumer %q: %w", c.Consumer, transport.ErrFenced)
	}
	return o, nil
}

// RenewConsumer implements transport.Owner.
func (t *Transport) RenewConsumer(ctx context.Context, c transport.Claim, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	o, err := t.currentLocked(c)
	if err != nil {
		return err
	}
	o.until = t.now().Add(ttl)
	return nil
}

// ReleaseConsumer implements transport.Owner.
func (t *Transport) ReleaseConsumer(ctx context.Context, c transport.Claim) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if o, err := t.currentLocked(c); err == nil {
		o.until = time.Time{}
	}
	return nil
}

// SaveClaimed implements transport.Owner.
func (t *Transport) SaveClaimed(ctx context.Context, c transport.Claim, cps map[string]transport.Position) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	o, err := t.currentLocked(c)
	if err != nil {
		return err
	}
	m := t.checkpoints[c.Consumer]
	if m == nil {
		m = make(map[string]transport.Position, len(cps))
		t.checkpoints[c.Consumer] = m
	}
	for topic, p := range cps {
		m[topic] = p
		o.known[topic] = true
	}
	return nil
}
