package envelope

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

type orderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

func TestNewDefaults(t *testing.T) {
	before := time.Now()
	e, err := New("order.placed", orderPlaced{ID: "o-1", Total: 42})
	if err != nil {
		t.Fatal(err)
	}
	u, err := uuid.Parse(e.ID)
	if err != nil || u.Version() != 7 || u.String() != e.ID {
		t.Errorf("id %q is not a canonical UUIDv7 (%v)", e.ID, err)
	}
	if e.Source != DefaultSource || e.Version != 1 || e.Type != "order.placed" {
		t.Errorf("defaults: %+v", e)
	}
	if e.Time.Location() != time.UTC || e.Time.Before(before.Add(-time.Second)) || e.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v is not now in UTC", e.Time)
	}
	if string(e.Data) != `{"id":"o-1","total":42}` {
		t.Errorf("data %s", e.Data)
	}
	var got orderPlaced
	if err := e.Bind(&got); err != nil || got != (orderPlaced{"o-1", 42}) {
		t.Errorf("Bind: %+v, %v", got, err)
	}
}

func TestNewIDsAreOrdered(t *testing.T) {
	prev := NewID()
	for range 1000 {
		id := NewID()
		if id <= prev {
			t.Fatalf("ids not increasing: %s then %s", prev, id)
		}
		prev = id
	}
}

