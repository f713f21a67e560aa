package replay_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/durabus/durabus/replay"
	"github.com/durabus/durabus/transport"
)

func groupMember(t testing.TB, tr transport.Transport, id string, h replay.Handler, topics []string, extra ...replay.Option) *replay.Group {
	t.Helper()
	opts := append([]replay.Option{replay.WithTopics(topics...), replay.WithStart(replay.Beginning()),
		replay.WithLease(time.Second), replay.WithLeaseHolder(id)}, fast...)
	g, err := replay.NewGroup(tr, "billing", h, append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGroupMembersShareTopicsAndHandOverOnStop(t *testing.T) {
	tr := newMem(t)
	topics := make([]string, 8)
	for i := range topics {
		topics[i] = fmt.Sprintf("orders:p%d", i)
	}
	rec := newRecorder(t)
	a := groupMember(t, tr, "a", rec.handle, topics)
	stopA := run(t, a)
	waitFor(t, "a ready", func() bool {
		select {
		case <-a.Ready():
			return true
		default:
			return false
		}
	})
	if got := a.Owned(); len(got) != 8 {
		t.Fatalf("a alone owns %v, want all 8", got)
	}
	for _, tp := range topics {
		publish(t, tr, tp, 10)
	}
	waitFor(t, "the first 80 events", func() bool { return rec.total() == 80 })

	b := groupMember(t, tr, "b", rec.handle, topics)
	run(t, b)
	waitFor(t, "a and b own 4 each", func() bool { return len(a.Owned()) == 4 && len(b.Owned()) == 4 })
	for _, tp := range topics {
		publish(t, tr, tp, 10)
	}
	waitFor(t, "160 events", func() bool { return rec.total() == 160 })

	stopA()
	waitFor(t, "b owns all 8", func() bool { return len(b.Owned()) == 8 })
	for _, tp := range topics {
		publish(t, tr, tp, 10)
	}
	waitFor(t, "240 events", func() bool { return rec.total() == 240 })
	for _, tp := range topics {
		if err := contiguous(rec.seqsOf(tp), 1, 30); err != nil {
			t.Errorf("%s: %v", tp, err)
		}
	}
	if s := b.GroupStats(); s.Acquired < 8 || s.Released != 0 || s.Rebalances < 2 {
		t.Errorf("b's stats %+v, want 8 acquired, none released, 2 rebalances or more", s)
	}
	if m := b.Members(); len(m) != 1 || m[0].ID != "b" {
		t.Errorf("members after a left: %v, want b alone", m)
	}
}

func TestNewGroupRefusesWhatItCannotDo(t *testing.T) {
	tr := newMem(t)
	h := newRecorder(t).handle
	for _, c := range []struct {
		name string
		opts []replay.Option
	}{
		{"no topics", nil},
		{"consumer", []replay.Option{replay.WithTopics("a"), replay.WithConsumer("x")}},
	} {
		if _, err := replay.NewGroup(tr, "g", h, c.opts...); err == nil {
			t.Errorf("%s: NewGroup accepted it", c.name)
		}
	}
	if _, err := replay.NewGroup(tr, "", h, replay.WithTopics("a")); err == nil {
		t.Error("an empty group name was accepted")
	}
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.seqs {
		n += len(s)
	}
	return n
}

func (r *recorder) seqsOf(topic string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs[topic]...)
}
