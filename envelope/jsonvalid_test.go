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
