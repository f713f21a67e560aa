package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/durabus/durabus/internal/redistest"
)

// bench runs every case once on a private Redis, prints one line per case
// and leaves no key behind (it writes only under its own namespace).
func TestBenchRunsEveryCaseAndCleansUp(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	out := ok(t, "", "--redis", redisURL(srv), "bench", "--rounds", "1", "--duration", "20ms", "--events", "1000")
	for _, c := range []string{"Publish, 1 goroutine", "Publish, 16 goroutines", "PublishBatch of 100",
		"live delivery, typed handler", "live delivery with the publisher", "replay", "latency p50", "latency p99"} {
		if !strings.Contains(out, c) {
			t.Errorf("output lacks %q:\n%s", c, out)
		}
	}
	keys, err := srv.Client(t).Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("bench left %d keys behind, e.g. %v", len(keys), keys[:min(3, len(keys))])
	}
}

// bench --cluster publishes through a ClusterClient on every master: it
// prints the totals and one line per master with its slots, topics,
// events/s and Redis CPU per event, and leaves no key behind on any node.
func TestBenchClusterPrintsEachMasterAndCleansUp(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	url := "redis://" + strings.Join(cl.Addrs(), ",")
	out := ok(t, "", "--redis", url, "bench", "--cluster", "--rounds", "1", "--duration", "20ms", "--goroutines", "1,4", "--topics", "12")
	t.Logf("\n%s", out)
	for _, c := range []string{"Publish, 1 goroutine", "Publish, 4 goroutines", "Publish sharded, 1 goroutine", "Publish sharded, 4 goroutines",
		"Per master, Publish from 4 goroutines", "all 3 masters", "Redis CPU per event, all 3 nodes (masters and replicas)"} {
		if !strings.Contains(out, c) {
			t.Errorf("output lacks %q", c)
		}
	}
	topics := 0
	for _, addr := range cl.Addrs() {
		line := lineWith(out, addr)
		f := strings.Fields(line)
		if len(f) != 7 {
			t.Fatalf("master %s: line %q, want 7 columns", addr, line)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			t.Fatalf("master %s: topics %q", addr, f[2])
		}
		topics += n
		for _, col := range []int{3, 4, 5, 6} { // events/s and CPU, plain and sharded
			if x, err := strconv.ParseFloat(f[col], 64); err != nil || x <= 0 {
				t.Errorf("master %s: column %d is %q, want a positive figure", addr, col+1, f[col])
			}
		}
	}
	if topics != 12 {
		t.Errorf("the masters' topics add up to %d, want 12", topics)
	}
	for _, n := range cl.Nodes() {
		keys, err := n.Client(t).Keys(context.Background(), "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Errorf("bench left %d keys on %s, e.g. %v", len(keys), n.Addr(), keys[:min(3, len(keys))])
		}
	}
}

// lineWith returns the first line of s containing sub ("" if none).
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// bench --cluster on a Redis that is no cluster says so, in one line.
func TestBenchClusterOnAStandaloneRedisSaysSo(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := cli(t, "", nil, "--redis", redisURL(srv), "bench", "--cluster", "--rounds", "1", "--duration", "20ms")
	oneErrorLine(t, r, 1, "is not a cluster")
}

func TestParseClusterURL(t *testing.T) {
	for _, c := range []struct {
		url       string
		addrs     []string
		user, pw  string
		tls       bool
		wantError string
	}{
		{url: "redis://h1:7000", addrs: []string{"h1:7000"}},
		{url: "redis://h1:7000,h2:7001,h3:7002", addrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
		{url: "redis://u:p@w@h1:7000,h2:7001/0?dial_timeout=2s", addrs: []string{"h1:7000", "h2:7001"}, user: "u", pw: "p@w"},
		{url: "rediss://:secret@h1:7000,h2:7001", addrs: []string{"h1:7000", "h2:7001"}, pw: "secret", tls: true},
		{url: "redis://h1:7000/2", wantError: "only database 0"},
		{url: "h1:7000", wantError: "no scheme"},
		{url: "redis://:secret@", wantError: "no host"},
		{url: "http://:secret@h1:7000", wantError: "invalid URL scheme"},
	} {
		o, err := parseClusterURL(c.url)
		if c.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantError) || strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: error %v, want one saying %q without the password", c.url, err, c.wantError)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if !slices.Equal(o.Addrs, c.addrs) || o.Username != c.user || o.Password != c.pw || (o.TLSConfig != nil) != c.tls {
			t.Errorf("%s: addrs %v, user %q, password %q, TLS %v; want %v, %q, %q, %v", c.url, o.Addrs, o.Username, o.Password, o.TLSConfig != nil, c.addrs, c.user, c.pw, c.tls)
		}
	}
}
