package transport_test

import (
	"errors"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/durabus/durabus/transport"
)

// The key -> partition map is stored with the data: a change of it moves
// keys to other partitions. These values are pinned; the first three are
// the FNV-1a 32 reference vectors of the hash's authors, so the hash is
// the standard one, and the rest pin the modulo.
func TestPartitionOfIsFNV1a32ModNAndNeverChanges(t *testing.T) {
	for _, tc := range []struct {
		key  string
		hash uint32
		n    int
		want int
	}{
		{"", 0x811c9dc5, 16, 5},
		{"a", 0xe40c292c, 16, 12},
		{"foobar", 0xbf9cf968, 16, 8},
		{"order-17", 0xd43044ae, 16, 14},
		{"order-18", 0xcf303ccf, 16, 15},
		{"order-17", 0xd43044ae, 12, 10},
		{"order-18", 0xcf303ccf, 12, 3},
		{"customer:42", 0x3d2af77f, 7, 0},
		{"ü", 0x119dd44a, 16, 10}, // the UTF-8 bytes, not the rune
		{"order-17", 0xd43044ae, 1, 0},
	} {
		h := fnv.New32a()
		h.Write([]byte(tc.key))
		if got := h.Sum32(); got != tc.hash {
			t.Errorf("fnv32a(%q) = %#08x, want %#08x (the pinned vector is wrong)", tc.key, got, tc.hash)
		}
		if got := transport.PartitionOf(tc.key, tc.n); got != tc.want {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d: the key hash changed, which moves stored keys to other partitions", tc.key, tc.n, got, tc.want)
		}
	}
}

func TestPartitionTopicNames(t *testing.T) {
	if got := transport.PartitionTopic("order.placed", 7); got != "order.placed:p7" {
		t.Errorf("PartitionTopic = %q, want order.placed:p7", got)
	}
	got := transport.PartitionTopics("o", 3)
	if strings.Join(got, " ") != "o:p0 o:p1 o:p2" {
		t.Errorf("PartitionTopics = %v", got)
	}
	for _, name := range transport.PartitionTopics("order.placed", transport.MaxPartitions) {
		if err := transport.ValidateTopic(name); err != nil {
			t.Fatalf("partition name %q: %v", name, err)
		}
		if !transport.Match("order.*", name) || !transport.Match("order.placed*", name) {
			t.Fatalf("pattern order.* or order.placed* does not match %q", name)
		}
	}
}

func TestValidatePartitions(t *testing.T) {
	for _, tc := range []struct {
		topic string
		n     int
		want  error
	}{
		{"orders", 1, nil},
		{"orders", transport.MaxPartitions, nil},
		{"orders", 0, transport.ErrInvalidOption},
		{"orders", -3, transport.ErrInvalidOption},
		{"orders", transport.MaxPartitions + 1, transport.ErrInvalidOption},
		{"bad topic", 4, transport.ErrInvalidTopic},
		{strings.Repeat("x", transport.MaxTopicLen-3), 1, nil},                       // "…:p0": 200 bytes
		{strings.Repeat("x", transport.MaxTopicLen-2), 1, transport.ErrInvalidTopic}, // 201
		{strings.Repeat("x", transport.MaxTopicLen-4), 11, nil},                      // "…:p10": 200
		{strings.Repeat("x", transport.MaxTopicLen-3), 11, transport.ErrInvalidTopic},
	} {
		err := transport.ValidatePartitions(tc.topic, tc.n)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("ValidatePartitions(%.12q…, %d) = %v, want %v", tc.topic, tc.n, err, tc.want)
		}
	}
}
