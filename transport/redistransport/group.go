package redistransport

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// A consumer group's membership is one hash, ns:group:{<group>}: field the
// member's id, value "<until ms> <seen ms> <member JSON>" (Redis clock).
// The heartbeat script writes the caller's entry, drops the lapsed ones and
// returns the rest, in one step; the hash expires when no member has
// written to it for ten times the longest ttl. ns:groups (a sorted set,
// another slot) lists the groups by their last heartbeat, best effort.

// heartbeatScript: KEYS[1] the group hash. ARGV[1] member id, ARGV[2] its
// JSON, ARGV[3] ttl ms. Returns {now ms, value, value, ...} of the live
// members.
const heartbeatScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d ', now + ttl, now) .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
local out = {now}
for i = 1, #all, 2 do
  local u = tonumber(string.match(all[i + 1], '^(%d+) '))
  if not u or u < now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    out[#out + 1] = all[i + 1]
  end
end
if redis.call('PTTL', KEYS[1]) < 10 * ttl then
  redis.call('PEXPIRE', KEYS[1], 10 * ttl)
end
return out
`

var heartbeat = newOwnerScript(heartbeatScript, &owners.noFlags)

func (t *Transport) groupKey(group string) string {
	return t.cfg.namespace + ":group:{" + group + "}"
}

func (t *Transport) groupsKey() string { return t.cfg.namespace + ":groups" }

func validGroup(op, group string) error {
	if group == "" || len(group) > 400 || strings.ContainsAny(group, "{} \t\r\n") {
		return fmt.Errorf("redistransport: %s: group name %q: want 1 to 400 bytes without braces or spaces", op, group)
	}
	return nil
}

// Heartbeat implements transport.GroupStore.
func (t *Transport) Heartbeat(ctx context.Context, group string, m transport.GroupMember, ttl time.Duration) ([]transport.GroupMember, error) {
	if t.isClosed() {
		return nil, errClosed("group heartbeat")
	}
	if err := validGroup("group heartbeat", group); err != nil {
		return nil, err
	}
	if m.ID == "" || ttl < time.Millisecond {
		return nil, fmt.Errorf("redistransport: group heartbeat %q: want a member id and a ttl of at least 1 ms", group)
	}
	m.Seen, m.Until = time.Time{}, time.Time{}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("redistransport: group heartbeat %q: %w", group, err)
	}
	v, err := heartbeat.run(ctx, t.rdb, []string{t.groupKey(group)}, m.ID, b, ttl.Milliseconds())
	if err != nil {
		return nil, wrapErr("group heartbeat", group, err)
	}
	r, ok := v.([]any)
	if !ok || len(r) < 1 {
		return nil, fmt.Errorf("redistransport: group heartbeat %q: unexpected reply %v", group, v)
	}
	now, _ := r[0].(int64)
	// The index is another slot: a separate command, best effort.
	t.rdb.ZAdd(ctx, t.groupsKey(), redis.Z{Score: float64(now), Member: group})
	vals := make([]string, 0, len(r)-1)
	for _, x := range r[1:] {
		if s, ok := x.(string); ok {
			vals = append(vals, s)
		}
	}
	return parseMembers(vals, now), nil
}

// parseMembers decodes the hash values of live members (until ≥ now),
// sorted by id; malformed ones are skipped.
func parseMembers(vals []string, now int64) []transport.GroupMember {
	out := make([]transport.GroupMember, 0, len(vals))
	for _, v := range vals {
		until, rest, ok1 := strings.Cut(v, " ")
		seen, js, ok2 := strings.Cut(rest, " ")
		u, err1 := strconv.ParseInt(until, 10, 64)
		s, err2 := strconv.ParseInt(seen, 10, 64)
		var m transport.GroupMember
		if !ok1 || !ok2 || err1 != nil || err2 != nil || u < now || json.Unmarshal([]byte(js), &m) != nil || m.ID == "" {
			continue
		}
		m.Seen, m.Until = time.UnixMilli(s), time.UnixMilli(u)
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaveGroup implements transport.GroupStore.
func (t *Transport) LeaveGroup(ctx context.Context, group, id string) error {
	if t.isClosed() {
		return errClosed("leave group")
	}
	if err := validGroup("leave group", group); err != nil {
		return err
	}
	return wrapErr("leave group", group, t.rdb.HDel(ctx, t.groupKey(group), id).Err())
}

// GroupMembers implements transport.GroupStore.
func (t *Transport) GroupMembers(ctx context.Context, group string) ([]transport.GroupMember, error) {
	if t.isClosed() {
		return nil, errClosed("group members")
	}
	if err := validGroup("group members", group); err != nil {
		return nil, err
	}
	p := t.rdb.Pipeline()
	now := p.Time(ctx)
	all := p.HVals(ctx, t.groupKey(group))
	if _, err := p.Exec(ctx); err != nil {
		return nil, wrapErr("group members", group, err)
	}
	return parseMembers(all.Val(), now.Val().UnixMilli()), nil
}

// Groups implements transport.GroupStore.
func (t *Transport) Groups(ctx context.Context) ([]string, error) {
	if t.isClosed() {
		return nil, errClosed("groups")
	}
	gs, err := t.rdb.ZRange(ctx, t.groupsKey(), 0, -1).Result()
	if err != nil {
		return nil, wrapErr("groups", "", err)
	}
	sort.Strings(gs)
	return gs, nil
}
