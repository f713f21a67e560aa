package envelope

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// validPairs are the attributes of validJSON, in order.
var validPairs = [][2]string{
	{"specversion", `"1.0"`},
	{"id", `"` + testID + `"`},
	{"source", `"checkout"`},
	{"type", `"order.placed"`},
	{"time", `"2024-07-01T12:00:00.123456789Z"`},
	{"datacontenttype", `"application/json"`},
	{"version", `2`},
	{"traceparent", `"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`},
	{"tracestate", `"congo=t61rcWkgMzE"`},
	{"correlationid", `"abc-123"`},
	{"data", `{"id":"o-1","total":42}`},
}

// with returns validJSON with attribute key set to raw (a JSON value, put
// in place or added at the end), or removed when raw is "".
func with(key, raw string) string {
	var b strings.Builder
	b.WriteByte('{')
	found := false
	write := func(k, v string) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + k + `":` + v)
	}
	for _, p := range validPairs {
		if p[0] == key {
			found = true
			if raw != "" {
				write(key, raw)
			}
			continue
		}
		write(p[0], p[1])
	}
	if !found && raw != "" {
		write(key, raw)
	}
	b.WriteByte('}')
	return b.String()
}

func TestWithHelper(t *testing.T) {
	if got := with("type", `"order.placed"`); got != validJSON {
		t.Fatalf("validPairs out of sync with validJSON:\n%s\n%s", got, validJSON)
	}
}

