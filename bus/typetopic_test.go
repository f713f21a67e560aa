package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/transport"
)

type spacedType struct{}

func (spacedType) EventType() string { return "has space" }

// A type name refused as a topic is named as the type used as the topic,
// on Publish, PublishBatch and Subscribe; routed elsewhere, it is fine.
func TestTypeUsedAsTopicIsNamedWhenRefused(t *testing.T) {
	b, err := bus.New(newMem(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const want = `event type "has space" is used as its topic`
	_, err1 := b.Publish(ctx, spacedType{})
	_, err2 := b.PublishBatch(ctx, []bus.Event{spacedType{}})
	_, err3 := bus.Subscribe(b, func(context.Context, *spacedType) error { return nil })
	for i, err := range []error{err1, err2, err3} {
		if !errors.Is(err, transport.ErrInvalidTopic) || !strings.Contains(err.Error(), want) {
			t.Errorf("call %d: %v; want an ErrInvalidTopic saying %q", i+1, err, want)
		}
	}
	if _, err := b.Publish(ctx, spacedType{}, bus.ToTopic("spaced")); err != nil {
		t.Errorf("Publish to a topic of its own: %v", err)
	}
}
