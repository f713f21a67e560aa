package redistransport

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

// publishScript appends events to one topic's log and publishes them live,
// atomically. With the idempotency window on it returns {newEpoch, epoch_1,
// seq_1, id_1, epoch_2, ...}: newEpoch is 1 when the script created the
// epoch, then one triple per event (for a duplicate within the window, the
// first publish's). Without it every event is new and the seqs follow each
// other: {newEpoch, epoch, seq_1, id_1, id_2, ...}.
//
// KEYS[1] log, KEYS[2] meta.
// ARGV[1] channel, ARGV[2] PUBLISH or SPUBLISH, ARGV[3] MAXLEN (0: none),
// ARGV[4] max age in ms (0: none), ARGV[5] epoch salt, ARGV[6] idempotency
// window in ms (0: off), ARGV[7] idempotency key prefix, ARGV[8] frame size,
// ARGV[9...] the events: (id, envelope) pairs when the window is on,
// envelopes otherwise.
//
// Writes happen in this order: XADDs, trim, HSET meta, idempotency keys,
// PUBLISH; an error in the first XADD (wrong key type, OOM) leaves nothing
// behind.
const publishScript = `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local epoch = meta[1]
local seq = tonumber(meta[2]) or 0
local created = 0
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
    if maxlen > 0 and i + stride > #ARGV then
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
const singleScript = `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local epoch = meta[1]
if not epoch then return 0 end
local seq = (tonumber(meta[2]) or 0) + 1
local env = ARGV[4]
local sid
if ARGV[3] ~= '0' then
  sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'seq', seq, 'e', env)
else
  sid = redis.call('XADD', KEYS[1], '*', 'seq', seq, 'e', env)
