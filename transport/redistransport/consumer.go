package redistransport

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

var _ transport.Owner = (*Transport)(nil)

// A durable consumer's record and lease live in one hash, the owner hash,
// in the slot of its checkpoint hash (see ownerKey):
//
//	ns:owner:{ns:consumer:<name>}  Hash  "name", "created" (Redis ms),
//	                                     "holder", "until" (Redis ms),
//	                                     "token" (fencing, grows per claim),
//	                                     "t:<topic>" = 1 for each topic with a
//	                                     saved position
//
// Older versions neither read nor write it: they read and write the
// checkpoint hash as before (unfenced).

// allowOOM is the shebang that lets a script write under maxmemory on
// Redis 7: the owner hash is a few bytes, and a consumer that cannot renew
// its lease must stop, so that Redis at maxmemory with noeviction would
// otherwise stop every durable consumer. Redis 6.2 does not know it; the
// scripts then run without it (see ownerScript.run).
const allowOOM = "#!lua flags=allow-oom\n"

// redisNow is the scripts' clock, Redis's, in ms.
const redisNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// claimScript: KEYS[1] owner hash, KEYS[2] checkpoint hash. ARGV[1] holder,
// ARGV[2] ttl ms, ARGV[3] consumer name. Returns {0, holder, remaining ms}
// when held by another, else {1, token, created, new, known topics...}. A
// claim by the holder of a running lease extends it and keeps its token
// (the followers of one bus share a holder); any other claim takes a new
// token.
const claimScript = redisNow + `
local o = redis.call('HMGET', KEYS[1], 'holder', 'until', 'created')
local left = (tonumber(o[2]) or 0) - now
if o[1] and o[1] ~= ARGV[1] and left > 0 then
  return {0, o[1], left}
end
local token
if o[1] == ARGV[1] and left > 0 then
  token = tonumber(redis.call('HGET', KEYS[1], 'token')) -- the holder's running lease
else
  token = redis.call('HINCRBY', KEYS[1], 'token', 1)
end
local created = o[3]
local new = 0
if not created then
  created = string.format('%d', now)
  new = 1
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'until', string.format('%d', now + tonumber(ARGV[2])), 'name', ARGV[3], 'created', created)
local out = {1, token, created, new}
for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(k, 1, 2) == 't:' then out[#out + 1] = string.sub(k, 3) end
end
return out
`

// fenceCheck ends a script with 0 unless ARGV[1] holder and ARGV[2] token
// are the owner hash's (KEYS[1]).
const fenceCheck = `
local o = redis.call('HMGET', KEYS[1], 'holder', 'token')
if o[1] ~= ARGV[1] or o[2] ~= ARGV[2] then return 0 end
`

// renewScript: ARGV[3] ttl ms.
const renewScript = fenceCheck + redisNow + `
redis.call('HSET', KEYS[1], 'until', string.format('%d', now + tonumber(ARGV[3])))
return 1
`

const releaseScript = fenceCheck + `
redis.call('HSET', KEYS[1], 'until', '0')
return 1
`

// saveScript: KEYS[2] checkpoint hash; ARGV[3...] topic, position pairs.
const saveScript = fenceCheck + `
local marks = {}
for i = 3, #ARGV, 2 do
  marks[#marks + 1] = 't:' .. ARGV[i]
  marks[#marks + 1] = '1'
end
for i = 3, #ARGV, 200 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
for i = 1, #marks, 200 do
  redis.call('HSET', KEYS[1], unpack(marks, i, math.min(i + 199, #marks)))
end
return 1
`

// ownerScript is one of the scripts above, with the allow-oom flag while
// the server takes it.
type ownerScript struct {
	flagged, plain *redis.Script
	noFlags        *atomic.Bool // the server rejected the flag (Redis < 7)
}

func newOwnerScript(src string, noFlags *atomic.Bool) ownerScript {
	return ownerScript{flagged: redis.NewScript(allowOOM + src), plain: redis.NewScript(src), noFlags: noFlags}
}

func (s ownerScript) run(ctx context.Context, rdb redis.UniversalClient, keys []string, args ...any) (any, error) {
	if !s.noFlags.Load() {
		v, err := s.flagged.Run(ctx, rdb, keys, args...).Result()
		if err == nil || !strings.Contains(err.Error(), "compiling script") {
			return v, err
		}
		s.noFlags.Store(true)
	}
	return s.plain.Run(ctx, rdb, keys, args...).Result()
}

// owners are the owner scripts, shared by the transports of a process
// (which is, in practice, of one Redis version).
var owners = func() *ownerScripts {
	o := new(ownerScripts)
	o.claim = newOwnerScript(claimScript, &o.noFlags)
	o.renew = newOwnerScript(renewScript, &o.noFlags)
	o.release = newOwnerScript(releaseScript, &o.noFlags)
	o.save = newOwnerScript(saveScript, &o.noFlags)
	return o
}()

