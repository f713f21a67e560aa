package envelope_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/envelope"
)

type flat struct {
	N    int64   `json:"n"`
	T    int64   `json:"t"`
	S    string  `json:"s"`
	B    bool    `json:"b,omitempty"`
	I8   int8    `json:"i8"`
	I16  int16   `json:"i16"`
	I32  int32   `json:"i32"`
	I    int     `json:"i"`
	U8   uint8   `json:"u8"`
	U16  uint16  `json:"u16"`
	U32  uint32  `json:"u32"`
	U64  uint64  `json:"u64"`
	U    uint    `json:"u"`
	F32  float32 `json:"f32"`
	F64  float64 `json:"f64"`
	Bare string
	Col  color  `json:"col"`
	hid  string // unexported: ignored
	Skp  string `json:"-"`
}

type color string

// hid is never set by either decoder (encoding/json ignores unexported
// fields); same() compares it like every other field.
var _ = flat{}.hid

type (
	nested struct {
		A   string `json:"a"`
		Sub flat   `json:"sub"`
	}
	withTime struct {
		At time.Time `json:"at"`
	}
	withStringOpt struct {
		N int `json:"n,string"`
	}
	embedded struct {
		flat
		X int `json:"x"`
	}
	custom    struct{ V string }
	caseTwins struct {
		A string `json:"name"`
		B string `json:"Name"`
	}
	oddTag struct {
		A string `json:"a-b"`
	}
	withNumber struct {
		N json.Number `json:"n"`
	}
)

func (c *custom) UnmarshalJSON(b []byte) error { c.V = "custom:" + string(b); return nil }

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name string
		fast bool
	}{
		{"flat", envelope.NewDataDecoder[flat]().Fast()},
		{"empty struct", envelope.NewDataDecoder[struct{}]().Fast()},
		{"nested", !envelope.NewDataDecoder[nested]().Fast()},
		{"time field", !envelope.NewDataDecoder[withTime]().Fast()},
		{",string option", !envelope.NewDataDecoder[withStringOpt]().Fast()},
		{"embedded", !envelope.NewDataDecoder[embedded]().Fast()},
		{"UnmarshalJSON", !envelope.NewDataDecoder[custom]().Fast()},
		{"names equal but for case", !envelope.NewDataDecoder[caseTwins]().Fast()},
		{"tag name with punctuation", !envelope.NewDataDecoder[oddTag]().Fast()},
		{"json.Number", !envelope.NewDataDecoder[withNumber]().Fast()},
		{"not a struct", !envelope.NewDataDecoder[map[string]int]().Fast()},
	} {
		if !c.fast {
			t.Errorf("%s: wrong plan", c.name)
		}
	}
}

// same decodes in with the DataDecoder and with json.Unmarshal into fresh
// values and fails when the results or the errors' presence differ.
func same[T any](t *testing.T, in string) {
	t.Helper()
	var got, want T
	gerr := envelope.NewDataDecoder[T]().Unmarshal([]byte(in), &got)
	werr := json.Unmarshal([]byte(in), &want)
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Errorf("%s: error %v, json.Unmarshal %v", in, gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", in, got, want)
	}
}

