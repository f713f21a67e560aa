package redistransport

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// xaddLua defines mklog and xadd, which the scripts use to append to the
// log KEYS[1]. A log that does not exist yet is created with its lineage
// record, the consumer groups durabus:lineage and durabus:epoch:<epoch>
// (see LogEpochs), so that a follower can tell a new log from the log it
// read going on. Making the record is best effort (redis.pcall: an ACL
// without XGROUP leaves a log without one, which followers treat as
// unknown).
//
// mklog(epoch, goesOn, fields...) makes the log with its record and
// appends the entry; a script calls it when its XADD NOMKSTREAM found no
// log. goesOn says that the epoch was there before (the log was lost, its
// meta hash kept): the seqs go on, and so must the stream ids, which a
// follower's cursor in the lost log reads after. A new stream's auto ids
// restart from Redis's clock, and the lost log's last entry may hold this
// very millisecond; so the first entry takes the next millisecond's first
// id (later auto ids follow it). A lost log whose ids ran ahead of the
// clock (a clock stepped back) is not covered.
// xadd(epoch, goesOn, maxlen, fields...) is that pair in one call (maxlen
// is a number, 0 for none). The scripts' hot paths (singleScript, and every
// XADD of publishScript after its first) call XADD inline instead: a Lua
// call with varargs costs Redis about a tenth of a one-event publish.
//
// An epoch made over a log that exists adds its group to the record
// (publishScript). The record is bounded: past 1024 epochs, a new one drops
// it (durabus:lineage) instead, and followers treat the log as unknown.
const xaddLua = `
local function mklog(epoch, goesOn, ...)
  redis.pcall('XGROUP', 'CREATE', KEYS[1], 'durabus:lineage', '$', 'MKSTREAM')
  redis.pcall('XGROUP', 'CREATE', KEYS[1], 'durabus:epoch:' .. epoch, '$')
  local id = '*'
  if goesOn then
    local t = redis.call('TIME')
    id = string.format('%d-0', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 1)
  end
  return redis.call('XADD', KEYS[1], id, ...)
end
local function xadd(epoch, goesOn, maxlen, ...)
  local sid
  if maxlen > 0 then
    sid = redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', maxlen, '*', ...)
  else
    sid = redis.call('XADD', KEYS[1], 'NOMKSTREAM', '*', ...)
  end
  if sid then return sid end
  return mklog(epoch, goesOn, ...)
end
`

// publishScript appends events to one topic's log and publishes them live,
// atomically. With the idempotency window on it returns {newEpoch, epoch_1,
// seq_1, id_1, epoch_2, ...}: newEpoch is 1 when the script created the
// epoch, then one triple per event (for a duplicate within the window, the
// first publish's). Without it every event is new and the seqs follow each
// other: {newEpoch, epoch, seq_1, id_1, id_2, ...}.
//
// KEYS[1] log, KEYS[2] meta, KEYS[3...] the idempotency keys of the
// events with an id when the window is on and the client is a cluster
// client (declared for Redis Cluster;
// the script names them from ARGV[7]).
// ARGV[1] channel, ARGV[2] PUBLISH or SPUBLISH, ARGV[3] MAXLEN (0: none),
// ARGV[4] max age in ms (0: none), ARGV[5] epoch salt, ARGV[6] idempotency
// window in ms (0: off), ARGV[7] idempotency key prefix, ARGV[8] frame size,
// ARGV[9...] the events: (id, envelope) pairs when the window is on,
// envelopes otherwise.
//
// Writes happen in this order: XADDs, trim, the lineage record, HSET
// meta, idempotency keys, PUBLISH; an error in the first XADD (wrong key type, OOM) leaves nothing
// behind.
const publishScript = xaddLua + `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local epoch = meta[1]
local seq = tonumber(meta[2]) or 0
local created = 0
local existed = false
if not epoch then
  local t = redis.call('TIME')
  epoch = string.format('%x', tonumber(t[1])) .. ARGV[5]
  created = 1
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 16)
  for _, entry in ipairs(last) do
    local f = entry[2]
    local s
    for i = 1, #f, 2 do
      if f[i] == 'seq' then s = tonumber(f[i + 1]) end
    end
    if s then
      if s > seq then seq = s end
      break
    end
  end
  existed = redis.call('EXISTS', KEYS[1]) == 1
end
local maxlen = tonumber(ARGV[3])
local idem = tonumber(ARGV[6])
local frameMax = tonumber(ARGV[8])
local stride = 1
if idem > 0 then stride = 2 end
local out = {created}
if stride == 1 then out = {created, epoch, seq + 1} end
local frames = {}
local parts, size, first, count = {''}, 0, 0, 0
local wrote = false
local keep = {}
local seen = {} -- ids written by this call: a repeat within it is a duplicate too
for i = 9, #ARGV, stride do
  local id, env
  if stride == 2 then id = ARGV[i]; env = ARGV[i + 1] else env = ARGV[i] end
  local prev = false
  if stride == 2 and id ~= '' then
    prev = seen[id] or redis.call('GET', ARGV[7] .. id)
  end
  if prev then
    local e, s, x = string.match(prev, '^(%S+) (%d+) (%S+)$')
    out[#out + 1] = e; out[#out + 1] = tonumber(s); out[#out + 1] = x
  else
    seq = seq + 1
    local sid
    local last = maxlen > 0 and i + stride > #ARGV
    if not wrote then
      sid = xadd(epoch, created == 0, last and maxlen or 0, 'seq', seq, 'e', env)
    elseif last then
      sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'seq', seq, 'e', env)
    else
      sid = redis.call('XADD', KEYS[1], '*', 'seq', seq, 'e', env)
    end
    wrote = true
    if stride == 1 then
      out[#out + 1] = sid
    else
      out[#out + 1] = epoch; out[#out + 1] = seq; out[#out + 1] = sid
    end
    if stride == 2 and id ~= '' then
      local v = epoch .. ' ' .. seq .. ' ' .. sid
      keep[#keep + 1] = id; keep[#keep + 1] = v
      seen[id] = v
    end
    local rec = sid .. ' ' .. #env .. '\n'
    if count > 0 and size + #rec + #env > frameMax then
      parts[1] = 'v1 ' .. epoch .. ' ' .. first .. ' ' .. count .. '\n'
      frames[#frames + 1] = table.concat(parts)
      parts, size, count = {''}, 0, 0
    end
    if count == 0 then first = seq end
    count = count + 1
    parts[#parts + 1] = rec
    parts[#parts + 1] = env
    size = size + #rec + #env
  end
end
if not wrote then return out end
if count > 0 then
  parts[1] = 'v1 ' .. epoch .. ' ' .. first .. ' ' .. count .. '\n'
  frames[#frames + 1] = table.concat(parts)
end
local age = tonumber(ARGV[4])
if age > 0 then
  local t = redis.call('TIME')
  local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - age
  if minid > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', minid))
  end
end
if existed then
  -- A new epoch over a log that goes on: add it to the log's lineage
  -- record (a log made by this call has it already), or drop the record
  -- when it is full.
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
  if type(groups) == 'table' and not groups.err then
    if #groups <= 1024 then
      redis.pcall('XGROUP', 'CREATE', KEYS[1], 'durabus:epoch:' .. epoch, '$')
    else
      redis.pcall('XGROUP', 'DESTROY', KEYS[1], 'durabus:lineage')
    end
  end
end
if created == 1 then
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', seq)
else
  redis.call('HSET', KEYS[2], 'seq', seq)
end
for i = 1, #keep, 2 do
  redis.call('SET', ARGV[7] .. keep[i], keep[i + 1], 'PX', idem)
end
for i = 1, #frames do
  redis.call(ARGV[2], ARGV[1], frames[i])
end
return out
`

