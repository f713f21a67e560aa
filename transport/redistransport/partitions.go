package redistransport

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/transport"
)

var _ transport.PartitionStore = (*Transport)(nil)

// The partition count of topic T is a string of its own, in T's slot:
//
//	ns:{T}:partitions  String  N in decimal
//
// It sits beside T's log and meta hash, so that recording a first count
// checks, in the same script, that T holds no events of its own. The
// partitions are the topics "T:p0" … (transport.PartitionTopic), each with
// its own hash tag. Older versions neither read nor write the key.

// setPartitionsScript: KEYS[1] the count, KEYS[2] T's log, KEYS[3] T's
// meta hash; ARGV[1] old, ARGV[2] n. Returns the count recorded after the
// call, -1 when a first count is refused because T holds events, or an
// error when the key holds something else than a count.
var setPartitionsScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local cur = 0
if v then
  cur = tonumber(v)
  if not cur then return redis.error_reply('ERR durabus: ' .. KEYS[1] .. ' holds ' .. v .. ', not a partition count') end
end
if cur ~= tonumber(ARGV[1]) then return cur end
if cur == 0 and (redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1) then return -1 end
redis.call('SET', KEYS[1], ARGV[2])
return tonumber(ARGV[2])
`)

// PartitionsKey returns the Redis key of topic's partition count (see the
// package doc). For operations and tests.
func (t *Transport) PartitionsKey(topic string) string { return t.channel(topic) + ":partitions" }

// Partitions implements transport.PartitionStore: it reads
// ns:{topic}:partitions.
func (t *Transport) Partitions(ctx context.Context, topic string) (int, error) {
	if t.isClosed() {
		return 0, errClosed("partitions")
	}
	if err := transport.ValidateTopic(topic); err != nil {
		return 0, fmt.Errorf("redistransport: partitions: %w", err)
	}
	v, err := t.rdb.Get(ctx, t.PartitionsKey(topic)).Result()
	if isNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, wrapErr("partitions of", topic, t.unreachable(err))
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("redistransport: partitions of %q: %s holds %q, not a partition count", topic, t.PartitionsKey(topic), v)
	}
	return n, nil
}

// SetPartitions implements transport.PartitionStore with one script in
// topic's slot, which also checks that topic's own log and meta hash do not
// exist when it records a first count.
func (t *Transport) SetPartitions(ctx context.Context, topic string, old, n int) (int, error) {
	if t.isClosed() {
		return 0, errClosed("set partitions")
	}
	if err := transport.ValidatePartitions(topic, n); err != nil {
		return 0, fmt.Errorf("redistransport: set partitions: %w", err)
	}
	logKey, metaKey, _ := t.Keys(topic)
	v, err := setPartitionsScript.Run(ctx, t.rdb, []string{t.PartitionsKey(topic), logKey, metaKey}, old, n).Int()
	if err != nil {
		return 0, wrapErr("set partitions of", topic, t.unreachable(err))
	}
	if v < 0 {
		return 0, fmt.Errorf("redistransport: set partitions of %q: %s exists: %w", topic, logKey, transport.ErrTopicHasEvents)
	}
	return v, nil
}
