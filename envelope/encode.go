package envelope

import (
	"slices"
	"strconv"
)

// Encode returns e as CloudEvents structured-mode JSON, after checking it
// with the rules of Validate (on failure the first problem is returned as a
// *FieldError). Attributes come in a fixed order with extensions sorted by
// name and "data" last; Data is embedded verbatim except for surrounding
// white space. Encode writes the JSON by hand (no reflection).
func (e *Envelope) Encode() ([]byte, error) {
	return e.AppendEncode(make([]byte, 0, e.sizeHint()))
}

// AppendEncode is Encode appending to dst, for callers that reuse buffers.
// On error it returns dst unchanged.
func (e *Envelope) AppendEncode(dst []byte) ([]byte, error) {
	if err := e.checkForEncode(); err != nil {
		return dst, err
	}
	b := dst
	b = append(b, `{"specversion":"1.0","id":"`...)
	b = append(b, e.ID...) // checked: hex digits and dashes
	b = append(b, `","source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, e.Subject)
	}
	b = append(b, `,"time":"`...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	b = append(b, `","datacontenttype":"application/json"`...)
	if e.DataSchema != "" {
		b = append(b, `,"dataschema":`...)
		b = appendString(b, e.DataSchema)
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(e.Version), 10)
	if e.TraceParent != "" {
		b = append(b, `,"traceparent":`...)
		b = appendString(b, e.TraceParent)
	}
	if e.TraceState != "" {
		b = append(b, `,"tracestate":`...)
		b = appendString(b, e.TraceState)
	}
	if len(e.Extensions) > 0 {
		var arr [16]string
		names := arr[:0]
		for k := range e.Extensions {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			b = append(b, ',', '"')
			b = append(b, k...) // checked: a-z0-9
			b = append(b, '"', ':')
			b = appendString(b, e.Extensions[k])
		}
	}
	if e.Data != nil {
		b = append(b, `,"data":`...)
		b = append(b, trimSpace(e.Data)...)
	}
	b = append(b, '}')
	return b, nil
}

// MarshalJSON implements json.Marshaler with Encode.
func (e *Envelope) MarshalJSON() ([]byte, error) { return e.Encode() }

// checkForEncode is Validate returning the first problem only, without
// allocating when e is valid.
func (e *Envelope) checkForEncode() error {
	if err := checkID(e.ID); err != nil {
		return err
	}
	if err := checkRequiredString("type", e.Type); err != nil {
		return err
	}
	if err := checkRequiredString("source", e.Source); err != nil {
		return err
	}
	if err := checkVersion(e.Version); err != nil {
		return err
	}
	if err := checkTime(e.Time); err != nil {
		return err
	}
	if err := checkOptString("subject", e.Subject); err != nil {
		return err
	}
	if err := checkDataSchema(e.DataSchema); err != nil {
		return err
	}
	if err := checkOptString("traceparent", e.TraceParent); err != nil {
		return err
	}
	if err := checkOptString("tracestate", e.TraceState); err != nil {
		return err
	}
	for name, v := range e.Extensions {
		if err := checkExtName(name); err != nil {
			return err
		}
		if err := checkOptString(name, v); err != nil {
			return err
		}
	}
	if e.Data != nil {
		if err := checkData(trimSpace(e.Data)); err != nil {
			return err
		}
	}
	return nil
}

func (e *Envelope) sizeHint() int {
	n := 288 + len(e.Source) + len(e.Type) + len(e.Subject) + len(e.DataSchema) +
		len(e.TraceParent) + len(e.TraceState) + len(e.Data)
	for k, v := range e.Extensions {
		n += len(k) + len(v) + 6
	}
	return n
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. s must be valid UTF-8 (checked
// before). Only '"', '\\' and control characters are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
