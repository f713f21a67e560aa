package replay

import (
	"fmt"
	"testing"
)

func TestAssignSharesEveryTopicOnceAndFairly(t *testing.T) {
	topics := make([]string, 16)
	for i := range topics {
		topics[i] = fmt.Sprintf("orders:p%d", i)
	}
	for _, members := range [][]string{{"a"}, {"a", "b"}, {"a", "b", "c"}, {"a", "b", "c", "d", "e"}, {"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11", "m12", "m13", "m14", "m15", "m16", "m17"}} {
		owner := map[string]string{}
		lo, hi := len(topics), 0
		for _, m := range members {
			share := assign(topics, members, m)
			lo, hi = min(lo, len(share)), max(hi, len(share))
			for _, tp := range share {
				if o, dup := owner[tp]; dup {
					t.Fatalf("%d members: %s given to %s and %s", len(members), tp, o, m)
				}
				owner[tp] = m
			}
		}
		if len(owner) != len(topics) {
			t.Errorf("%d members: %d of %d topics given", len(members), len(owner), len(topics))
		}
		if hi-lo > 1 {
			t.Errorf("%d members: shares from %d to %d topics, want at most one apart", len(members), lo, hi)
		}
	}
	if s := assign(topics, []string{"a", "b"}, "c"); s != nil {
		t.Errorf("a member not in the list got %v", s)
	}
}

func TestAssignMovesFewTopicsWhenAMemberJoins(t *testing.T) {
	topics := make([]string, 16)
	for i := range topics {
		topics[i] = fmt.Sprintf("orders:p%d", i)
	}
	before := map[string]string{}
	for _, m := range []string{"a", "b", "c"} {
		for _, tp := range assign(topics, []string{"a", "b", "c"}, m) {
			before[tp] = m
		}
	}
	moved := 0
	for _, m := range []string{"a", "b", "c", "d"} {
		for _, tp := range assign(topics, []string{"a", "b", "c", "d"}, m) {
			if before[tp] != m {
				moved++
			}
		}
	}
	// d's share (4) must move; a greedy fill may move a few more.
	if moved < 4 || moved > 8 {
		t.Errorf("%d of 16 topics moved when a 4th member joined, want 4 to 8", moved)
	}
}
