package envelope

import (
	"errors"
	"strings"
)

// Sentinel errors. Every error returned by Decode, Encode, Validate, New and
// Bind matches one of them with errors.Is; most are a *FieldError that also
// names the attribute concerned.
var (
	// ErrTooLarge: the encoded event is longer than the decoder's MaxSize.
	ErrTooLarge = errors.New("envelope: event too large")
	// ErrSyntax: the input is not well-formed JSON (including invalid UTF-8
	// and trailing data after the object).
	ErrSyntax = errors.New("envelope: malformed JSON")
	// ErrMissingField: a required attribute (specversion, id, type, source,
	// time) is absent.
	ErrMissingField = errors.New("envelope: missing attribute")
	// ErrFieldType: an attribute has the wrong JSON type (e.g. a number for
	// "type", a string for "version", an object as an extension).
	ErrFieldType = errors.New("envelope: wrong attribute type")
	// ErrInvalidField: an attribute has the right type but a value outside
	// its rules (version < 1, id not a UUID, bad time, bad extension name…).
	ErrInvalidField = errors.New("envelope: invalid attribute")
	// ErrDuplicateField: an attribute appears twice in one object.
	ErrDuplicateField = errors.New("envelope: duplicate attribute")
)

// FieldError describes a problem with one attribute of an envelope. Field is
// the attribute's name ("time", "version", an extension name), or "" when
// the problem concerns the event as a whole (too large, not an object,
// trailing data). Err is one of the package's sentinel errors.
//
// errors.Is(err, ErrInvalidField) and errors.As(err, &fe) both work; when the
// problem has an underlying cause (a json.Marshal error, a time parse error),
// errors.Is and errors.As reach it as well.
type FieldError struct {
	Field string
	Err   error

	detail string // human-readable specifics, may be ""
	cause  error  // underlying error, may be nil
}

func fieldErr(field string, sentinel error, detail string) *FieldError {
	return &FieldError{Field: field, Err: sentinel, detail: detail}
}

// Error formats the error as `envelope: "field": <problem>: <detail>`.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString("envelope: ")
	if e.Field != "" {
		b.WriteByte('"')
		b.WriteString(e.Field)
		b.WriteString(`": `)
	}
	if e.Err != nil {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "envelope: "))
	} else {
		b.WriteString("error")
	}
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel and, if any, the underlying cause.
func (e *FieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Err, e.cause}
	}
	return []error{e.Err}
}
