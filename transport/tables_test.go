package transport_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/transport"
)

func TestParseStreamID(t *testing.T) {
	const max = "18446744073709551615"
	for _, tc := range []struct {
		in   string
		want transport.StreamID
		ok   bool
	}{
		{"0-0", transport.StreamID{}, true},
		{"1700000000000-0", transport.StreamID{MS: 1700000000000}, true},
		{"5-7", transport.StreamID{MS: 5, N: 7}, true},
		{max + "-" + max, transport.StreamID{MS: ^uint64(0), N: ^uint64(0)}, true},
		{"", transport.StreamID{}, false},
		{"-", transport.StreamID{}, false},
		{"+", transport.StreamID{}, false},
		{"$", transport.StreamID{}, false},
		{"*", transport.StreamID{}, false},
		{"5", transport.StreamID{}, false},
		{"5-", transport.StreamID{}, false},
		{"-5", transport.StreamID{}, false},
		{"+5-1", transport.StreamID{}, false},
		{"5-+1", transport.StreamID{}, false},
		{"5-1-2", transport.StreamID{}, false},
		{"0x5-1", transport.StreamID{}, false},
		{"5-1 ", transport.StreamID{}, false},
		{"18446744073709551616-0", transport.StreamID{}, false}, // overflows
	} {
		got, ok := transport.ParseStreamID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseStreamID(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.in {
			t.Errorf("%q: String() = %q", tc.in, got.String())
		}
	}
}

func TestStreamIDCompareNextPrev(t *testing.T) {
	id := func(ms, n uint64) transport.StreamID { return transport.StreamID{MS: ms, N: n} }
	const top = ^uint64(0)
	for _, tc := range []struct {
		a, b transport.StreamID
		want int
	}{
		{id(1, 0), id(1, 0), 0},
		{id(1, 0), id(1, 1), -1},
		{id(2, 0), id(1, top), 1},
		{id(0, top), id(1, 0), -1},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := tc.b.Compare(tc.a); got != -tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
	for _, tc := range []struct {
		in         transport.StreamID
		prev, next transport.StreamID
		hasPrev    bool
		hasNext    bool
	}{
		{id(5, 3), id(5, 2), id(5, 4), true, true},
		{id(5, 0), id(4, top), id(5, 1), true, true},
		{id(0, 0), id(0, 0), id(0, 1), false, true},
		{id(5, top), id(5, top-1), id(6, 0), true, true},
		{id(top, top), id(top, top-1), id(0, 0), true, false},
	} {
		p, ok := tc.in.Prev()
		if ok != tc.hasPrev || ok && p != tc.prev {
			t.Errorf("%v.Prev() = %v, %v; want %v, %v", tc.in, p, ok, tc.prev, tc.hasPrev)
		}
		n, ok := tc.in.Next()
		if ok != tc.hasNext || ok && n != tc.next {
			t.Errorf("%v.Next() = %v, %v; want %v, %v", tc.in, n, ok, tc.next, tc.hasNext)
		}
		if ok {
			if back, _ := n.Prev(); back != tc.in {
				t.Errorf("%v.Next().Prev() = %v", tc.in, back)
			}
		}
	}
	if got := id(1700000000123, 4).Time(); !got.Equal(time.UnixMilli(1700000000123)) {
		t.Errorf("Time() = %v", got)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"2-0", "1-9", true},
		{"1-9", "2-0", false},
		{"1-1", "1-1", false},
		{"1-1", "", false},
		{"", "1-1", false},
		{"x", "1-1", false},
	} {
		if got := transport.IDAfter(tc.a, tc.b); got != tc.want {
			t.Errorf("IDAfter(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestValidateTopicTable(t *testing.T) {
	long := strings.Repeat("a", transport.MaxTopicLen)
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"orders", true},
		{"order.placed", true},
		{"a:b_c-D.9", true},
		{long, true},
		{long + "a", false},
		{"", false},
		{"has space", false},
		{"star*", false},
		{"q?", false},
		{"[x]", false},
		{"{tag}", false},
		{"tab\t", false},
		{"nl\n", false},
		{"café", false},
		{"a/b", false},
	} {
		err := transport.ValidateTopic(tc.topic)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, transport.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, want ok %v", tc.topic, err, tc.ok)
		}
	}
}

func TestValidatePatternTable(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"order.*", true},
		{"*", true},
		{"user.?.x", true},
		{"t[0-9]", true},
		{"t[^0-9]", true},
		{"plain.topic", true},
		{"", false},
		{"t[0-9", false},
		{"has space*", false},
		{"{tag}*", false},
		{"a\\*", false},
		{strings.Repeat("*", transport.MaxTopicLen+1), false},
	} {
		err := transport.ValidatePattern(tc.pattern)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, transport.ErrInvalidTopic) {
			t.Errorf("ValidatePattern(%q) = %v, want ok %v", tc.pattern, err, tc.ok)
		}
	}
}

func TestMatchTable(t *testing.T) {
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"order.*", "order.placed", true},
		{"order.*", "order.", true},
		{"order.*", "order", false},
		{"order.*", "orders.placed", false},
		{"*", "anything.at:all", true},
		{"user.?.x", "user.1.x", true},
		{"user.?.x", "user.12.x", false},
		{"t[0-9]", "t7", true},
		{"t[0-9]", "tx", false},
		{"t[^0-9]", "tx", true},
		{"t[^0-9]", "t7", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"t[0-9", "t7", false}, // invalid: matches nothing
	} {
		if got := transport.Match(tc.pattern, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.topic, got, tc.want)
		}
	}
}

func TestParsePositionTable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want transport.Position
		ok   bool
	}{
		{"", transport.Position{}, true},
		{"e1:5:1700000000000-0", transport.Position{Epoch: "e1", Seq: 5, ID: "1700000000000-0"}, true},
		{"e1:0:", transport.Position{Epoch: "e1"}, true},
		{"e1:7:", transport.Position{Epoch: "e1", Seq: 7}, true},
		{"::", transport.Position{}, false},
		{"e1", transport.Position{}, false},
		{"e1:5", transport.Position{}, false},
		{"e1:x:1-0", transport.Position{}, false},
		{"e1:-1:1-0", transport.Position{}, false},
		{":5:1-0", transport.Position{}, false},
		{"::1-0", transport.Position{}, false},
	} {
		got, err := transport.ParsePosition(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok && tc.in != "" {
			if back, err := transport.ParsePosition(got.String()); err != nil || back != got {
				t.Errorf("%q: String() %q does not parse back: %+v, %v", tc.in, got.String(), back, err)
			}
		}
	}
}
