package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

const (
	// SpecVersion is the CloudEvents version written in "specversion"; it is
	// the only one Decode accepts.
	SpecVersion = "1.0"
	// ContentType is written in "datacontenttype": data is always JSON.
	ContentType = "application/json"
	// DefaultSource is the "source" New uses when WithSource is not given.
	DefaultSource = "durabus"
	// DefaultMaxSize is the size limit of Decode and of a zero Decoder:
	// 1 MiB of encoded JSON.
	DefaultMaxSize = 1 << 20
	// MaxVersion is the largest schema version accepted (2³¹−1).
	MaxVersion = 1<<31 - 1
	// maxExtNameLen is the longest extension name (CloudEvents advises 20).
	maxExtNameLen = 20
)

// Envelope is one event as it travels on the wire: a CloudEvents 1.0
// structured-mode JSON event whose data is JSON.
//
// specversion ("1.0") and datacontenttype ("application/json") are constants
// and have no field. Optional string attributes are omitted from the JSON
// when empty. An Envelope is a plain value: reading it from several
// goroutines is safe, changing it while others read is not (use Clone).
type Envelope struct {
	// ID is the event id, a UUID in canonical lowercase form
	// ("0190c1b2-…"); New makes a UUIDv7. It is the dedupe key.
	ID string
	// Type is the stable event type name, e.g. "order.placed". Required.
	Type string
	// Version is the schema version of Data, ≥ 1. Written as the integer
	// extension attribute "version"; when absent on decode it is 1.
	Version int
	// Time is the publish time. Encoded in UTC as RFC 3339 with nine
	// fractional digits; decoded values are in UTC. Required, not zero,
	// years 0000–9999.
	Time time.Time
	// Source identifies the publishing service. Required; New defaults it
	// to DefaultSource.
	Source string
	// Subject is the optional CloudEvents "subject".
	Subject string
	// DataSchema is the optional CloudEvents "dataschema", an absolute URI.
	DataSchema string
	// Data is the JSON payload, embedded verbatim in the encoded event
	// (any JSON value: object, array, string, number, true, false, null).
	// nil means the event has no "data" attribute.
	Data json.RawMessage
	// TraceParent and TraceState are the W3C trace context (the CloudEvents
	// distributed-tracing extension), omitted when empty. They are carried
	// as opaque strings; the tracing middleware parses them.
	TraceParent string
	TraceState  string
	// Extensions holds the other extension attributes, e.g.
	// "correlationid". Names are 1–20 characters of a–z and 0–9 and must
	// not be one of the attributes above. Values are strings; a number or
	// boolean extension in decoded input is kept as its JSON text ("42",
	// "true") and encoded back as a string. May be nil.
	Extensions map[string]string
}

// Option sets an optional attribute in New and NewRaw. Values are checked
// once, when the envelope is complete.
type Option func(*Envelope)

// WithSource sets "source" (default DefaultSource).
func WithSource(source string) Option { return func(e *Envelope) { e.Source = source } }

// WithVersion sets the schema version of the data (default 1).
func WithVersion(v int) Option { return func(e *Envelope) { e.Version = v } }

// WithTime sets the event time (default time.Now()); it is stored in UTC.
func WithTime(t time.Time) Option { return func(e *Envelope) { e.Time = t.UTC() } }

// WithID sets the event id (default a new UUIDv7 from NewID). It must be a
// UUID in canonical lowercase form.
func WithID(id string) Option { return func(e *Envelope) { e.ID = id } }

// WithSubject sets the CloudEvents "subject" (default none).
func WithSubject(s string) Option { return func(e *Envelope) { e.Subject = s } }

// WithDataSchema sets the CloudEvents "dataschema", an absolute URI
// (default none).
func WithDataSchema(uri string) Option { return func(e *Envelope) { e.DataSchema = uri } }

// WithTraceContext sets the W3C "traceparent" and "tracestate" (default
// none).
func WithTraceContext(traceparent, tracestate string) Option {
	return func(e *Envelope) { e.TraceParent, e.TraceState = traceparent, tracestate }
}

// WithExtension sets one extension attribute. The name must be 1–20
// characters of a–z and 0–9.
func WithExtension(name, value string) Option {
	return func(e *Envelope) {
		if e.Extensions == nil {
			e.Extensions = make(map[string]string)
		}
		e.Extensions[name] = value
	}
}

// WithExtensions copies every entry of m into the extensions.
func WithExtensions(m map[string]string) Option {
	return func(e *Envelope) {
		if len(m) == 0 {
			return
		}
		if e.Extensions == nil {
			e.Extensions = make(map[string]string, len(m))
		}
		maps.Copy(e.Extensions, m)
	}
}

// NewID returns a new UUIDv7 (time-ordered) in canonical lowercase form,
// the kind of id New gives events. Safe for concurrent use.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// New makes an envelope of type typ whose data is payload marshalled with
// encoding/json, with a new UUIDv7 id, the current time in UTC, version 1
// and source DefaultSource unless options say otherwise. The result is
// checked with Validate; errors are *FieldError.
func New(typ string, payload any, opts ...Option) (*Envelope, error) {
	data, err := json.Marshal(payload)
	if err != nil {
		return nil, &FieldError{Field: "data", Err: ErrInvalidField, detail: "cannot marshal payload", cause: err}
	}
	return newEnvelope(typ, data, opts)
}

