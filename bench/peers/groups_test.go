package main

import (
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/envelope"
	"github.com/durabus/durabus/transport"
)

func TestKeyedMessagesGoToTheirKeysPartitions(t *testing.T) {
	msgs, parts, err := keyedMessages()
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]int{}
	for i, m := range msgs {
		en, err := envelope.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		key := en.Extensions[bus.ExtPartitionKey]
		if key == "" || transport.PartitionOf(key, groupParts) != parts[i] {
			t.Fatalf("message %d: key %q, partition %d", i, key, parts[i])
		}
		if len(m.Data) < 400 || len(m.Data) > 520 {
			t.Errorf("message %d: %d bytes, want an envelope of about 470", i, len(m.Data))
		}
		used[parts[i]]++
	}
	if len(used) != groupParts {
		t.Errorf("%d of %d partitions used: %v", len(used), groupParts, used)
	}
}