func TestNewOptions(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	e, err := New("order.placed", nil,
		WithSource("checkout"), WithVersion(7), WithID(testID),
		WithTime(time.Date(2024, 7, 1, 13, 0, 0, 5, loc)),
		WithSubject("o-1"), WithDataSchema("urn:schema:order:7"),
		WithTraceContext("tp", "ts"),
		WithExtensions(map[string]string{"a": "1", "b": "2"}),
		WithExtension("correlationid", "c"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Envelope{ID: testID, Type: "order.placed", Version: 7, Source: "checkout",
		Time: time.Date(2024, 7, 1, 12, 0, 0, 5, time.UTC), Subject: "o-1", DataSchema: "urn:schema:order:7",
		Data: json.RawMessage("null"), TraceParent: "tp", TraceState: "ts",
		Extensions: map[string]string{"a": "1", "b": "2", "correlationid": "c"}}
	if d := diff(e, want); d != "" {
		t.Error(d)
	}
	if e.Time.Location() != time.UTC {
		t.Errorf("WithTime did not convert to UTC: %v", e.Time)
	}
}

func TestNewRaw(t *testing.T) {
	e, err := NewRaw("x", json.RawMessage(" [1, 2]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Data) != "[1, 2]" {
		t.Errorf("data %q, want surrounding white space trimmed, inside kept", e.Data)
	}
	e, err = NewRaw("x", nil)
	if err != nil || e.Data != nil {
		t.Errorf("no data: %v %v", e, err)
	}
	b, _ := e.Encode()
	if strings.Contains(string(b), `"data"`) {
		t.Errorf("event without data encodes a data attribute: %s", b)
	}
	if _, err := NewRaw("x", json.RawMessage(`{"a":`)); !errors.Is(err, ErrSyntax) {
		t.Errorf("invalid raw data: got %v, want ErrSyntax", err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name    string
		typ     string
		payload any
		opts    []Option
		err     error
		field   string
	}{
		{"empty type", "", 1, nil, ErrMissingField, "type"},
		{"empty source", "t", 1, []Option{WithSource("")}, ErrMissingField, "source"},
		{"version 0", "t", 1, []Option{WithVersion(0)}, ErrInvalidField, "version"},
		{"version too big", "t", 1, []Option{WithVersion(MaxVersion + 1)}, ErrInvalidField, "version"},
		{"bad id", "t", 1, []Option{WithID("abc")}, ErrInvalidField, "id"},
		{"uppercase id", "t", 1, []Option{WithID(strings.ToUpper(testID))}, ErrInvalidField, "id"},
		{"extension name", "t", 1, []Option{WithExtension("Bad", "x")}, ErrInvalidField, "Bad"},
		{"reserved extension", "t", 1, []Option{WithExtension("type", "x")}, ErrInvalidField, "type"},
		{"invalid UTF-8 type", "t\xff", 1, nil, ErrInvalidField, "type"},
		{"invalid UTF-8 extension", "t", 1, []Option{WithExtension("x", "\xff")}, ErrInvalidField, "x"},
		{"time year 10000", "t", 1, []Option{WithTime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}, ErrInvalidField, "time"},
		{"relative dataschema", "t", 1, []Option{WithDataSchema("/x")}, ErrInvalidField, "dataschema"},
		{"unmarshalable payload", "t", make(chan int), nil, ErrInvalidField, "data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.typ, tt.payload, tt.opts...)
			if !errors.Is(err, tt.err) {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("got %v, want field %q", err, tt.field)
			}
		})
	}
	var ute *json.UnsupportedTypeError
	if _, err := New("t", make(chan int)); !errors.As(err, &ute) {
		t.Errorf("the json.Marshal error is not reachable: %v", err)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	e := &Envelope{Version: 0, Extensions: map[string]string{"Bad": "x"}, Data: json.RawMessage("{")}
	err := e.Validate()
	for _, want := range []string{`"id"`, `"type"`, `"source"`, `"version"`, `"time"`, `"Bad"`, `"data"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, does not mention %s", err, want)
		}
	}
	if _, err := e.Encode(); !errors.Is(err, ErrMissingField) {
		t.Errorf("Encode of an invalid envelope: %v", err)
	}
	dst := []byte("prefix")
	out, err := e.AppendEncode(dst)
	if err == nil || string(out) != "prefix" {
		t.Errorf("AppendEncode on error = %q, %v; want dst unchanged", out, err)
	}
}

func TestEncodeEscapes(t *testing.T) {
	e, err := New("a\"b\\c\n\x00\x1f é 😀 \u2028 <&>", nil, WithID(testID), WithTime(testTime))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) || !strings.Contains(string(b), `"type":"a\"b\\c\n\u0000\u001f é 😀 `+"\u2028"+` <&>"`) {
		t.Errorf("escaping: %s", b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["type"] != e.Type {
		t.Errorf("encoding/json reads type %q (%v)", m["type"], err)
	}
}

func TestEncodeTrimsData(t *testing.T) {
	e := &Envelope{ID: testID, Type: "t", Version: 1, Time: testTime, Source: "s", Data: json.RawMessage("{\"a\": 1}\n")}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), `"data":{"a": 1}}`) {
		t.Errorf("data not embedded verbatim minus trailing newline: %s", b)
	}
}

func TestBind(t *testing.T) {
	e := &Envelope{Data: json.RawMessage(`{"id":"o-1","total":"many"}`)}
	var o orderPlaced
	err := e.Bind(&o)
	var ute *json.UnmarshalTypeError
	if !errors.Is(err, ErrInvalidField) || !errors.As(err, &ute) {
		t.Errorf("Bind mismatch: %v", err)
	}
	if err := (&Envelope{}).Bind(&o); !errors.Is(err, ErrMissingField) {
		t.Errorf("Bind without data: %v", err)
	}
}

func TestClone(t *testing.T) {
	e, _ := New("t", map[string]int{"a": 1}, WithExtension("x", "1"))
	c := e.Clone()
	c.Data[2] = 'b'
	c.Extensions["x"] = "2"
	if string(e.Data) != `{"a":1}` || e.Extensions["x"] != "1" {
		t.Errorf("Clone shares memory: %s %v", e.Data, e.Extensions)
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	in := []byte(validJSON)
	e, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'x'
	}
	if e.Type != "order.placed" || string(e.Data) != `{"id":"o-1","total":42}` || e.Extensions["correlationid"] != "abc-123" {
		t.Errorf("decoded envelope changed with its input: %+v", e)
	}
}

func TestFieldErrorText(t *testing.T) {
	_, err := Decode([]byte(with("version", `0`)))
	const want = `envelope: "version": invalid attribute: must be an integer from 1 to 2147483647, got 0`
	if err == nil || err.Error() != want {
		t.Errorf("got %q\nwant %q", err, want)
	}
}