end
redis.call('HSET', KEYS[2], 'seq', seq)
redis.call(ARGV[2], ARGV[1], 'v1 ' .. epoch .. ' ' .. seq .. ' 1\n' .. sid .. ' ' .. #env .. '\n' .. env)
return {epoch, seq, sid}
`

var (
	publishSHA = scriptSHA(publishScript)
	singleSHA  = scriptSHA(singleScript)
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

// call is one script invocation: events of one topic, by index in the
// caller's slice.
type call struct {
	topic string
	idx   []int
	cmd   *redis.Cmd
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

// appendPublish appends to p one script call that publishes msgs[idx...],
// which all belong to topic, in order. This is the unit a coalescing
// publisher batches: any number of calls (for any topics) can share one
// pipeline; calls of one topic keep their order.
func (t *Transport) appendPublish(ctx context.Context, p redis.Pipeliner, topic string, msgs []transport.Message, idx []int) *call {
	c := &call{topic: topic, idx: idx}
	c.cmd = p.EvalSha(ctx, publishSHA, t.scriptKeys(topic), t.scriptArgs(topic, msgs, idx)...)
	return c
}

// scriptKeys returns the scripts' KEYS of topic (shared: not to be changed).
func (t *Transport) scriptKeys(topic string) []string { return t.state(topic).keys }

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
// last indexed it, and its Redis names, built once rather than per publish.
type topicState struct {
	indexed atomic.Int64 // last ZADD to ns:topics, Unix ms; 0: due
	keys    []string     // the scripts' KEYS: log, meta
	channel any          // the channel name, boxed for go-redis's arguments
	idemKey string       // prefix of the idempotency keys
}

// maxTopicStates bounds the per-topic states kept; beyond it they are all
// dropped and rebuilt as topics are published to again (an extra ZADD per
// topic), so a publisher to ever new topics keeps bounded memory.
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
// script call, and returns its position once Redis has executed it. When
// the reply is lost, go-redis may retry, which can write the event twice
// (with two seqs) unless WithIdempotency is on.
//
// Concurrent calls are coalesced: the events that arrive while a pipeline is
// in flight leave together in the next one, one script call per topic. A
// lone call is sent at once. When ctx ends while the event is still queued
// it is not written; when ctx ends after it was sent, Publish returns at
// once with an error wrapping ErrUnknownOutcome and ctx.Err(), and the event
// may be in the log (see coalesce.go).
func (t *Transport) Publish(ctx context.Context, msg transport.Message) (transport.Position, error) {
	if t.isClosed() {
		return transport.Position{}, errClosed("publish")
	}
	if err := t.check(&msg); err != nil {
		return transport.Position{}, err
	}
	return t.publishOne(ctx, msg)
}

// publishSingle publishes one valid message with the caller's ctx. The
// common case (the topic exists, its index entry is fresh, no idempotency
// window and no age limit) runs singleScript; everything else the full
// script.
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
	keys := st.keys
	args := []any{st.channel, t.pubCmd(), t.maxLenArg, msg.Data}
	cmd := t.rdb.EvalSha(ctx, singleSHA, keys, args...)
	if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		cmd = t.rdb.Eval(ctx, singleScript, keys, args...)
	}
	res, err := cmd.Result()
	if err != nil {
		return transport.Position{}, false, wrapErr("publish to", msg.Topic, err)
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
			return transport.Position{Epoch: epoch, Seq: uint64(seq), ID: id}, true, nil
		}
	}
	return transport.Position{}, false, fmt.Errorf("redistransport: publish to %q: bad script reply %v", msg.Topic, res)
}

func (t *Transport) pubCmd() string {
	if t.cfg.sharded {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// PublishBatch publishes msgs: one script call per topic (split beyond 1000
// events or 8 MiB), all in one pipeline round trip, in order per topic.
// Invalid messages (bad topic, too large) are listed in the
// *transport.BatchError and not sent; the valid ones are still written.
// Events of a script call that failed, or whose reply was lost, are listed
// as failed too.
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
		f, err := t.publish(ctx, msgs, order, positions, nil)
		failed = f
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if len(bad)+len(failed) == 0 {
		return positions, nil
	}
	all := append(bad, failed...)
	slices.Sort(all)
	return positions, &transport.BatchError{Failed: all, Err: firstErr}
}

// publish runs the script calls for groups (each a list of indexes of msgs
// of one topic) and fills positions, and errs (when not nil) with each
// message's error. It returns the indexes not written and the first error.
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
	var zadd *redis.IntCmd
	if len(groups) == 1 && len(index) == 0 {
		// The common case: one command, no pipeline.
		topic := msgs[groups[0][0]].Topic
		c := &call{topic: topic, idx: groups[0]}
		c.cmd = t.rdb.EvalSha(ctx, publishSHA, t.scriptKeys(topic), t.scriptArgs(topic, msgs, groups[0])...)
		calls[0] = c
	} else {
		p := t.rdb.Pipeline()
		for i, g := range groups {
			calls[i] = t.appendPublish(ctx, p, msgs[g[0]].Topic, msgs, g)
		}
		if len(index) > 0 {
			zadd = p.ZAdd(ctx, t.topicsKey, t.members(index, now)...)
		}
		if err := execPipeline(ctx, p, calls); err != nil && zadd != nil {
			zadd.SetErr(err)
		}
	}
	// Calls refused with NOSCRIPT were not run: run them again with EVAL,
	// which also loads the script (on the node that owns the slot).
	var retry []*call
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			retry = append(retry, c)
		}
	}
	if len(retry) > 0 {
		// Scripts were flushed (or never loaded): load the single-event
		// script too, so that the next lone Publish finds it.
		_ = t.rdb.ScriptLoad(ctx, singleScript).Err()
	}
	if len(retry) == 1 {
		c := retry[0]
		c.cmd = t.rdb.Eval(ctx, publishScript, t.scriptKeys(c.topic), t.scriptArgs(c.topic, msgs, c.idx)...)
	} else if len(retry) > 1 {
		p := t.rdb.Pipeline()
		for _, c := range retry {
			c.cmd = p.Eval(ctx, publishScript, t.scriptKeys(c.topic), t.scriptArgs(c.topic, msgs, c.idx)...)
		}
		_ = execPipeline(ctx, p, retry)
	}
	var failed []int
	var firstErr error
	var created []string
	for _, c := range calls {
		isNew, err := t.readResult(c, positions)
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
			continue
		}
		if isNew && !slices.Contains(index, c.topic) {
			created = append(created, c.topic)
		}
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
	return failed, firstErr
}

func (t *Transport) members(topics []string, now int64) []redis.Z {
	zs := make([]redis.Z, len(topics))
	for i, topic := range topics {
		zs[i] = redis.Z{Score: float64(now), Member: topic}
	}
	return zs
}

// readResult parses the script's reply into positions.
func (t *Transport) readResult(c *call, positions []transport.Position) (created bool, err error) {
	res, err := c.cmd.Slice()
	if err != nil {
		return false, wrapErr("publish to", c.topic, err)
	}
	if want := t.resultLen(len(c.idx)); len(res) != want {
		return false, fmt.Errorf("redistransport: publish to %q: script returned %d values for %d events, want %d", c.topic, len(res), len(c.idx), want)
	}
	flag, _ := res[0].(int64)
	if t.cfg.idemWindow == 0 {
		return flag == 1, compactResult(c, res, positions)
	}
	for k, i := range c.idx {
		epoch, _ := res[1+3*k].(string)
		seq, _ := res[2+3*k].(int64)
		id, _ := res[3+3*k].(string)
		if epoch == "" || seq <= 0 || id == "" {
			return false, fmt.Errorf("redistransport: publish to %q: bad script reply %v", c.topic, res[1+3*k:4+3*k])
		}
		positions[i] = transport.Position{Epoch: epoch, Seq: uint64(seq), ID: id}
	}
	return flag == 1, nil
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
		return fmt.Errorf("redistransport: publish to %q: bad script reply %v", c.topic, res[:3])
	}
	for k, i := range c.idx {
		id, _ := res[3+k].(string)
		if id == "" {
			return fmt.Errorf("redistransport: publish to %q: bad script reply %v", c.topic, res[3+k])
		}
		positions[i] = transport.Position{Epoch: epoch, Seq: uint64(first) + uint64(k), ID: id}
	}
	return nil
}
