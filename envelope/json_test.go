package envelope

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var validJSONCases = []string{
	``, ` `, `{}`, `[]`, `{ }`, `[ ]`, `1`, `-0`, `-`, `01`, `1.`, `1.5e`, `1e+5`, `1E-05`, `.5`, `+1`,
	`"a"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"\x"`, `"\u12"`, "\"\x01\"", "\"\xff\"", `"abc`,
	`true`, `tru`, `false`, `null`, `nul`, `nulll`, `[1,]`, `[,1]`, `[1 2]`, `{"a":1,}`, `{"a" 1}`,
	`{"a":1 "b":2}`, `{1:2}`, `{"a":}`, `{"a":[1,{"b":null}],"c":{}}`, `[}`, `{]`, `[[]]]`, `[[[]]`,
	` [ 1 , "x" , { "k" : [ ] } ] `, `{} {}`, `1 2`, "\t\n\r[]\r\n", `"é"`, "\"\u2028\"", `[-1.0e-2]`,
}

// isValidJSON agrees with json.Valid && utf8.Valid.
func TestValidJSONMatchesStdlib(t *testing.T) {
	for _, c := range validJSONCases {
		want := json.Valid([]byte(c)) && utf8.ValidString(c)
		if got := isValidJSON([]byte(c)); got != want {
			t.Errorf("isValidJSON(%q) = %v, want %v", c, got, want)
		}
	}
}

func TestValidJSONDepth(t *testing.T) {
	for _, n := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, open := range []string{"[", `{"a":`} {
			close := map[string]string{"[": "]", `{"a":`: "}"}[open]
			in := []byte(strings.Repeat(open, n) + "1" + strings.Repeat(close, n))
			if got, want := isValidJSON(in), json.Valid(in); got != want {
				t.Errorf("depth %d of %s: validJSON %v, json.Valid %v", n, open, got, want)
			}
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, c := range validJSONCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := json.Valid(in) && utf8.Valid(in)
		if got := isValidJSON(in); got != want {
			t.Fatalf("isValidJSON(%q) = %v, json.Valid && utf8.Valid = %v", in, got, want)
		}
	})
}

// naive is special one byte at a time.
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
					if got, want := special(b, from), naive(b, from); got != want {
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
		if got, want := special(b, from), naive(b, from); got != want {
			t.Fatalf("special(%q, %d) = %d, want %d", b, from, got, want)
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
		if special(s, 0) != len(s) {
			b.Fatal("found a special byte")
		}
	}
}

// scanNumber agrees with encoding/json on what is a number, where it ends,
// and whether it is an integer.
func TestScanNumberMatchesStdlib(t *testing.T) {
	for _, c := range []string{"0", "-0", "1", "-", "01", "1.", "1.5", ".5", "+1", "1e", "1e+", "1e5", "1E-05",
		"-1.0e-2", "12345678901234567890", "0x1", "1.5e3.2", "--1", "1-2", "0.0", "9e999"} {
		end, integer, ok := scanNumber([]byte(c), 0)
		whole := ok && end == len(c)
		if want := json.Valid([]byte(c)); whole != want {
			t.Errorf("scanNumber(%q) = %d, %v: a whole number %v, json.Valid %v", c, end, ok, whole, want)
		}
		if whole && integer == strings.ContainsAny(c, ".eE") {
			t.Errorf("scanNumber(%q): integer %v", c, integer)
		}
	}
}
