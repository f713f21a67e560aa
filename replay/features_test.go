package replay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
	"github.com/durabus/durabus/transport/memtransport"
)

// coreOnly offers the core Transport and nothing optional: embedding the
// interface promotes only its methods.
type coreOnly struct{ transport.Transport }

func TestFollowerNeedsTheAbilitiesItsOptionsUse(t *testing.T) {
	mem, _ := memtransport.New()
	defer mem.Close()
	tr := coreOnly{mem}
	if f := transport.FeaturesOf(tr); f != (transport.Features{}) {
		t.Fatalf("FeaturesOf(core only) = %+v, want none", f)
	}
	if f := transport.FeaturesOf(mem); !f.Patterns || !f.Seek || !f.Topics || !f.Checkpoints {
		t.Fatalf("FeaturesOf(memtransport) = %+v, want all but ownership", f)
	}
	h := func(context.Context, replay.Delivery) error { return nil }
	for _, tc := range []struct {
		opts []replay.Option
		want string
	}{
		{[]replay.Option{replay.WithPattern("a.*")}, "PatternSubscriber"},
		{[]replay.Option{replay.WithTopics("a"), replay.WithConsumer("c")}, "CheckpointStore"},
		{[]replay.Option{replay.WithTopics("a"), replay.WithStart(replay.Since(time.Now()))}, "Seeker"},
	} {
		_, err := replay.New(tr, h, tc.opts...)
		if !errors.Is(err, replay.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New = %v, want an ErrInvalidOption naming %s", err, tc.want)
		}
	}
	// The core is enough for a follower of named topics from NewOnly or
	// Beginning: it delivers.
	got := make(chan uint64, 1)
	f, err := replay.New(tr, func(_ context.Context, d replay.Delivery) error { got <- d.Position.Seq; return nil },
		replay.WithTopics("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	<-f.Ready()
	if _, err := mem.Publish(ctx, transport.Message{Topic: "a", Data: []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-got:
		if seq != 1 {
			t.Errorf("delivered seq %d, want 1", seq)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("nothing delivered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