type ownerScripts struct {
	noFlags                     atomic.Bool
	claim, renew, release, save ownerScript
}

// ownerKeys returns the owner hash and the checkpoint hash of consumer,
// which share a slot: the owner hash's hash tag is the checkpoint hash's
// name (or its own tag, when the name has one).
func (t *Transport) ownerKeys(consumer string) []string {
	cp := t.consumerBase + consumer
	if i := strings.IndexByte(cp, '{'); i >= 0 {
		if j := strings.IndexByte(cp[i+1:], '}'); j > 0 {
			return []string{cp + ":owner", cp} // same tag as cp
		}
	}
	if strings.ContainsAny(cp, "{}") {
		// No valid tag but braces: no name of the same slot can be built.
		// Atomic on a single server; on Cluster the scripts fail with
		// CROSSSLOT and say so.
		return []string{cp + ":owner", cp}
	}
	return []string{t.cfg.namespace + ":owner:{" + cp + "}", cp}
}

// ClaimConsumer implements transport.Owner.
func (t *Transport) ClaimConsumer(ctx context.Context, consumer, holder string, ttl time.Duration) (transport.Claim, error) {
	if t.isClosed() {
		return transport.Claim{}, errClosed("claim consumer")
	}
	if consumer == "" || holder == "" || ttl < time.Millisecond {
		return transport.Claim{}, fmt.Errorf("redistransport: claim consumer %q: want a name, a holder and a ttl of at least 1 ms", consumer)
	}
	v, err := owners.claim.run(ctx, t.rdb, t.ownerKeys(consumer), holder, ttl.Milliseconds(), consumer)
	if err != nil {
		return transport.Claim{}, wrapErr("claim consumer", consumer, err)
	}
	r, ok := v.([]any)
	if !ok || len(r) < 3 {
		return transport.Claim{}, fmt.Errorf("redistransport: claim consumer %q: unexpected reply %v", consumer, v)
	}
	if n, _ := r[0].(int64); n == 0 {
		h, _ := r[1].(string)
		left, _ := r[2].(int64)
		return transport.Claim{}, &transport.HeldError{Consumer: consumer, Holder: h, Remaining: time.Duration(left) * time.Millisecond}
	}
	if len(r) < 4 {
		return transport.Claim{}, fmt.Errorf("redistransport: claim consumer %q: unexpected reply %v", consumer, v)
	}
	token, _ := r[1].(int64)
	created, _ := r[2].(string)
	ms, _ := strconv.ParseInt(created, 10, 64)
	isNew, _ := r[3].(int64)
	c := transport.Claim{Consumer: consumer, Holder: holder, Token: uint64(token), Created: time.UnixMilli(ms), New: isNew == 1}
	for _, k := range r[4:] {
		if s, ok := k.(string); ok {
			c.Known = append(c.Known, s)
		}
	}
	sort.Strings(c.Known)
	return c, nil
}

// RenewConsumer implements transport.Owner.
func (t *Transport) RenewConsumer(ctx context.Context, c transport.Claim, ttl time.Duration) error {
	return t.fenced(ctx, "renew consumer", c, &owners.renew, ttl.Milliseconds())
}

// ReleaseConsumer implements transport.Owner.
func (t *Transport) ReleaseConsumer(ctx context.Context, c transport.Claim) error {
	err := t.fenced(ctx, "release consumer", c, &owners.release)
	if errors.Is(err, transport.ErrFenced) {
		return nil
	}
	return err
}

// SaveClaimed implements transport.Owner: the checkpoint hash and the
// record are written by one script, only while c is current.
func (t *Transport) SaveClaimed(ctx context.Context, c transport.Claim, cps map[string]transport.Position) error {
	if len(cps) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(cps))
	for topic, p := range cps {
		if err := transport.ValidateTopic(topic); err != nil {
			return fmt.Errorf("redistransport: save checkpoints of %q: %w", c.Consumer, err)
		}
		args = append(args, topic, p.String())
	}
	return t.fenced(ctx, "save checkpoints of", c, &owners.save, args...)
}

func (t *Transport) fenced(ctx context.Context, op string, c transport.Claim, s *ownerScript, args ...any) error {
	if t.isClosed() {
		return errClosed(op)
	}
	v, err := s.run(ctx, t.rdb, t.ownerKeys(c.Consumer), append([]any{c.Holder, strconv.FormatUint(c.Token, 10)}, args...)...)
	if err != nil {
		return wrapErr(op, c.Consumer, err)
	}
	if n, _ := v.(int64); n != 1 {
		return fmt.Errorf("redistransport: %s %q (token %d): %w", op, c.Consumer, c.Token, transport.ErrFenced)
	}
	return nil
}
