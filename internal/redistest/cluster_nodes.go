package redistest

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/durabus/durabus/internal/hashslot"
)

// KeySlot returns the hash slot (0..16383) of key as Redis Cluster computes
// it (see [hashslot.Of]): "durabus:{orders}:log" and "{orders}" share a
// slot. It needs no server.
func KeySlot(key string) int { return hashslot.Of(key) }

// clusterView is one node's CLUSTER NODES reply.
type clusterView struct {
	from  *Server
	nodes []clusterNode
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id     string
	addr   string // "ip:port" as listed; the ip is empty for a node that knows only itself
	port   int
	flags  map[string]bool // myself, master, slave, fail?, fail, handshake, noaddr, nofailover
	master string          // the id of the master it follows, or ""
	slots  [][2]int        // served slot ranges, inclusive, in listed order
}

// parseClusterNodes parses a CLUSTER NODES reply:
//
//	<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
//
// where a slot is "N", "N-M", or "[N->-id]" / "[N-<-id]" for a slot being
// migrated or imported (skipped: the owner is listed with the plain form).
func parseClusterNodes(from *Server, reply string) (*clusterView, error) {
	v := &clusterView{from: from}
	for _, line := range strings.Split(strings.TrimSpace(reply), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("redistest: CLUSTER NODES line %q: want at least 8 fields", line)
		}
		n := clusterNode{id: f[0], flags: map[string]bool{}}
		n.addr, _, _ = strings.Cut(f[1], "@")
		_, port, err := net.SplitHostPort(n.addr)
		if err == nil {
			n.port, err = strconv.Atoi(port)
		}
		if err != nil {
			return nil, fmt.Errorf("redistest: CLUSTER NODES line %q: address: %v", line, err)
		}
		for _, flag := range strings.Split(f[2], ",") {
			n.flags[flag] = true
		}
		if f[3] != "-" {
			n.master = f[3]
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a < 0 || b < a || b >= clusterSlots {
				return nil, fmt.Errorf("redistest: CLUSTER NODES line %q: bad slot range %q", line, s)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		v.nodes = append(v.nodes, n)
	}
	return v, nil
}

// node returns the entry with id, or nil.
func (v *clusterView) node(id string) *clusterNode {
	for i := range v.nodes {
		if v.nodes[i].id == id {
			return &v.nodes[i]
		}
	}
	return nil
}

// myself returns the entry of the node that answered, or nil.
func (v *clusterView) myself() *clusterNode {
	for i := range v.nodes {
		if v.nodes[i].flags["myself"] {
			return &v.nodes[i]
		}
	}
	return nil
}

// masterOf returns the id of the master that node id follows, or "".
func (v *clusterView) masterOf(id string) string {
	if n := v.node(id); n != nil {
		return n.master
	}
	return ""
}

// owners returns the id of the node serving each slot ("" for none).
func (v *clusterView) owners() []string {
	o := make([]string, clusterSlots)
	for _, n := range v.nodes {
		for _, r := range n.slots {
			for s := r[0]; s <= r[1]; s++ {
				o[s] = n.id
			}
		}
	}
	return o
}

// slotsOf returns the slots node id serves, in ascending order.
func (v *clusterView) slotsOf(id string) []int {
	var slots []int
	for s, owner := range v.owners() {
		if owner == id {
			slots = append(slots, s)
		}
	}
	return slots
}

// roles returns, for each node in include, "master" or "replica of <id>".
func (v *clusterView) roles(include map[string]bool) map[string]string {
	r := map[string]string{}
	for _, n := range v.nodes {
		if !include[n.id] {
			continue
		}
		switch {
		case n.master != "":
			r[n.id] = "replica of " + n.master
		case n.flags["master"]:
			r[n.id] = "master"
		default:
			r[n.id] = strings.Join(slices.Sorted(maps.Keys(n.flags)), ",")
		}
	}
	return r
}
