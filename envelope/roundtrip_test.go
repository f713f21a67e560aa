package envelope

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Property: for random valid envelopes — random types, versions, times,
// extension maps, unicode and control characters, nested data of every JSON
// kind — Decode(Encode(e)) equals e.
func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		e := randomEnvelope(r)
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("case %d: Encode: %v\n%+v", i, err, e)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("case %d: Decode: %v\n%s", i, err, b)
		}
		if d := diff(got, e); d != "" {
			t.Fatalf("case %d: %s\n%s", i, d, b)
		}
		// encoding/json agrees that the output is JSON and reads the same type.
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || m["type"] != e.Type {
			t.Fatalf("case %d: encoding/json: %v, type %q\n%s", i, err, m["type"], b)
		}
	}
}

var alphabet = []rune("abcXYZ09 ._-:/\"\\\n\t\x00\x7féü€😀\u2028\ufffd<>&'")

func randomString(r *rand.Rand, max int) string {
	n := r.IntN(max + 1)
	var b strings.Builder
	for range n {
		b.WriteRune(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

func randomEnvelope(r *rand.Rand) *Envelope {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(r.Uint32())
	}
	u[0] |= 1 // never the nil UUID
	e := &Envelope{
		ID:      u.String(),
		Type:    "t" + randomString(r, 30),
		Version: 1 + r.IntN(MaxVersion),
		Time:    time.Unix(r.Int64N(253402300799), r.Int64N(1e9)).UTC(),
		Source:  "s" + randomString(r, 20),
	}
	if r.IntN(2) == 0 {
		e.Version = 1 + r.IntN(5)
	}
	if r.IntN(3) == 0 {
		e.Subject = randomString(r, 10)
	}
	if r.IntN(4) == 0 {
		e.DataSchema = "https://example.com/schemas/" + strconv.Itoa(r.IntN(100))
	}
	if r.IntN(2) == 0 {
		e.TraceParent = "00-" + strings.Repeat("ab", 16) + "-" + strings.Repeat("cd", 8) + "-01"
		e.TraceState = randomString(r, 10)
	}
	if n := r.IntN(6); n > 0 {
		e.Extensions = make(map[string]string, n)
		for range n {
			name := make([]byte, 1+r.IntN(maxExtNameLen))
			for j := range name {
				name[j] = "abcdefghijklmnopqrstuvwxyz0123456789"[r.IntN(36)]
			}
			if isReserved(string(name)) {
				continue
			}
			e.Extensions[string(name)] = randomString(r, 15)
		}
	}
	if r.IntN(8) != 0 {
		data, err := json.Marshal(randomValue(r, 0))
		if err != nil {
			panic(err)
		}
		e.Data = data
	}
	return e
}

func randomValue(r *rand.Rand, depth int) any {
	k := r.IntN(7)
	if depth > 4 {
		k = r.IntN(5)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return r.NormFloat64() * 1e6
	case 3:
		return r.Int64()
	case 4:
		return randomString(r, 20)
	case 5:
		a := make([]any, r.IntN(5))
		for i := range a {
			a[i] = randomValue(r, depth+1)
		}
		return a
	default:
		m := make(map[string]any)
		for range r.IntN(5) {
			m[randomString(r, 8)] = randomValue(r, depth+1)
		}
		return m
	}
}