// NewRaw is New for a payload that is already JSON. NewRaw keeps data (minus
// surrounding white space) without copying it: do not modify it afterwards.
// data must be valid JSON; nil means an event without data.
func NewRaw(typ string, data json.RawMessage, opts ...Option) (*Envelope, error) {
	if data != nil {
		data = bytes.Trim(data, " \t\r\n")
	}
	return newEnvelope(typ, data, opts)
}

func newEnvelope(typ string, data []byte, opts []Option) (*Envelope, error) {
	e := &Envelope{Type: typ, Version: 1, Source: DefaultSource, Data: data}
	for _, o := range opts {
		o(e)
	}
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Validate reports every rule e breaks, joined with errors.Join (nil when
// e is valid): these are the rules Decode enforces and Encode requires.
// Each joined error is a *FieldError.
func (e *Envelope) Validate() error {
	var errs []error
	add := func(err *FieldError) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkID(e.ID))
	add(checkRequiredString("type", e.Type))
	add(checkRequiredString("source", e.Source))
	add(checkVersion(e.Version))
	add(checkTime(e.Time))
	add(checkOptString("subject", e.Subject))
	add(checkDataSchema(e.DataSchema))
	add(checkOptString("traceparent", e.TraceParent))
	add(checkOptString("tracestate", e.TraceState))
	for name, v := range e.Extensions {
		add(checkExtName(name))
		add(checkOptString(name, v))
	}
	if e.Data != nil {
		add(checkData(e.Data))
	}
	return errors.Join(errs...)
}

// Bind unmarshals Data into v (a pointer) with encoding/json. An event
// without data gives a *FieldError matching ErrMissingField; data that
// does not fit v gives one matching ErrInvalidField that also wraps the
// encoding/json error.
func (e *Envelope) Bind(v any) error {
	if e.Data == nil {
		return fieldErr("data", ErrMissingField, "event has no data")
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return &FieldError{Field: "data", Err: ErrInvalidField, detail: "cannot unmarshal into " + typeName(v), cause: err}
	}
	return nil
}

// Clone returns a deep copy of e: its Data and Extensions are not shared.
func (e *Envelope) Clone() *Envelope {
	c := *e
	if e.Data != nil {
		c.Data = bytes.Clone(e.Data)
	}
	if e.Extensions != nil {
		c.Extensions = maps.Clone(e.Extensions)
	}
	return &c
}

func typeName(v any) string {
	if v == nil {
		return "nil"
	}
	return fmt.Sprintf("%T", v)
}

// reserved are the attribute names with a meaning of their own; they cannot
// be extensions.
func isReserved(name string) bool {
	switch name {
	case "specversion", "id", "type", "source", "time", "subject", "dataschema",
		"datacontenttype", "data", "version", "traceparent", "tracestate":
		return true
	}
	return false
}

func checkExtName(name string) *FieldError {
	if len(name) == 0 || len(name) > maxExtNameLen {
		return fieldErr(name, ErrInvalidField, "extension name must be 1–20 characters of a–z, 0–9")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fieldErr(name, ErrInvalidField, "extension name must be 1–20 characters of a–z, 0–9")
		}
	}
	if isReserved(name) {
		return fieldErr(name, ErrInvalidField, "reserved attribute name cannot be an extension")
	}
	return nil
}

// checkID accepts a UUID of any version in canonical lowercase 8-4-4-4-12
// form, except the nil UUID.
func checkID(id string) *FieldError {
	if id == "" {
		return fieldErr("id", ErrMissingField, "")
	}
	if len(id) != 36 {
		return fieldErr("id", ErrInvalidField, "not a UUID in canonical lowercase form")
	}
	zero := true
	for i := 0; i < 36; i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fieldErr("id", ErrInvalidField, "not a UUID in canonical lowercase form")
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fieldErr("id", ErrInvalidField, "not a UUID in canonical lowercase form")
		}
		if c != '0' {
			zero = false
		}
	}
	if zero {
		return fieldErr("id", ErrInvalidField, "nil UUID")
	}
	return nil
}

func checkRequiredString(field, s string) *FieldError {
	if s == "" {
		return fieldErr(field, ErrMissingField, "")
	}
	return checkOptString(field, s)
}

func checkOptString(field, s string) *FieldError {
	if !utf8.ValidString(s) {
		return fieldErr(field, ErrInvalidField, "invalid UTF-8")
	}
	return nil
}

func checkVersion(v int) *FieldError {
	if v < 1 || v > MaxVersion {
		return fieldErr("version", ErrInvalidField, "must be an integer from 1 to 2147483647, got "+strconv.Itoa(v))
	}
	return nil
}

func checkTime(t time.Time) *FieldError {
	if t.IsZero() {
		return fieldErr("time", ErrMissingField, "zero time")
	}
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return fieldErr("time", ErrInvalidField, "year outside 0000–9999")
	}
	return nil
}

func checkDataSchema(s string) *FieldError {
	if s == "" {
		return nil
	}
	if err := checkOptString("dataschema", s); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return fieldErr("dataschema", ErrInvalidField, "not an absolute URI")
	}
	return nil
}

func checkData(data []byte) *FieldError {
	if !isValidJSON(data) {
		return fieldErr("data", ErrSyntax, "not valid JSON (or invalid UTF-8, or nested deeper than 10000)")
	}
	return nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
