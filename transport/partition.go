package transport

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
)

// A partitioned topic T with N partitions is N ordinary topics, its
// partitions, named by PartitionTopic: "T:p0" … "T:p<N-1>". Each has its own
// log, seq, epoch and (on Redis) hash tag, so the partitions of one topic
// spread over the masters of a cluster, and everything that works on a topic
// (replay, Since, gap repair, loss reports, checkpoints) works on each
// partition. T itself holds no events; its partition count N is recorded
// by the back end (PartitionStore) so that every publisher and subscriber
// agrees on it.
//
// The names and the key hash below are stored with the data: they never
// change once data exists.

// MaxPartitions is the largest partition count of a topic.
const MaxPartitions = 1024

// ErrTopicHasEvents is wrapped by the error of PartitionStore.SetPartitions
// when a topic that is not partitioned yet holds events of its own:
// partitioning it would split its order between it and its partitions.
var ErrTopicHasEvents = errors.New("transport: topic holds events")

// PartitionStore is an optional ability of a Transport (found with a type
// assertion, reported by FeaturesOf): it records how many partitions a
// topic has, where every process that uses the back end sees it.
//
// Every method is safe for concurrent use.
type PartitionStore interface {
	// Partitions returns the partition count recorded for topic, 0 when
	// none is.
	Partitions(ctx context.Context, topic string) (int, error)
	// SetPartitions records n (1 to MaxPartitions) as the partition count
	// of topic when the count recorded now is old (0: none), atomically,
	// and returns the count recorded after the call: n when it was
	// recorded, else the one found (with a nil error). A first record
	// (old 0) is refused, with an error wrapping ErrTopicHasEvents, when
	// topic itself holds events. Whether the partitions hold events is
	// the caller's to check before it changes a count.
	SetPartitions(ctx context.Context, topic string, old, n int) (int, error)
}

// PartitionTopic returns the name of partition i of topic: topic + ":p" +
// i in decimal, such as "order.placed:p7". A pattern that matches topic
// followed by anything ("order.*", "order.placed*") matches its partitions.
func PartitionTopic(topic string, i int) string {
	return topic + ":p" + strconv.Itoa(i)
}

// PartitionTopics returns the names of the n partitions of topic, in
// partition order.
func PartitionTopics(topic string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = PartitionTopic(topic, i)
	}
	return out
}

// PartitionOf returns the partition of key among n (n ≥ 1): the 32-bit
// FNV-1a hash of key's bytes, modulo n. It never changes: events with one
// key go to one partition for as long as n does.
func PartitionOf(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// ValidatePartitions checks a partition count for topic: 1 to
// MaxPartitions, with partition names that pass ValidateTopic. The error
// wraps ErrInvalidTopic when a name is too long, ErrInvalidOption
// otherwise.
func ValidatePartitions(topic string, n int) error {
	if n < 1 || n > MaxPartitions {
		return fmt.Errorf("%w: %d partitions of %q: want 1 to %d", ErrInvalidOption, n, topic, MaxPartitions)
	}
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	return ValidateTopic(PartitionTopic(topic, n-1))
}
