package redistest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// fillValueSize is the size of each value FillMemory writes.
const fillValueSize = 16 << 10

// SetMaxMemory sets maxmemory (in bytes; 0 means no limit) and
// maxmemory-policy ("noeviction", "allkeys-lru", "volatile-ttl", ...) with
// CONFIG SET. A limit below the memory in use makes an evicting server evict
// at once, and a noeviction server refuse writes (OOM) until it is raised.
func (s *Server) SetMaxMemory(t testing.TB, maxBytes int64, policy string) {
	t.Helper()
	if _, err := command(s.Addr(), s.cfg.password, "CONFIG", "SET", "maxmemory", maxBytes, "maxmemory-policy", policy); err != nil {
		t.Fatalf("redistest: CONFIG SET maxmemory %d maxmemory-policy %s on %s: %v", maxBytes, policy, s.Addr(), err)
	}
}

// FillMemory writes 16 KiB strings under keyPrefix+"0", keyPrefix+"1", ...
// until the server is at its maxmemory: a write is refused with OOM
// (noeviction, or a volatile-* policy with nothing to evict), or the server
// evicts keys (evicted_keys in INFO stats grows; under allkeys-* policies
// these may be any keys, not only the filler). It returns the number of
// keys it wrote. It fails the test if maxmemory is 0, or if neither happens
// after twice maxmemory of data.
func (s *Server) FillMemory(t testing.TB, keyPrefix string) int {
	t.Helper()
	rc, err := dialRESP(s.Addr(), s.cfg.password)
	if err != nil {
		t.Fatalf("redistest: FillMemory %s: %v", s.Addr(), err)
	}
	defer rc.Close()
	v, err := rc.do("CONFIG", "GET", "maxmemory")
	if err != nil {
		t.Fatalf("redistest: FillMemory %s: CONFIG GET maxmemory: %v", s.Addr(), err)
	}
	maxBytes, _ := strconv.ParseInt(pairs(v)["maxmemory"], 10, 64)
	if maxBytes <= 0 {
		t.Fatalf("redistest: FillMemory %s: maxmemory is not set (call SetMaxMemory first)", s.Addr())
	}
	evicted := func() int64 {
		v, err := rc.do("INFO", "stats")
		if err != nil {
			t.Fatalf("redistest: FillMemory %s: INFO stats: %v", s.Addr(), err)
		}
		str, _ := v.(string)
		n, _ := strconv.ParseInt(parseInfo(str)["evicted_keys"], 10, 64)
		return n
	}
	before := evicted()
	value := strings.Repeat("x", fillValueSize)
	limit := int(2*maxBytes/fillValueSize) + 100
	for i := range limit {
		_, err := rc.do("SET", keyPrefix+strconv.Itoa(i), value)
		var re respError
		if errors.As(err, &re) && strings.HasPrefix(string(re), "OOM") {
			return i
		}
		if err != nil {
			t.Fatalf("redistest: FillMemory %s: SET: %v", s.Addr(), err)
		}
		if i%8 == 7 && evicted() > before {
			return i + 1
		}
	}
	t.Fatalf("redistest: FillMemory %s: wrote %d keys of %d bytes with maxmemory %d and saw no OOM and no eviction", s.Addr(), limit, fillValueSize, maxBytes)
	return 0
}