var cases = []string{
	`{"n":1,"t":2,"s":"hello"}`,
	` { "n" : -3 , "s" : "" , "b" : true } `,
	"{\n\t\"n\":0\r\n}",
	`{}`, `{ }`, `null`, ``, ` `, `[]`, `"s"`, `1`,
	`{"n":1}x`, `{"n":1}{}`, `{"n":1,}`, `{,}`, `{"n" 1}`, `{"n":}`, `{"n":1 "t":2}`,
	`{"n":1`, `{"n"`, `{"`, `{`,
	`{"n":01}`, `{"n":-}`, `{"n":1.}`, `{"n":.5}`, `{"n":+1}`, `{"n":1e}`, `{"n":-0}`,
	`{"n":1.0}`, `{"n":1e2}`, `{"n":"1"}`, `{"n":true}`, `{"n":null}`, `{"n":nul}`,
	`{"n":9223372036854775807}`, `{"n":9223372036854775808}`, `{"n":-9223372036854775808}`,
	`{"i8":127}`, `{"i8":128}`, `{"i8":-128}`, `{"i8":-129}`,
	`{"i16":32768}`, `{"i32":2147483648}`, `{"i":-1}`,
	`{"u8":255}`, `{"u8":256}`, `{"u8":-1}`, `{"u8":-0}`, `{"u16":65536}`, `{"u32":4294967296}`,
	`{"u64":18446744073709551615}`, `{"u64":18446744073709551616}`, `{"u":3}`,
	`{"f32":1.5}`, `{"f32":3.5e38}`, `{"f32":1e39}`, `{"f64":-0}`, `{"f64":1e308}`, `{"f64":1e309}`,
	`{"f64":2.2250738585072011e-308}`, `{"f64":1E+2}`, `{"f64":1e-2}`, `{"f64":"1"}`,
	`{"s":"a\"b"}`, `{"s":"a\\b"}`, `{"s":"\u00e9"}`, `{"s":"é ü 日本"}`, "{\"s\":\"\xff\"}",
	"{\"s\":\"a\x01\"}", "{\"s\":\"\x7f\"}", `{"s":"line` + "\u2028" + `"}`,
	`{"s":1}`, `{"s":null}`, `{"s":"a","s":"b"}`, `{"s":"a","s":null}`, `{"s":["a"]}`, `{"s":{}}`,
	`{"b":false}`, `{"b":true,"b":false}`, `{"b":tru}`, `{"b":"true"}`, `{"b":0}`,
	`{"N":1}`, `{"S":"upper"}`, `{"Bare":"x"}`, `{"bare":"folded"}`, `{"BARE":"x"}`,
	`{"hid":"x"}`, `{"Skp":"x"}`, `{"-":"x"}`, `{"unknown":1,"n":2}`, `{"unknown":[1,{"a":2}],"n":2}`,
	`{"col":"red"}`, `{"n\u0000":1}`, `{"\u006e":5}`, `{"n":"abc"}`, `{"n":""}`, `{"n":"12"}`,
	`{"n":1,"t":2,"s":"` + strings.Repeat("x", 256) + `"}`,
}

func TestMatchesEncodingJSON(t *testing.T) {
	for _, in := range cases {
		same[flat](t, in)
		same[struct{}](t, in)
		same[nested](t, in)
		same[custom](t, in)
		same[withNumber](t, in)
	}
}

// FuzzMatchesEncodingJSON: for any input, the DataDecoder's value and error
// are json.Unmarshal's.
func FuzzMatchesEncodingJSON(f *testing.F) {
	for _, c := range cases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, in string) {
		same[flat](t, in)
		same[struct {
			A string  `json:"a"`
			B float64 `json:"b"`
			C uint8   `json:"c"`
		}](t, in)
	})
}

func ExampleDataDecoder() {
	type Order struct {
		ID    string  `json:"id"`
		Total float64 `json:"total"`
	}
	dec := envelope.NewDataDecoder[Order]()
	var o Order
	err := dec.Unmarshal([]byte(`{"id":"o-1","total":9.5}`), &o)
	fmt.Println(o, err, dec.Fast())
	// Output: {o-1 9.5} <nil> true
}

func BenchmarkDataDecoder(b *testing.B) {
	in := []byte(`{"n":123456,"t":1763700000000000000,"s":"` + strings.Repeat("x", 220) + `"}`)
	type event struct {
		N int64  `json:"n"`
		T int64  `json:"t"`
		S string `json:"s"`
	}
	b.Run("DataDecoder", func(b *testing.B) {
		dec := envelope.NewDataDecoder[event]()
		b.ReportAllocs()
		for b.Loop() {
			var v event
			if err := dec.Unmarshal(in, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v event
			if err := json.Unmarshal(in, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