// singleScript is publishScript cut down to the common case of one event
// on an existing topic, without idempotency window or age limit: it does
// the same writes (XADD with MAXLEN ~, HSET seq, one frame of one event)
// with a third of the arguments and none of the batch bookkeeping, which
// costs Redis about a third less per call. It returns 0 and writes nothing
// when the topic has no epoch: the caller then runs publishScript, which
// creates it (and restores seq from a surviving log).
//
// KEYS[1] log, KEYS[2] meta. ARGV[1] channel, ARGV[2] PUBLISH or SPUBLISH,
// ARGV[3] MAXLEN (0: none), ARGV[4] the envelope. Returns {epoch, seq, id}.
const singleScript = xaddLua + `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local epoch = meta[1]
if not epoch then return 0 end
local seq = (tonumber(meta[2]) or 0) + 1
local env = ARGV[4]
local sid
if ARGV[3] ~= '0' then
  sid = redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'e', env)
else
  sid = redis.call('XADD', KEYS[1], 'NOMKSTREAM', '*', 'seq', seq, 'e', env)
end
if not sid then sid = mklog(epoch, true, 'seq', seq, 'e', env) end
redis.call('HSET', KEYS[2], 'seq', seq)
redis.call(ARGV[2], ARGV[1], 'v1 ' .. epoch .. ' ' .. seq .. ' 1\n' .. sid .. ' ' .. #env .. '\n' .. env)
return {epoch, seq, sid}
`

// rollbackScript writes a rollback marker into a topic's log: an entry
// without "e" (so that versions that do not know markers skip it as junk),
// with "seq" the topic's current seq and "rb" = "<epoch> <from> <to>". It
// writes nothing and returns 0 when the topic's epoch is no longer the one
// of the rollback (followers see the epoch change instead).
//
// The caller knows From from the reply that revealed the rollback; a reply
// of an earlier reused seq may still be on its way (pipelines in flight
// finish in any order), so the script lowers From to the seq of the first
// event logged after the last stream id acknowledged before the rollback:
// every event after that id with a seq at or below To reused a seq.
//
// The marker is also sent live, as a frame "rb1 <epoch> <seq> <marker id>
// <from> <to>", so that a follower that is already live (it caught up with
// what Redis kept before the publisher wrote again) learns of it too.
// Versions that do not know it skip it as a malformed frame.
//
// KEYS[1] log, KEYS[2] meta. ARGV[1] epoch, ARGV[2] From, ARGV[3] To,
// ARGV[4] the highest stream id acknowledged before the rollback, ARGV[5]
// MAXLEN (0: none), ARGV[6] channel, ARGV[7] PUBLISH or SPUBLISH. Returns
// {marker stream id, From}.
const rollbackScript = xaddLua + `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if meta[1] ~= ARGV[1] then return 0 end
local from = tonumber(ARGV[2])
local later = redis.call('XRANGE', KEYS[1], '(' .. ARGV[4], '+', 'COUNT', 16)
for _, entry in ipairs(later) do
  local f = entry[2]
  local s, e
  for i = 1, #f, 2 do
    if f[i] == 'seq' then s = tonumber(f[i + 1]) elseif f[i] == 'e' then e = true end
  end
  if s and e then
    if s < from then from = s end
    break
  end
end
local rb = ARGV[1] .. ' ' .. string.format('%d', from) .. ' ' .. ARGV[3]
local id = xadd(ARGV[1], true, tonumber(ARGV[5]), 'seq', meta[2] or '0', 'rb', rb)
redis.call(ARGV[7], ARGV[6], 'rb1 ' .. ARGV[1] .. ' ' .. (meta[2] or '0') .. ' ' .. id .. ' ' .. string.format('%d', from) .. ' ' .. ARGV[3])
return {id, from}
`

var (
	publishSHA  = scriptSHA(publishScript)
	singleSHA   = scriptSHA(singleScript)
	rollbackSHA = scriptSHA(rollbackScript)
)

