package bus_test

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/internal/redistest"
	"github.com/durabus/durabus/transport/redistransport"
)

// spreadTopics are 48 event types of a shop, chosen for their names
// before their slots were looked at (docs/operations.md, "Load spread").
var spreadTopics = strings.Fields(`
	order.placed order.paid order.packed order.shipped order.delivered order.cancelled order.refunded order.returned
	payment.authorized payment.captured payment.failed payment.refunded payment.disputed payment.settled
	invoice.issued invoice.paid invoice.overdue invoice.voided
	cart.created cart.item_added cart.item_removed cart.abandoned cart.checked_out
	customer.registered customer.verified customer.updated customer.deleted customer.logged_in
	inventory.reserved inventory.released inventory.restocked inventory.depleted
	shipment.created shipment.dispatched shipment.in_transit shipment.delayed shipment.delivered
	product.created product.updated product.price_changed product.discontinued
	review.submitted review.approved review.rejected
	email.sent email.bounced notification.pushed coupon.redeemed`)

// spreadTypes are the 3 partitioned types of the second load.
var spreadTypes = []string{"order.placed", "payment.captured", "shipment.dispatched"}

// shopEvent is an event of any type, keyed by its order.
type shopEvent struct {
	typ   string
	Order string `json:"order"`
}

func (e shopEvent) EventType() string    { return e.typ }
func (e shopEvent) PartitionKey() string { return e.Order }

// On a 3-master cluster the events spread over the masters within ±25 % of
// the mean, for 48 topics and for 3 types × 16 partitions, published
// evenly: 4 800 events each, counted per master as the XLEN of every log
// that master holds.
func TestRedisClusterLoadSpreadsOverMasters(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	ctx := context.Background()

	t.Run("48 topics", func(t *testing.T) {
		b, err := bus.New(redisTransport(t, rdb, redistransport.WithNamespace("spread-topics")))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		const rounds = 100
		for range rounds {
			batch := make([]bus.Event, len(spreadTopics))
			for i, typ := range spreadTopics {
				batch[i] = shopEvent{typ: typ}
			}
			if _, err := b.PublishBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		checkSpread(t, rdb, "spread-topics", len(spreadTopics)*rounds)
	})

	t.Run("3 types x 16 partitions", func(t *testing.T) {
		opts := []bus.Option{}
		for _, typ := range spreadTypes {
			opts = append(opts, bus.WithPartitions(typ, 16))
		}
		b, err := bus.New(redisTransport(t, rdb, redistransport.WithNamespace("spread-partitions")), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		// 1 600 orders, each placed, paid and dispatched: FNV-1a spreads
		// their ids over the 16 partitions of each type.
		const orders = 1600
		for lo := 0; lo < orders; lo += 100 {
			var batch []bus.Event
			for o := lo; o < lo+100; o++ {
				for _, typ := range spreadTypes {
					batch = append(batch, shopEvent{typ: typ, Order: fmt.Sprintf("ord-%d", 100001+o)})
				}
			}
			if _, err := b.PublishBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		checkSpread(t, rdb, "spread-partitions", orders*len(spreadTypes))
	})

	// The same 3 types without partitions: 3 topics are 3 draws of a
	// slot, and here one master gets none. Logged, not asserted.
	t.Run("3 topics, for contrast", func(t *testing.T) {
		b, err := bus.New(redisTransport(t, rdb, redistransport.WithNamespace("spread-few")))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		var batch []bus.Event
		for o := range 1600 {
			for _, typ := range spreadTypes {
				batch = append(batch, shopEvent{typ: typ, Order: fmt.Sprintf("ord-%d", 100001+o)})
			}
		}
		if _, err := b.PublishBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		countSpread(t, rdb, "spread-few")
	})
}

// spreadMaster is what one master holds of a namespace.
type spreadMaster struct {
	addr   string
	slots  string // its slot range, "0-5460"
	first  int    // its lowest slot
	events int64
	topics []string
}

// checkSpread counts the events of namespace ns on each master
// (countSpread) and fails unless they add up to total and every master is
// within ±25 % of the mean.
func checkSpread(t *testing.T, rdb *redis.ClusterClient, ns string, total int) {
	t.Helper()
	masters, mean := countSpread(t, rdb, ns)
	if len(masters) != 3 || mean*3 != float64(total) {
		t.Fatalf("%d masters hold %.0f events, want 3 holding %d", len(masters), mean*float64(len(masters)), total)
	}
	for _, m := range masters {
		if d := float64(m.events)/mean - 1; d < -0.25 || d > 0.25 {
			t.Errorf("master %s holds %d events, %+.1f %% from the mean %.0f: more than ±25 %%", m.addr, m.events, 100*d, mean)
		}
	}
}

// countSpread counts the events of namespace ns on each master (XLEN of
// the logs it holds), logs the table in slot order, and returns it with
// the mean.
func countSpread(t *testing.T, rdb *redis.ClusterClient, ns string) ([]*spreadMaster, float64) {
	t.Helper()
	ctx := context.Background()
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var masters []*spreadMaster
	err = rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		m := &spreadMaster{addr: node.Options().Addr, first: -1}
		for _, sh := range shards {
			for _, n := range sh.Nodes {
				if n.Role != "master" || net.JoinHostPort(n.IP, fmt.Sprint(n.Port)) != m.addr {
					continue
				}
				for _, r := range sh.Slots {
					m.slots = strings.TrimPrefix(m.slots+fmt.Sprintf(",%d-%d", r.Start, r.End), ",")
					if m.first < 0 || int(r.Start) < m.first {
						m.first = int(r.Start)
					}
				}
			}
		}
		iter := node.Scan(ctx, 0, ns+":{*}:log", 1000).Iterator()
		for iter.Next(ctx) {
			n, err := node.XLen(ctx, iter.Val()).Result()
			if err != nil {
				return err
			}
			m.events += n
			m.topics = append(m.topics, strings.TrimSuffix(strings.TrimPrefix(iter.Val(), ns+":{"), "}:log"))
		}
		sort.Strings(m.topics)
		mu.Lock()
		masters = append(masters, m)
		mu.Unlock()
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(masters, func(i, j int) bool { return masters[i].first < masters[j].first })
	sum := int64(0)
	for _, m := range masters {
		sum += m.events
	}
	mean := float64(sum) / float64(len(masters))
	var tab strings.Builder
	fmt.Fprintf(&tab, "%-11s %6s %7s %8s\n", "slots", "topics", "events", "vs mean")
	for _, m := range masters {
		fmt.Fprintf(&tab, "%-11s %6d %7d %+7.1f%%\n", m.slots, len(m.topics), m.events, 100*(float64(m.events)/mean-1))
	}
	t.Logf("events per master, %d in all:\n%s", sum, tab.String())
	for _, m := range masters {
		t.Logf("slots %s (%s) hold %s", m.slots, m.addr, strings.Join(m.topics, " "))
	}
	return masters, mean
}
