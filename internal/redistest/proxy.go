package redistest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// LeakOptions are the goleak options of a test binary that uses proxies:
// toxiproxy v2.5.0 can leave a toxic's goroutine blocked on a send after
// its proxy stopped (seen under CPU load), which is toxiproxy's and not the
// code under test's.
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run")}
}

// proxySeq numbers proxies so each has a distinct name.
var proxySeq atomic.Int64

// Proxy is an in-process toxiproxy between clients and one upstream address,
// for injecting network faults. Its methods are safe for concurrent use.
//
// Toxics apply to open connections as well as new ones. Toxics are replaced,
// not stacked: calling Latency twice leaves the second latency.
type Proxy struct {
	tp   *toxiproxy.Proxy
	addr string
	mu   sync.Mutex // makes replacing a toxic atomic
}

// StartProxy starts a proxy on a free 127.0.0.1 port that forwards every
// connection to upstream, with no toxics. It is stopped in t.Cleanup, which
// closes all its connections.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := newProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.tp.Stop)
	return p
}

// newProxy starts a proxy like StartProxy; the caller stops it (p.tp.Stop).
func newProxy(upstream string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	name := fmt.Sprintf("redistest-%d", proxySeq.Add(1))
	tp := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := tp.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start proxy to %s: %w", upstream, err)
	}
	return &Proxy{tp: tp, addr: tp.Listen}, nil
}

// Addr returns the proxy's listen address, "127.0.0.1:PORT"; point clients
// here. It does not change across Disable and Enable.
func (p *Proxy) Addr() string { return p.addr }

// Blackhole silently drops all data in both directions while connections stay
// open, like a half-open TCP connection after a network partition: reads
// block until the reader's own timeout. New connections are accepted and
// black-holed too. Heal ends it and closes the black-holed connections.
func (p *Proxy) Blackhole(t testing.TB) {
	t.Helper()
	p.addBoth(t, "blackhole", "timeout", map[string]any{"timeout": 0})
}

// ResetPeer makes each connection, old or new, end as soon as data arrives in
// either direction; connections opened from now on end with a TCP RST. Heal
// ends it.
func (p *Proxy) ResetPeer(t testing.TB) {
	t.Helper()
	p.addBoth(t, "reset", "reset_peer", map[string]any{"timeout": 0})
}

// Latency delays all data from upstream to the client by d, plus or minus a
// random jitter, which adds d to every round trip.
func (p *Proxy) Latency(t testing.TB, d, jitter time.Duration) {
	t.Helper()
	p.add(t, "latency", "latency", "downstream", map[string]any{
		"latency": d.Milliseconds(),
		"jitter":  jitter.Milliseconds(),
	})
}

// Bandwidth limits each connection to kbps kilobytes per second in each
// direction.
func (p *Proxy) Bandwidth(t testing.TB, kbps int64) {
	t.Helper()
	p.addBoth(t, "bandwidth", "bandwidth", map[string]any{"rate": kbps})
}

// Heal removes all toxics. Connections black-holed by Blackhole are closed
// (the timeout toxic's cleanup closes them); others carry on.
func (p *Proxy) Heal(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tp.Toxics.ResetToxics(context.Background())
}

// Disable closes all connections and stops listening, so new connections are
// refused. Disabling a disabled proxy does nothing.
func (p *Proxy) Disable(t testing.TB) {
	t.Helper()
	p.tp.Stop()
}

// Enable listens again on the same address. If the port is briefly busy it
// retries for up to 5 s. Enabling an enabled proxy does nothing.
func (p *Proxy) Enable(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := p.tp.Start()
		if err == nil || err == toxiproxy.ErrProxyAlreadyStarted {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: enable proxy on %s: %v", p.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Proxy) addBoth(t testing.TB, name, typ string, attrs map[string]any) {
	t.Helper()
	p.add(t, name+"_up", typ, "upstream", attrs)
	p.add(t, name+"_down", typ, "downstream", attrs)
}

// add adds a toxic with toxicity 1, replacing one of the same name.
func (p *Proxy) add(t testing.TB, name, typ, stream string, attrs map[string]any) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	body, err := json.Marshal(map[string]any{
		"name":       name,
		"type":       typ,
		"stream":     stream,
		"toxicity":   1.0,
		"attributes": attrs,
	})
	if err != nil {
		t.Fatalf("redistest: %s toxic: %v", typ, err)
	}
	if p.tp.Toxics.GetToxic(name) != nil {
		if err := p.tp.Toxics.RemoveToxic(context.Background(), name); err != nil {
			t.Fatalf("redistest: replace %s toxic: %v", typ, err)
		}
	}
	if _, err := p.tp.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
		t.Fatalf("redistest: add %s toxic: %v", typ, err)
	}
}
