package jsonscan_test

import (
	"testing"

	"github.com/durabus/durabus/internal/jsonscan"
)

// naive is Special one byte at a time.
func naive(b []byte, i int) int {
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return i
		}
	}
	return len(b)
}

func TestSpecialFindsEverySpecialByteAtEveryOffset(t *testing.T) {
	for c := 0; c < 256; c++ {
		for n := 0; n <= 24; n++ {
			for at := 0; at < n; at++ {
				b := make([]byte, n)
				for k := range b {
					b[k] = 'a' + byte(k%26)
				}
				b[at] = byte(c)
				for from := 0; from <= n; from++ {
					if got, want := jsonscan.Special(b, from), naive(b, from); got != want {
						t.Fatalf("byte %#x at %d of %d, from %d: got %d, want %d", c, at, n, from, got, want)
					}
				}
			}
		}
	}
}

func FuzzSpecial(f *testing.F) {
	f.Add([]byte(`{"a":"b\"c"}`), 0)
	f.Fuzz(func(t *testing.T, b []byte, from int) {
		if from < 0 || from > len(b) {
			return
		}
		if got, want := jsonscan.Special(b, from), naive(b, from); got != want {
			t.Fatalf("Special(%q, %d) = %d, want %d", b, from, got, want)
		}
	})
}

func BenchmarkSpecial(b *testing.B) {
	s := make([]byte, 256)
	for i := range s {
		s[i] = 'x'
	}
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if jsonscan.Special(s, 0) != len(s) {
			b.Fatal("found a special byte")
		}
	}
}
