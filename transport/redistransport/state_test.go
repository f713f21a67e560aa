package redistransport

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// The per-topic states of a publisher to ever new topics stay bounded, and
// a state keeps the names the scripts use.
func TestTopicStatesAreBounded(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	tr, err := New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	st := tr.state("orders")
	if st.keys[0] != "durabus:{orders}:log" || st.keys[1] != "durabus:{orders}:meta" || st.channel != "durabus:{orders}" {
		t.Fatalf("names of orders: %v %v", st.keys, st.channel)
	}
	if tr.state("orders") != st {
		t.Fatal("a second call built a new state")
	}
	for i := range maxTopicStates + 10 {
		tr.state("t" + strconv.Itoa(i))
	}
	n := 0
	tr.topics.Range(func(any, any) bool { n++; return true })
	if n > maxTopicStates {
		t.Fatalf("%d topic states kept, the bound is %d", n, maxTopicStates)
	}
}