func scriptSHA(s string) string {
	h := sha1.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// frameSize bounds the records (stream id, length, envelope) of one live
// frame: the script starts a new frame rather than pass it, unless the
// frame would hold no event. Frames that fit Lua's 8 KiB string buffer
// (LUAL_BUFFERSIZE) are cheap to join; beyond it table.concat builds a
// stack of partial strings, and a batch of 100 events of 456 bytes in one
// 45 KiB frame cost Redis 4.1 µs per event against 3.3 µs in frames of
// ≤ 8000 bytes (INFO commandstats, 2 000 calls of each).
const frameSize = 8000

// Limits of one script call; a larger group of one topic is split into
// several calls (in order, in the same pipeline).
const (
	maxCallEvents = 1000
	maxCallBytes  = 8 << 20
)

// indexInterval is how often (at most) a transport refreshes a topic's score
// in ns:topics. A topic whose epoch the script just created is indexed at
// once, whatever the interval.
const indexInterval = time.Second

// Sending a script call at most once.
//
// go-redis sends a command again when its reply was lost (read timeout,
// broken connection: MaxRetries, 3 by default). For a publish script that
// is a second run, which writes the events again under new seqs; and the
// error it finally returns (say, a refused dial on the last attempt) no
// longer tells whether an earlier attempt ran. So the script calls are
// marked NoRetry (go-redis's per-command opt-out, which leaves the caller's
// client and its other commands alone), and the transport retries by itself
// only the failures that prove the script did not run (see retryable), with
// the client's own MaxRetries and backoff. A lost reply is returned as
// ErrUnknownOutcome. This costs nothing per call; a script-side nonce (the
// other way to absorb go-redis's retries) costs a key write per call and
// still leaves the final error ambiguous.

// onceCmd is a script call that go-redis must not send a second time.
type onceCmd struct{ *redis.Cmd }

// NoRetry implements redis.Cmder: go-redis does not retry the command, in a
// pipeline neither the pipeline.
func (onceCmd) NoRetry() bool { return true }

var _ redis.Cmder = onceCmd{}

// processor runs a command: a client, or a pipeline that queues it.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// evalOnce runs (on a pipeline: queues) EVALSHA of the script whose SHA1 is
// sha, or EVAL of script when eval is set, as a onceCmd.
func evalOnce(ctx context.Context, p processor, eval bool, sha, script string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	if eval {
		a = append(a, "eval", script, len(keys))
	} else {
		a = append(a, "evalsha", sha, len(keys))
	}
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	cmd.SetFirstKeyPos(3)
	_ = p.Process(ctx, onceCmd{cmd})
	return cmd
}

// refusedCodes are the Redis error replies that mean a publish script wrote
// nothing: Redis refused the call before running it (NOSCRIPT, LOADING,
// BUSY, MASTERDOWN, the cluster's redirections and CLUSTERDOWN/TRYAGAIN,
// authentication), or the script failed at its first write, which Redis
// checks before anything else is written (OOM, READONLY, MISCONF,
// NOREPLICAS: the scripts read before they write, and these states do not
// change during a script). Any other error reply, NOPERM included (a
// missing right on PUBLISH fails after the XADD), may come after a write.
var refusedCodes = map[string]bool{
	"NOSCRIPT": true, "LOADING": true, "BUSY": true, "MASTERDOWN": true,
	"MOVED": true, "ASK": true, "CROSSSLOT": true, "CLUSTERDOWN": true, "TRYAGAIN": true,
	"NOAUTH": true, "WRONGPASS": true,
	"OOM": true, "READONLY": true, "MISCONF": true, "NOREPLICAS": true,
}

// deniedBeforeWrite are the commands that the publish scripts call before
// their first write (the first XADD): a refusal of one by the ACL inside
// the script leaves nothing behind.
var deniedBeforeWrite = map[string]bool{"HMGET": true, "TIME": true, "XREVRANGE": true, "XRANGE": true, "EXISTS": true, "GET": true, "XADD": true}

// refused reports whether err proves that a publish script did not run:
// nothing was sent (no connection from the pool, a refused dial, a closed
// client), or Redis refused the call before any write (refusedCodes).
// Every other error (a read or write timeout, a broken connection, a
// context error from go-redis, an unknown reply) may come after the script
// ran.
func refused(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		code, _, _ := strings.Cut(msg, " ")
		if cmd, ok := scriptDenied(rerr); ok {
			return deniedBeforeWrite[cmd]
		}
		return refusedCodes[code] || strings.HasPrefix(msg, "ERR max number of clients")
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) || errors.Is(err, redis.ErrClosed)
}

// retryable reports whether a failed script call is worth sending again: it
// did not run (refused) and the cause may pass (the go-redis retry cases
// that are safe for a write).
func retryable(err error) bool {
	if err == nil || !refused(err) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return !errors.Is(err, redis.ErrClosed) // no connection yet
	}
	msg := rerr.Error()
	code, _, _ := strings.Cut(msg, " ")
	switch code {
	case "LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS":
		return true
	}
	return strings.HasPrefix(msg, "ERR max number of clients")
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// retryPolicy is how often, and after what pause, the transport sends a
// refused script call again: the client's MaxRetries and retry backoff, so
// that a publish is as patient as any other command of the client.
type retryPolicy struct {
	max      int
	min, cap time.Duration
}

func policyOf(rdb redis.UniversalClient) retryPolicy {
	switch c := rdb.(type) {
	case *redis.Client:
		o := c.Options()
		return retryPolicy{o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff}
	case *redis.ClusterClient:
		o := c.Options()
		return retryPolicy{max(o.MaxRedirects, 0), o.MinRetryBackoff, o.MaxRetryBackoff}
	case *redis.Ring:
		o := c.Options()
		return retryPolicy{max(o.MaxRetries, 0), o.MinRetryBackoff, o.MaxRetryBackoff}
	}
	return retryPolicy{3, 10 * time.Millisecond, time.Second} // go-redis's defaults
}

// refusalPatience is how long a publish goes on sending again a call that
// Redis refused for a passing state, past the client's retry count. A slot
// migration answers TRYAGAIN to a multi-key script (the publish scripts
// declare the log, its meta hash and, on a cluster, the idempotency keys)
// for as long as those keys are split between the two nodes, which lasts
// as long as moving the slot's keys: under load, longer than go-redis's
// three redirections with their backoff. A failover answers CLUSTERDOWN,
// READONLY or MASTERDOWN until it completes. The caller's ctx bounds the
// wait as well; a client with retries turned off (MaxRetries or
// MaxRedirects -1) gets none.
const refusalPatience = 10 * time.Second