func TestDecodeValid(t *testing.T) {
	e, err := Decode([]byte(validJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := &Envelope{
		ID: testID, Type: "order.placed", Version: 2, Time: testTime, Source: "checkout",
		Data:        json.RawMessage(`{"id":"o-1","total":42}`),
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:  "congo=t61rcWkgMzE",
		Extensions:  map[string]string{"correlationid": "abc-123"},
	}
	if d := diff(e, want); d != "" {
		t.Fatal(d)
	}
	out, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != validJSON {
		t.Errorf("Encode(Decode(x)) != x:\n got %s\nwant %s", out, validJSON)
	}
}

// DecodeOwned gives what Decode gives, reading the input in place: Data is
// a slice of the input, and changing it through the Envelope changes no
// attribute. Its size limit is Decode's.
func TestDecodeOwned(t *testing.T) {
	in := []byte(validJSON)
	want, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decoder{}.DecodeOwned(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(got, want); d != "" {
		t.Fatal(d)
	}
	if &got.Data[0] != &in[strings.Index(validJSON, `{"id":"o-1"`)] {
		t.Error("Data is not read in place")
	}
	for i := range got.Data {
		got.Data[i] = 'x'
	}
	if got.ID != testID || got.Type != "order.placed" || got.Extensions["correlationid"] != "abc-123" {
		t.Errorf("changing Data changed attributes: %+v", got)
	}
	if _, err := (Decoder{MaxSize: 100}).DecodeOwned([]byte(validJSON)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxSize 100: got %v, want ErrTooLarge", err)
	}
}

// Inputs that are accepted although they are not what Encode writes.
func TestDecodeLenient(t *testing.T) {
	wsJSON := "\n{ \"specversion\" : \"1.0\" ,\n\t\"id\":\"" + testID + "\"\r\n,\"source\"\t:\"s\", \"type\" :\"order.placed\" ," +
		" \"time\": \"2024-07-01T12:00:00Z\" , \"version\" : 2 ,\"data\" : { \"id\" : \"o-1\" ,\n\t\"total\":42 } \n}\n"
	tests := []struct {
		name  string
		in    string
		check func(*Envelope) bool
	}{
		{"version absent means 1", with("version", ""), func(e *Envelope) bool { return e.Version == 1 }},
		{"datacontenttype absent", with("datacontenttype", ""), func(e *Envelope) bool { return true }},
		{"datacontenttype with charset", with("datacontenttype", `"application/json; charset=utf-8"`), func(e *Envelope) bool { return true }},
		{"datacontenttype +json", with("datacontenttype", `"application/vnd.order+json"`), func(e *Envelope) bool { return true }},
		{"data absent", with("data", ""), func(e *Envelope) bool { return e.Data == nil }},
		{"data null", with("data", "null"), func(e *Envelope) bool { return string(e.Data) == "null" }},
		{"data string", with("data", `"hi"`), func(e *Envelope) bool { return string(e.Data) == `"hi"` }},
		{"data number", with("data", `-1.5e3`), func(e *Envelope) bool { return string(e.Data) == `-1.5e3` }},
		{"data array", with("data", `[1,[2,{"a":[]}]]`), func(e *Envelope) bool { return string(e.Data) == `[1,[2,{"a":[]}]]` }},
		{"number extension kept as text", with("count", `42`), func(e *Envelope) bool { return e.Extensions["count"] == "42" }},
		{"boolean extension kept as text", with("flag", `true`), func(e *Envelope) bool { return e.Extensions["flag"] == "true" }},
		{"null extension is absent", with("gone", `null`), func(e *Envelope) bool { _, ok := e.Extensions["gone"]; return !ok }},
		{"null traceparent is absent", with("traceparent", `null`), func(e *Envelope) bool { return e.TraceParent == "" }},
		{"time with offset becomes UTC", with("time", `"2024-07-01T14:00:00.5+02:00"`), func(e *Envelope) bool {
			return e.Time.Location().String() == "UTC" && e.Time.Hour() == 12 && e.Time.Nanosecond() == 5e8
		}},
		{"time without fraction", with("time", `"2024-07-01T12:00:00Z"`), func(e *Envelope) bool { return e.Time.Nanosecond() == 0 }},
		{"escaped strings", with("type", `"order\u002eplaced\t\"x\" \ud83d\ude00 \u00e9"`), func(e *Envelope) bool { return e.Type == "order.placed\t\"x\" 😀 é" }},
		{"escaped attribute name", strings.Replace(validJSON, `"type"`, `"\u0074ype"`, 1), func(e *Envelope) bool { return e.Type == "order.placed" }},
		{"surrounding white space", " \n\t" + validJSON + "\r\n ", func(e *Envelope) bool { return true }},
		{"white space everywhere", wsJSON, func(e *Envelope) bool {
			return e.Type == "order.placed" && e.Version == 2 && string(e.Data) == "{ \"id\" : \"o-1\" ,\n\t\"total\":42 }"
		}},
		{"uppercase hex in data is fine", with("data", `"\u00E9"`), func(e *Envelope) bool { return string(e.Data) == `"\u00E9"` }},
		{"lone surrogate inside data is left alone", with("data", `"\ud800"`), func(e *Envelope) bool { return string(e.Data) == `"\ud800"` }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v\ninput: %s", err, tt.in)
			}
			if !tt.check(e) {
				t.Errorf("unexpected result %+v", e)
			}
			// Whatever Decode accepts, Encode writes and Decode reads back.
			out, err := e.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			again, err := Decode(out)
			if err != nil {
				t.Fatalf("Decode(Encode): %v", err)
			}
			if d := diff(e, again); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	deep := with("data", strings.Repeat("[", 20000)+strings.Repeat("]", 20000))
	tests := []struct {
		name  string
		in    string
		err   error
		field string
	}{
		// whole input
		{"empty input", ``, ErrSyntax, ""},
		{"white space only", " \n", ErrSyntax, ""},
		{"not an object", `[1,2]`, ErrSyntax, ""},
		{"null", `null`, ErrSyntax, ""},
		{"truncated", validJSON[:len(validJSON)-1], ErrSyntax, "data"},
		{"trailing garbage", validJSON + `x`, ErrSyntax, ""},
		{"two objects", validJSON + validJSON, ErrSyntax, ""},
		{"trailing comma", strings.TrimSuffix(validJSON, "}") + `,}`, ErrSyntax, ""},
		{"missing colon", strings.Replace(validJSON, `"type":`, `"type" `, 1), ErrSyntax, "type"},
		{"single quotes", strings.Replace(validJSON, `"type":"order.placed"`, `'type':'order.placed'`, 1), ErrSyntax, ""},
		{"unterminated name", `{"type`, ErrSyntax, ""},
		{"too large", with("data", `"`+strings.Repeat("x", DefaultMaxSize)+`"`), ErrTooLarge, ""},
		{"deeply nested data", deep, ErrSyntax, "data"},
		{"unclosed nested data", `{"data":` + strings.Repeat("[", 100000), ErrSyntax, "data"},
		// required attributes
		{"no specversion", with("specversion", ""), ErrMissingField, "specversion"},
		{"no id", with("id", ""), ErrMissingField, "id"},
		{"no type", with("type", ""), ErrMissingField, "type"},
		{"no source", with("source", ""), ErrMissingField, "source"},
		{"no time", with("time", ""), ErrMissingField, "time"},
		{"empty object", `{}`, ErrMissingField, "specversion"},
		// wrong JSON types
		{"type is a number", with("type", `1`), ErrFieldType, "type"},
		{"id is null", with("id", `null`), ErrFieldType, "id"},
		{"time is a number", with("time", `1719835200`), ErrFieldType, "time"},
		{"version is a string", with("version", `"2"`), ErrFieldType, "version"},
		{"version is null", with("version", `null`), ErrFieldType, "version"},
		{"version is boolean", with("version", `true`), ErrFieldType, "version"},
		{"source is an object", with("source", `{"a":1}`), ErrFieldType, "source"},
		{"subject is an array", with("subject", `["a"]`), ErrFieldType, "subject"},
		{"extension is an object", with("correlationid", `{"a":"b"}`), ErrFieldType, "correlationid"},
		{"extension is an array", with("tags", `["a"]`), ErrFieldType, "tags"},
		// invalid values
		{"specversion 0.3", with("specversion", `"0.3"`), ErrInvalidField, "specversion"},
		{"specversion 1", with("specversion", `"1"`), ErrInvalidField, "specversion"},
		{"empty type", with("type", `""`), ErrInvalidField, "type"},
		{"empty source", with("source", `""`), ErrInvalidField, "source"},
		{"id not a UUID", with("id", `"order-1"`), ErrInvalidField, "id"},
		{"id uppercase", with("id", `"0190C1B2-7F3A-7C3E-9D2B-5F8E1A2B3C4D"`), ErrInvalidField, "id"},
		{"id without dashes", with("id", `"0190c1b27f3a7c3e9d2b5f8e1a2b3c4d"`), ErrInvalidField, "id"},
		{"id in braces", with("id", `"{0190c1b2-7f3a-7c3e-9d2b-5f8e1a2b3c4d}"`), ErrInvalidField, "id"},
		{"nil UUID", with("id", `"00000000-0000-0000-0000-000000000000"`), ErrInvalidField, "id"},
		{"empty id", with("id", `""`), ErrInvalidField, "id"},
		{"version 0", with("version", `0`), ErrInvalidField, "version"},
		{"version negative", with("version", `-1`), ErrInvalidField, "version"},
		{"version fraction", with("version", `1.5`), ErrInvalidField, "version"},
		{"version 1.0", with("version", `1.0`), ErrInvalidField, "version"},
		{"version exponent", with("version", `1e2`), ErrInvalidField, "version"},
		{"version too big", with("version", `2147483648`), ErrInvalidField, "version"},
		{"version huge", with("version", `99999999999999999999999`), ErrInvalidField, "version"},
		{"version leading zero", with("version", `01`), ErrSyntax, "version"},
		{"time not RFC 3339", with("time", `"July 1st"`), ErrInvalidField, "time"},
		{"time without zone", with("time", `"2024-07-01T12:00:00"`), ErrInvalidField, "time"},
		{"time date only", with("time", `"2024-07-01"`), ErrInvalidField, "time"},
		{"time month 13", with("time", `"2024-13-01T12:00:00Z"`), ErrInvalidField, "time"},
		{"zero time", with("time", `"0001-01-01T00:00:00Z"`), ErrInvalidField, "time"},
		{"time before year 0 in UTC", with("time", `"0000-01-01T00:00:00+01:00"`), ErrInvalidField, "time"},
		{"datacontenttype text", with("datacontenttype", `"text/plain"`), ErrInvalidField, "datacontenttype"},
		{"dataschema relative", with("dataschema", `"schemas/order"`), ErrInvalidField, "dataschema"},
		{"data_base64", with("data_base64", `"aGk="`), ErrInvalidField, "data_base64"},
		{"extension name uppercase", with("correlationId", `"x"`), ErrInvalidField, "correlationId"},
		{"extension name with dash", with("trace-id", `"x"`), ErrInvalidField, "trace-id"},
		{"extension name too long", with("abcdefghijklmnopqrstu", `"x"`), ErrInvalidField, "abcdefghijklmnopqrstu"},
		{"empty extension name", with("", `"x"`), ErrInvalidField, ""},
		{"lone surrogate in type", with("type", `"order\ud800"`), ErrInvalidField, "type"},
		{"reversed surrogates", with("type", `"\udc00\ud800"`), ErrInvalidField, "type"},
		// malformed values
		{"invalid data", with("data", `{"a":}`), ErrSyntax, "data"},
		{"data mismatched brackets", strings.Replace(validJSON, `"total":42}`, `"total":42]`, 1), ErrSyntax, "data"},
		{"data bare word", strings.Replace(validJSON, `"data":{"id":"o-1","total":42}`, `"data":tru`, 1), ErrSyntax, "data"},
		{"data missing", strings.Replace(validJSON, `"data":{"id":"o-1","total":42}`, `"data":`, 1), ErrSyntax, "data"},
		{"invalid UTF-8 in data", strings.Replace(validJSON, `"o-1"`, "\"o-\xff\"", 1), ErrSyntax, "data"},
		{"invalid UTF-8 in type", strings.Replace(validJSON, `order.placed`, "order\xc3.placed", 1), ErrSyntax, "type"},
		{"control character in string", strings.Replace(validJSON, `order.placed`, "order\nplaced", 1), ErrSyntax, "type"},
		{"bad escape", with("type", `"order\x"`), ErrSyntax, "type"},
		{"bad \\u escape", with("type", `"order\u12G4"`), ErrSyntax, "type"},
		{"bad literal", with("gone", `nul`), ErrSyntax, "gone"},
		{"bad number extension", with("count", `-`), ErrSyntax, "count"},
		{"missing value", strings.Replace(validJSON, `"type":"order.placed"`, `"type":`, 1), ErrSyntax, "type"},
		// duplicates
		{"duplicate type", strings.Replace(validJSON, `"type":"order.placed"`, `"type":"order.placed","type":"order.paid"`, 1), ErrDuplicateField, "type"},
		{"duplicate data", strings.TrimSuffix(validJSON, "}") + `,"data":1}`, ErrDuplicateField, "data"},
		{"duplicate extension", strings.TrimSuffix(validJSON, "}") + `,"correlationid":"x"}`, ErrDuplicateField, "correlationid"},
		{"duplicate null extension", strings.TrimSuffix(validJSON, "}") + `,"x":null,"x":"y"}`, ErrDuplicateField, "x"},
		{"duplicate via escape", strings.Replace(validJSON, `"type":"order.placed"`, `"type":"order.placed","\u0074ype":"x"`, 1), ErrDuplicateField, "type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", e)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("error %q does not match %q", err, tt.err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q is not a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (error %q)", fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), "envelope: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDecoderMaxSize(t *testing.T) {
	small := Decoder{MaxSize: 100}
	if _, err := small.Decode([]byte(validJSON)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxSize 100: got %v, want ErrTooLarge", err)
	}
	if _, err := (Decoder{MaxSize: len(validJSON)}).Decode([]byte(validJSON)); err != nil {
		t.Errorf("input of exactly MaxSize: %v", err)
	}
	big := with("data", `"`+strings.Repeat("x", 2*DefaultMaxSize)+`"`)
	if _, err := (Decoder{MaxSize: -1}).Decode([]byte(big)); err != nil {
		t.Errorf("no limit: %v", err)
	}
	if _, err := Decode([]byte(big)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("default limit: got %v, want ErrTooLarge", err)
	}
}

// A 10 MiB input of nested brackets is refused cleanly, by size or by
// nesting depth, without exhausting the stack.
func TestDecodeHostileNesting(t *testing.T) {
	huge := `{"data":` + strings.Repeat("[", 10<<20) + strings.Repeat("]", 10<<20) + `}`
	if _, err := Decode([]byte(huge)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("10 MiB: got %v, want ErrTooLarge", err)
	}
	if _, err := (Decoder{MaxSize: -1}).Decode([]byte(huge)); !errors.Is(err, ErrSyntax) {
		t.Errorf("10 MiB without limit: got %v, want ErrSyntax", err)
	}
}

func TestUnmarshalJSON(t *testing.T) {
	var wrapper struct {
		Event *Envelope `json:"event"`
	}
	if err := json.Unmarshal([]byte(`{"event":`+validJSON+`}`), &wrapper); err != nil {
		t.Fatal(err)
	}
	if wrapper.Event.Type != "order.placed" {
		t.Fatalf("got %+v", wrapper.Event)
	}
	out, err := json.Marshal(wrapper)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"event":` + validJSON + `}`; string(out) != want {
		t.Errorf("json.Marshal:\n got %s\nwant %s", out, want)
	}
}