// again reports whether a call first refused at since may be sent for the
// (n+1)th time: within the client's retry count, or, when the client
// retries at all and Redis itself answered (replied: a server that is down
// gets the retry count alone), within refusalPatience.
func (p retryPolicy) again(n int, since time.Time, replied bool) bool {
	return n < p.max || p.max > 0 && replied && time.Since(since) < refusalPatience
}

// isReply reports whether err is an error reply from Redis.
func isReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// backoff returns the pause before retry n (from 0): exponential with
// jitter, as go-redis does.
func (p retryPolicy) backoff(n int) time.Duration {
	if p.min <= 0 {
		return 0
	}
	d := p.min << min(n, 20)
	d = p.min + rand.N(d)
	return min(d, p.cap)
}

// policy returns t's retry policy, read from the client once.
func (t *Transport) policy() retryPolicy {
	t.w.policyOnce.Do(func() { t.w.retry = policyOf(t.rdb) })
	return t.w.retry
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// publishErr turns the error of a script call into the caller's: one that
// wraps ErrUnknownOutcome unless err proves the script did not run.
func publishErr(topic string, err error) error {
	if refused(err) {
		return wrapErr("publish to", topic, err)
	}
	return unknownErr(topic, err)
}

// unknownErr is the error of a call whose script may have run.
func unknownErr(topic string, err error) error {
	return fmt.Errorf("%w (the event may be in the log): %w", ErrUnknownOutcome, wrapErr("publish to", topic, err))
}

// notSentErr is the error of a call that ended before it was sent.
func notSentErr(topic string, err error) error {
	return fmt.Errorf("redistransport: publish to %q: not sent: %w", topic, err)
}

// call is one script invocation: events of one topic, by index in the
// caller's slice.
type call struct {
	topic string
	idx   []int
	cmd   *redis.Cmd
	eval  bool   // send EVAL (the script was not loaded)
	sent  ackRef // the topic's highest acknowledgement before sending
}

// check validates msg before anything is sent.
func (t *Transport) check(msg *transport.Message) error {
	if err := transport.ValidateTopic(msg.Topic); err != nil {
		return fmt.Errorf("redistransport: publish: %w", err)
	}
	if len(msg.Data) > t.cfg.maxSize {
		return fmt.Errorf("redistransport: publish to %q: %d bytes, the limit is %d (WithMaxSize): %w",
			msg.Topic, len(msg.Data), t.cfg.maxSize, transport.ErrTooLarge)
	}
	return nil
}

// appendPublish appends to p the script call c (events msgs[c.idx...], all
// of topic c.topic, in order). This is the unit a coalescing publisher
// batches: any number of calls (for any topics) can share one pipeline;
// calls of one topic keep their order.
func (t *Transport) appendPublish(ctx context.Context, p processor, msgs []transport.Message, c *call) {
	c.cmd = evalOnce(ctx, p, c.eval, publishSHA, publishScript, t.publishKeys(c.topic, msgs, c.idx), t.scriptArgs(c.topic, msgs, c.idx))
}

// publishKeys returns publishScript's KEYS for events msgs[idx...]: the
// log and meta, then, with the idempotency window on, the idempotency key
// of each event with an id. The script builds those names itself (ARGV[7]
// .. id); they are declared too so that Redis Cluster checks them before
// the script runs. While the topic's slot migrates, a script that reads an
// undeclared key not yet on the source fails half-way with "Script
// attempted to access a non local key" (its outcome unknown to the
// caller); declared, the call is refused whole with TRYAGAIN or ASK,
// which the client retries or follows. Only a cluster checks them, so
// elsewhere they are not sent (a key string less per event).
func (t *Transport) publishKeys(topic string, msgs []transport.Message, idx []int) []string {
	st := t.state(topic)
	if t.cfg.idemWindow == 0 || t.cluster == nil {
		return st.keys // shared: not to be changed
	}
	keys := make([]string, 0, len(st.keys)+len(idx))
	keys = append(keys, st.keys...)
	for _, i := range idx {
		if id := msgs[i].ID; id != "" {
			keys = append(keys, st.idemKey+id)
		}
	}
	return keys
}

func (t *Transport) scriptArgs(topic string, msgs []transport.Message, idx []int) []any {
	idem := t.cfg.idemWindow > 0
	n := len(idx)
	if idem {
		n *= 2
	}
	args := make([]any, 0, 8+n)
	st := t.state(topic)
	args = append(args, st.channel, t.pubCmd(), t.maxLenArg, t.cfg.maxAge.Milliseconds(), salt(),
		t.cfg.idemWindow.Milliseconds(), st.idemKey, frameSize)
	for _, i := range idx {
		if idem {
			args = append(args, msgs[i].ID)
		}
		args = append(args, msgs[i].Data)
	}
	return args
}

// salt returns 8 random hex digits for a new epoch. math/rand/v2's
// generator is seeded from the OS and, unlike crypto/rand, costs no system
// call on every publish.
func salt() string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

// topicState is what a transport keeps per topic it publishes to: when it
// last indexed it, its Redis names, built once rather than per publish, and
// the highest position it saw acknowledged.
type topicState struct {
	indexed atomic.Int64 // last ZADD to ns:topics, Unix ms; 0: due
	keys    []string     // the scripts' KEYS: log, meta
	channel any          // the channel name, boxed for go-redis's arguments
	idemKey string       // prefix of the idempotency keys
	acks    acks         // rollback detection
}

// maxTopicStates bounds the per-topic states kept; beyond it they are all
// dropped and rebuilt as topics are published to again (an extra ZADD per
// topic, and rollbacks of the dropped topics' past acknowledgements go
// unseen), so a publisher to ever new topics keeps bounded memory.
const maxTopicStates = 100_000

// state returns topic's state, making it on first use.
func (t *Transport) state(topic string) *topicState {
	if v, ok := t.topics.Load(topic); ok {
		return v.(*topicState)
	}
	ch := t.channel(topic)
	st := &topicState{keys: []string{ch + ":log", ch + ":meta"}, channel: ch, idemKey: ch + ":idem:"}
	if t.nTopics.Add(1) > maxTopicStates {
		t.topics.Clear()
		t.nTopics.Store(1)
	}
	v, _ := t.topics.LoadOrStore(topic, st)
	return v.(*topicState)
}

// needsIndex reports whether topic's entry in ns:topics is due for a
// refresh, and marks it refreshed.
func (t *Transport) needsIndex(topic string, now int64) bool {
	last := &t.state(topic).indexed
	old := last.Load()
	return now-old >= indexInterval.Milliseconds() && last.CompareAndSwap(old, now)
}

// indexDue reports whether topic's entry in ns:topics is due for a refresh.
func (t *Transport) indexDue(topic string, now int64) bool {
	return now-t.state(topic).indexed.Load() >= indexInterval.Milliseconds()
}

// forgetIndex makes topic's entry in ns:topics due at once.
func (t *Transport) forgetIndex(topic string) { t.state(topic).indexed.Store(0) }

// Publish appends msg to its topic's backlog and publishes it live, in one
// script call, and returns its position once Redis has executed it.
//
// Outcomes, and what to do on each:
//
//   - nil error: the event is in the log at the returned position.
//   - an error wrapping ErrUnknownOutcome: the event may be in the log, or
//     not. This is the error when the reply was lost after the call was sent
//     (read timeout, broken connection) and when ctx ended after the event
//     was handed to Redis; errors.Is also finds the cause (ctx.Err(), the
//     network error). With WithIdempotency, publish the same Message (same
//     ID) again: if the first one was written, that returns its position
//     and writes nothing; without the window, publishing it again may log
//     it twice, under two seqs (subscribers that dedupe by ID see it once).
//   - any other error: the event was not written (invalid topic,
//     transport.ErrTooLarge, ctx ended before sending, no connection, a
//     call Redis refused before running it). Publishing again is safe.
//
// The transport never sends a publish script twice by itself: go-redis's
// retry of a command whose reply was lost is turned off for the script
// call (only for it; the client is not changed), and only failures that
// prove the script did not run (a refused dial, LOADING, READONLY, ...) are
// retried, as often as the client's MaxRetries allows.
//
// Publish returns when ctx ends, at once, whatever the client's timeouts.
// Concurrent calls are coalesced: the events that arrive while pipelines
// are in flight leave together in the next one, one script call per topic.
// A lone call is sent at once. Data is copied when the call may return
// before it is sent, so the caller may reuse it once Publish returns.
func (t *Transport) Publish(ctx context.Context, msg transport.Message) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("publish")
	}
	if err := t.check(&msg); err != nil {
		return transport.Position{}, err
	}
	pos, err := t.publishOne(ctx, msg)
	return pos, t.unreachable(err)
}

// publishSingle publishes one valid message with ctx. The common case (the
// topic exists, its index entry is fresh, no idempotency window and no age
// limit) runs singleScript; everything else the full script.
func (t *Transport) publishSingle(ctx context.Context, msg transport.Message) (transport.Position, error) {
	if t.cfg.idemWindow == 0 && t.cfg.maxAge == 0 && !t.indexDue(msg.Topic, time.Now().UnixMilli()) {
		pos, ok, err := t.publishLean(ctx, msg)
		if ok || err != nil {
			return pos, err
		}
		t.forgetIndex(msg.Topic) // the topic is new (or its meta hash was lost): index it now
	}
	msgs := []transport.Message{msg}
	var pos [1]transport.Position
	var errs [1]error
	t.publish(ctx, msgs, [][]int{{0}}, pos[:], errs[:])
	return pos[0], errs[0]
}

// publishLean runs singleScript. ok is false, with no error and nothing
// written, when the topic has no epoch yet: the full script must run.
func (t *Transport) publishLean(ctx context.Context, msg transport.Message) (transport.Position, bool, error) {
	st := t.state(msg.Topic)
	args := []any{st.channel, t.pubCmd(), t.maxLenArg, msg.Data}
	sent := st.acks.snapshot()
	eval := false
	var res any
	var refusedAt time.Time
	for retries := 0; ; {
		var err error
		res, err = evalOnce(ctx, t.rdb, eval, singleSHA, singleScript, st.keys, args).Result()
		if err == nil {
			break
		}
		if isNoScript(err) && !eval {
			eval = true
			continue
		}
		t.refreshSlots(err)
		if refusedAt.IsZero() {
			refusedAt = time.Now()
		}
		if p := t.policy(); retryable(err) && p.again(retries, refusedAt, isReply(err)) && sleep(ctx, p.backoff(retries)) {
			retries++
			continue
		}
		return transport.Position{}, false, publishErr(msg.Topic, err)
	}
	if n, isInt := res.(int64); isInt && n == 0 {
		return transport.Position{}, false, nil
	}
	r, _ := res.([]any)
	if len(r) == 3 {
		epoch, _ := r[0].(string)
		seq, _ := r[1].(int64)
		id, _ := r[2].(string)
		if epoch != "" && seq > 0 && id != "" {
			pos := transport.Position{Epoch: epoch, Seq: uint64(seq), ID: id}
			if m := st.acks.ack(pos, sent); m != nil {
				t.writeRollback(ctx, msg.Topic, m)
			}
			return pos, true, nil
		}
	}
	return transport.Position{}, false, unknownErr(msg.Topic, fmt.Errorf("bad script reply %v", res))
}

func (t *Transport) pubCmd() string {
	if t.cfg.sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// PublishBatch publishes msgs: one script call per topic (split beyond 1000
// events or 8 MiB), all in one pipeline round trip, in order per topic.
//
// Outcomes: with a nil error every event is in the log at its position.
// Otherwise the error is a *transport.BatchError listing the events that
// are not known to be written (their positions are zero); the others are
// written, at their positions. Invalid messages (bad topic, too large) are
// listed and never sent. When the error wraps ErrUnknownOutcome (errors.Is
// on the BatchError), some listed events may be in the log (a lost reply,
// ctx ended after sending): publishing them again is safe with
// WithIdempotency and may log them twice without it. When it does not,
// none of the listed events was written.
//
// PublishBatch returns when ctx ends, at once, whatever the client's
// timeouts; the events not yet acknowledged are then listed, with an error
// wrapping ErrUnknownOutcome and ctx.Err(). Data is copied when the call
// may return before it is sent.
func (t *Transport) PublishBatch(ctx context.Context, msgs []transport.Message) ([]transport.Position, error) {
	if t.isClosed() {
		return nil, errClosed("publish batch")
	}
	positions := make([]transport.Position, len(msgs))
	var bad []int
	var firstErr error
	var skip map[int]bool
	for i := range msgs {
		if err := t.check(&msgs[i]); err != nil {
			bad = append(bad, i)
			if skip == nil {
				skip = make(map[int]bool)
			}
			skip[i] = true
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	order := t.group(msgs, skip)
	var failed []int
	if len(order) > 0 {
		f, err := t.publishBatch(ctx, msgs, order, positions)
		failed, err = f, t.unreachable(err)
		switch {
		case firstErr == nil:
			firstErr = err
		case errors.Is(err, ErrUnknownOutcome):
			firstErr = errors.Join(err, firstErr) // the outcome to act on first
		}
	}
	if len(bad)+len(failed) == 0 {
		return positions, nil
	}
	all := append(bad, failed...)
	slices.Sort(all)
	return positions, &transport.BatchError{Failed: all, Err: firstErr}
}

// publishBatch is publish for PublishBatch: it returns when ctx ends, with
// every event of groups listed as failed, of unknown outcome.
func (t *Transport) publishBatch(ctx context.Context, msgs []transport.Message, groups [][]int, positions []transport.Position) ([]int, error) {
	if err := ctx.Err(); err != nil {
		return slices.Concat(groups...), notSentErr(msgs[groups[0][0]].Topic, err)
	}
	if ctx.Done() == nil {
		return t.publish(ctx, msgs, groups, positions, nil)
	}
	// ctx can end: send from a goroutine that owns copies of the events.
	own := make([]transport.Message, len(msgs))
	size := 0
	for _, g := range groups {
		for _, i := range g {
			size += len(msgs[i].Data)
		}
	}
	buf := make([]byte, 0, size)
	for _, g := range groups {
		for _, i := range g {
			own[i] = msgs[i]
			buf = append(buf, msgs[i].Data...)
			own[i].Data = buf[len(buf)-len(msgs[i].Data):]
		}
	}
	type result struct {
		failed []int
		err    error
	}
	pos := make([]transport.Position, len(msgs))
	done := make(chan result, 1)
	if !t.w.start() {
		return slices.Concat(groups...), notSentErr(msgs[groups[0][0]].Topic, transport.ErrClosed)
	}
	go func() {
		defer t.w.wg.Done()
		f, err := t.publish(ctx, own, groups, pos, nil)
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		copy(positions, pos)
		return r.failed, r.err
	case <-ctx.Done():
		select {
		case r := <-done:
			copy(positions, pos)
			return r.failed, r.err
		default:
		}
		all := slices.Concat(groups...)
		slices.Sort(all)
		return all, fmt.Errorf("redistransport: publish batch: %w (the events may be in the log): %w", ErrUnknownOutcome, ctx.Err())
	}
}

// publish runs the script calls for groups (each a list of indexes of msgs
// of one topic) and fills positions, and errs (when not nil) with each
// message's error. It returns the indexes not written, or of unknown
// outcome, and an error: the first, joined with the first wrapping
// ErrUnknownOutcome when that is another.
func (t *Transport) publish(ctx context.Context, msgs []transport.Message, groups [][]int, positions []transport.Position, errs []error) ([]int, error) {
	now := time.Now().UnixMilli()
	var index []string
	for _, g := range groups {
		topic := msgs[g[0]].Topic
		if t.needsIndex(topic, now) {
			index = append(index, topic)
		}
	}
	calls := make([]*call, len(groups))
	for i, g := range groups {
		topic := msgs[g[0]].Topic
		calls[i] = &call{topic: topic, idx: g, sent: t.state(topic).acks.snapshot()}
	}
	var zadd *redis.IntCmd
	if len(calls) == 1 && len(index) == 0 {
		// The common case: one command, no pipeline.
		t.appendPublish(ctx, t.rdb, msgs, calls[0])
	} else {
		p := t.rdb.Pipeline()
		for _, c := range calls {
			t.appendPublish(ctx, p, msgs, c)
		}
		if len(index) > 0 {
			zadd = p.ZAdd(ctx, t.topicsKey, t.members(index, now)...)
		}
		if err := execPipeline(ctx, p, calls); err != nil && zadd != nil {
			zadd.SetErr(err)
		}
	}
	t.resend(ctx, msgs, calls)

	var failed []int
	var firstErr, firstUnknown error
	var created []string
	var marks []topicMark
	for _, c := range calls {
		isNew, m, err := t.readResult(c, positions)
		if m != nil {
			marks = append(marks, topicMark{c.topic, m})
		}
		if err != nil {
			failed = append(failed, c.idx...)
			if errs != nil {
				for _, i := range c.idx {
					errs[i] = err
				}
			}
			if firstErr == nil {
				firstErr = err
			}
			if firstUnknown == nil && errors.Is(err, ErrUnknownOutcome) {
				firstUnknown = err
			}
			continue
		}
		if isNew && !slices.Contains(index, c.topic) {
			created = append(created, c.topic)
		}
	}
	for _, m := range marks {
		t.writeRollback(ctx, m.topic, m.mark)
	}
	if zadd != nil && zadd.Err() != nil {
		for _, topic := range index {
			t.forgetIndex(topic) // try again next time
		}
		t.log.Warn("redistransport: indexing topics failed", "key", t.topicsKey, "err", zadd.Err())
	}
	if len(created) > 0 {
		// A new topic must be listed by Topics as soon as Publish returns.
		if err := t.rdb.ZAdd(ctx, t.topicsKey, t.members(created, now)...).Err(); err != nil {
			for _, topic := range created {
				t.forgetIndex(topic)
			}
			t.log.Warn("redistransport: indexing new topics failed", "key", t.topicsKey, "err", err)
		}
	}
	if firstUnknown != nil && firstUnknown != firstErr {
		firstErr = errors.Join(firstUnknown, firstErr)
	}
	return failed, firstErr
}

// resend sends again, in rounds, the calls that did not run and may run on
// a second try: refused with NOSCRIPT (sent again at once as EVAL, which
// loads the script), or refused for a passing cause (retryable; after the
// client's backoff, as often as retryPolicy.again allows). A call is sent again
// only when no later call of its topic got a reply, so the calls of a
// topic stay in order.
func (t *Transport) resend(ctx context.Context, msgs []transport.Message, calls []*call) {
	retries, refusedAt := 0, time.Now()
	for {
		var again []*call
		noScript, wait, replied := false, false, false
		later := map[string]bool{} // topics with a later call that stays as it is
		for i := len(calls) - 1; i >= 0; i-- {
			c := calls[i]
			err := c.cmd.Err()
			t.refreshSlots(err)
			switch {
			case later[c.topic]:
				continue
			case isNoScript(err) && !c.eval:
				c.eval, noScript = true, true
			case retryable(err):
				wait = true
				replied = replied || isReply(err)
			default:
				later[c.topic] = true
				continue
			}
			again = append(again, c)
		}
		if len(again) == 0 {
			return
		}
		if wait {
			p := t.policy()
			if !p.again(retries, refusedAt, replied) || !sleep(ctx, p.backoff(retries)) {
				return
			}
			retries++
		}
		if noScript {
			// Scripts were flushed (or never loaded): load the single-event
			// script too, so that the next lone Publish finds it.
			_ = t.rdb.ScriptLoad(ctx, singleScript).Err()
		}
		slices.Reverse(again)
		if len(again) == 1 {
			t.appendPublish(ctx, t.rdb, msgs, again[0])
		} else {
			p := t.rdb.Pipeline()
			for _, c := range again {
				t.appendPublish(ctx, p, msgs, c)
			}
			_ = execPipeline(ctx, p, again)
		}
		calls = again
	}
}

func (t *Transport) members(topics []string, now int64) []redis.Z {
	zs := make([]redis.Z, len(topics))
	for i, topic := range topics {
		zs[i] = redis.Z{Score: float64(now), Member: topic}
	}
	return zs
}

// readResult parses the script's reply into positions, records them as
// acknowledged, and returns a rollback marker to write when they reveal one.
func (t *Transport) readResult(c *call, positions []transport.Position) (created bool, mark *rollbackMark, err error) {
	res, err := c.cmd.Slice()
	if err != nil {
		return false, nil, publishErr(c.topic, err)
	}
	// The script ran: a reply that does not parse leaves the outcome open.
	if want := t.resultLen(len(c.idx)); len(res) != want {
		return false, nil, unknownErr(c.topic, fmt.Errorf("script returned %d values for %d events, want %d", len(res), len(c.idx), want))
	}
	flag, _ := res[0].(int64)
	if t.cfg.idemWindow == 0 {
		err = compactResult(c, res, positions)
	} else {
		for k, i := range c.idx {
			epoch, _ := res[1+3*k].(string)
			seq, _ := res[2+3*k].(int64)
			id, _ := res[3+3*k].(string)
			if epoch == "" || seq <= 0 || id == "" {
				err = unknownErr(c.topic, fmt.Errorf("bad script reply %v", res[1+3*k:4+3*k]))
				break
			}
			positions[i] = transport.Position{Epoch: epoch, Seq: uint64(seq), ID: id}
		}
	}
	if err != nil {
		return false, nil, err
	}
	return flag == 1, t.state(c.topic).acks.ackAll(positions, c.idx, c.sent), nil
}

// execPipeline sends p, whose script calls are calls. Errors of single
// commands are read from each command. When the pipeline could not be sent
// at all (no connection, authentication refused: WRONGPASS, NOAUTH), its
// commands got no reply and no error of their own: they are given the
// pipeline's, which is returned; otherwise it returns nil.
func execPipeline(ctx context.Context, p redis.Pipeliner, calls []*call) error {
	_, err := p.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range calls {
		if c.cmd.Err() != nil || c.cmd.Val() != nil {
			return nil // replies came: each command has its own outcome
		}
	}
	for _, c := range calls {
		c.cmd.SetErr(err)
	}
	return err
}

// resultLen is the length of publishScript's reply for n events.
func (t *Transport) resultLen(n int) int {
	if t.cfg.idemWindow == 0 {
		return 3 + n
	}
	return 1 + 3*n
}

// compactResult reads the positions out of publishScript's reply without
// idempotency window: {newEpoch, epoch, first seq, id_1, id_2, ...}.
func compactResult(c *call, res []any, positions []transport.Position) error {
	epoch, _ := res[1].(string)
	first, _ := res[2].(int64)
	if epoch == "" || first <= 0 {
		return unknownErr(c.topic, fmt.Errorf("bad script reply %v", res[:3]))
	}
	for k, i := range c.idx {
		id, _ := res[3+k].(string)
		if id == "" {
			return unknownErr(c.topic, fmt.Errorf("bad script reply %v", res[3+k]))
		}
		positions[i] = transport.Position{Epoch: epoch, Seq: uint64(first) + uint64(k), ID: id}
	}
	return nil
}

// Rollback detection.
//
// Redis can lose writes it acknowledged (a crash with appendfsync everysec,
// a restart from an older RDB, a failover to a replica that lagged) and then
// hands the lost seqs out again, in the same epoch. A publisher sees every
// acknowledgement in the script replies, so each topic's state keeps the
// highest one seen: (epoch, seq, stream id). A reply of the same epoch with
// a seq at or below that seq but a stream id after its id is an event
// logged after it that reused its seq: Redis rolled back, and the events
// first acknowledged at seqs [that seq .. the highest] are gone. A reply
// with an earlier stream id is only late (up to maxFlushes pipelines, and
// lone calls, are in flight at once, and finish in any order) and does not
// count.
//
// Replies that finish out of order can also hide a rollback from that
// test: when the reply of a later call, past the old highest seq, is read
// first, the highest moves on and the reply with the reused seq then looks
// late. So each call also keeps the highest acknowledgement as it was when
// the call was sent (its snapshot), which Redis had executed before it ran
// the call: a reply at or below the snapshot's seq with a stream id after
// the snapshot's is a rollback too, unless one was found since the
// snapshot (gen), which covers it.
//
// The transport then writes a marker into the topic's log (rollbackScript),
// which Range returns as a transport.Rollback, so that consumers that were
// away learn of the loss too, and logs a warning.
//
// What stays unseen: a rollback of acknowledgements no running publisher
// holds (each transport knows its own, since its start, and forgets them
// past maxTopicStates topics), a rollback after which this transport
// publishes nothing more to the topic, and one whose reused seqs all get
// stream ids at or before the old highest (a replica whose clock is behind
// by more than the writes it lost).

// acks is the highest position a transport saw acknowledged in one topic.
type acks struct {
	mu      sync.Mutex
	high    ackRef
	pending *rollbackMark // detected, not yet written
}

// ackRef is an acknowledged position, and the number of rollbacks found
// in the topic when it was the highest.
type ackRef struct {
	epoch string
	seq   uint64
	id    string
	gen   uint64
}

// rollbackMark is a detected rollback: seqs From..To of Epoch were handed
// out again. After is the highest stream id acknowledged before it.
type rollbackMark struct {
	epoch    string
	from, to uint64
	after    string
}

type topicMark struct {
	topic string
	mark  *rollbackMark
}

// snapshot returns the highest acknowledgement, for a call about to be
// sent.
func (a *acks) snapshot() ackRef {
	a.mu.Lock()
	s := a.high
	a.mu.Unlock()
	return s
}

// ack records one acknowledged position of a call sent at snapshot s; see
// ackAll.
func (a *acks) ack(p transport.Position, s ackRef) *rollbackMark {
	a.mu.Lock()
	a.observe(p, s)
	m := a.pending
	a.pending = nil
	a.mu.Unlock()
	return m
}

// ackAll records the acknowledged positions ps[idx...] of a call sent at
// snapshot s, in reply order. It returns the marker to write, if any: the
// rollback they reveal, or one whose write failed before (merged into one
// when both, in one epoch).
func (a *acks) ackAll(ps []transport.Position, idx []int, s ackRef) *rollbackMark {
	a.mu.Lock()
	for _, i := range idx {
		a.observe(ps[i], s)
	}
	m := a.pending
	a.pending = nil
	a.mu.Unlock()
	return m
}

// observe is the comparison made for every acknowledgement. a.mu is held.
func (a *acks) observe(p transport.Position, s ackRef) {
	h := &a.high
	switch {
	case p.Epoch != h.epoch || p.Seq > h.seq:
		h.epoch, h.seq, h.id = p.Epoch, p.Seq, p.ID
	case streamIDAfter(p.ID, h.id):
		a.add(&rollbackMark{epoch: p.Epoch, from: p.Seq, to: h.seq, after: h.id})
		h.seq, h.id = p.Seq, p.ID
		h.gen++
	case s.gen == h.gen && s.epoch == p.Epoch && p.Seq <= s.seq && streamIDAfter(p.ID, s.id):
		// Read after replies of later calls (see above).
		a.add(&rollbackMark{epoch: p.Epoch, from: p.Seq, to: s.seq, after: s.id})
		h.gen++
	}
}

// add makes m pending, merged with a pending marker of the same epoch (a
// pending one of another epoch is moot: its epoch is gone). a.mu is held.
func (a *acks) add(m *rollbackMark) {
	if p := a.pending; p != nil && p.epoch == m.epoch {
		m.from, m.to = min(m.from, p.from), max(m.to, p.to)
		if streamIDAfter(m.after, p.after) {
			m.after = p.after
		}
	}
	a.pending = m
}

// retry makes m pending again after its write failed.
func (a *acks) retry(m *rollbackMark) {
	a.mu.Lock()
	a.add(m)
	a.mu.Unlock()
}

// streamIDAfter reports whether stream id x comes after y
// (transport.IDAfter).
func streamIDAfter(x, y string) bool { return transport.IDAfter(x, y) }

// writeRollback writes m's marker into topic's log and logs the rollback.
// A marker that could not be written is kept, and written after the next
// acknowledgement in the topic.
func (t *Transport) writeRollback(ctx context.Context, topic string, m *rollbackMark) {
	ctx = context.WithoutCancel(ctx) // the caller may be gone; the marker must not be
	st := t.state(topic)
	args := []any{m.epoch, m.from, m.to, m.after, t.maxLenArg, st.channel, t.pubCmd()}
	cmd := evalOnce(ctx, t.rdb, false, rollbackSHA, rollbackScript, st.keys, args)
	if isNoScript(cmd.Err()) {
		cmd = evalOnce(ctx, t.rdb, true, rollbackSHA, rollbackScript, st.keys, args)
	}
	res, err := cmd.Result()
	if err != nil {
		st.acks.retry(m)
		t.log.Error("redistransport: Redis handed out acknowledged seqs again (rollback); the marker for consumers is not written yet, it will be after the next publish to the topic",
			"topic", topic, "epoch", m.epoch, "from", m.from, "to", m.to, "err", err)
		return
	}
	r, _ := res.([]any)
	if len(r) != 2 {
		t.log.Warn("redistransport: Redis handed out acknowledged seqs again (rollback), and the topic's epoch changed since: no marker written",
			"topic", topic, "epoch", m.epoch, "from", m.from, "to", m.to)
		return
	}
	id, _ := r[0].(string)
	if from, _ := r[1].(int64); from > 0 {
		m.from = uint64(from)
	}
	t.log.Warn("redistransport: Redis handed out acknowledged seqs again (rollback): the events first acknowledged at these seqs are lost; marker written in the log",
		"topic", topic, "epoch", m.epoch, "from", m.from, "to", m.to, "marker", id)
}
