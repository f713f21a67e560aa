package envelope

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Decoder decodes envelopes with a size limit. The zero Decoder applies
// DefaultMaxSize. A Decoder holds no state and is safe for concurrent use.
type Decoder struct {
	// MaxSize is the largest accepted input, in bytes. 0 means
	// DefaultMaxSize (1 MiB); a negative value means no limit.
	MaxSize int
}

// Decode decodes one envelope with the default Decoder (size limit
// DefaultMaxSize). See Decoder.Decode.
func Decode(b []byte) (*Envelope, error) { return Decoder{}.Decode(b) }

// Decode parses b, which must hold exactly one JSON object (white space
// around it is allowed), into a new Envelope. The Envelope does not share
// memory with b.
//
// Decoding is strict. It fails, with a *FieldError matching one of the
// sentinels, when b is larger than MaxSize (ErrTooLarge); is not
// well-formed JSON, has trailing data, or contains invalid UTF-8
// (ErrSyntax); lacks specversion, id, type, source or time
// (ErrMissingField); has an attribute of the wrong JSON type (ErrFieldType);
// repeats an attribute (ErrDuplicateField); or breaks a value rule
// (ErrInvalidField): specversion other than "1.0", id not a canonical
// lowercase UUID (any version, not the nil UUID), empty type or source,
// time not RFC 3339 or outside years 0000–9999, version not an integer in
// 1…2³¹−1, datacontenttype other than application/json or "+json", a
// dataschema that is not an absolute URI, data_base64 (binary data is not
// supported), an extension name not matching [a-z0-9]{1,20}, a string
// with an unpaired UTF-16 surrogate escape.
//
// Lenient where CloudEvents asks for it: an absent "version" means 1; an
// absent datacontenttype means JSON; null for an optional string attribute
// (subject, dataschema, datacontenttype, traceparent, tracestate, an
// extension) means absent; an extension whose value is a number or boolean
// is kept as its JSON text; "data" may be any JSON value including null
// (json.RawMessage("null")), and its absence leaves Data nil. Nesting in
// data is limited to 10 000 levels, encoding/json's limit, so that Bind
// reads whatever Decode accepts; no recursion is used.
func (d Decoder) Decode(b []byte) (*Envelope, error) {
	if err := d.checkSize(len(b)); err != nil {
		return nil, err // before copying it
	}
	// One private copy of b: attribute strings are substrings of it and
	// Data is a slice of it, so the Envelope shares no memory with b. Data's
	// bytes are disjoint from every string's, so changing them changes no
	// attribute.
	return d.DecodeOwned(append([]byte(nil), b...))
}

// checkSize refuses an input of n bytes larger than MaxSize.
func (d Decoder) checkSize(n int) error {
	limit := d.MaxSize
	if limit == 0 {
		limit = DefaultMaxSize
	}
	if limit > 0 && n > limit {
		return fieldErr("", ErrTooLarge, strconv.Itoa(n)+" bytes, limit "+strconv.Itoa(limit))
	}
	return nil
}

// DecodeOwned is Decode without the private copy, for a caller that owns b
// and hands it over: the Envelope's attribute strings and Data point into
// b, which must not be changed or reused afterwards, except through the
// Envelope's Data (whose bytes are disjoint from every attribute's). It
// saves an allocation and a copy of the input per envelope. On error the
// caller keeps b.
func (d Decoder) DecodeOwned(b []byte) (*Envelope, error) {
	if err := d.checkSize(len(b)); err != nil {
		return nil, err
	}
	p := parser{s: unsafe.String(unsafe.SliceData(b), len(b)), buf: b}
	e := new(Envelope)
	if err := p.parse(e); err != nil {
		return nil, err
	}
	return e, nil
}

// UnmarshalJSON implements json.Unmarshaler with Decode (default size
// limit).
func (e *Envelope) UnmarshalJSON(b []byte) error {
	d, err := Decode(b)
	if err != nil {
		return err
	}
	*e = *d
	return nil
}

// Bits of parser.seen for the attributes with a meaning of their own.
const (
	seenSpec = 1 << iota
	seenID
	seenType
	seenSource
	seenTime
	seenVersion
	seenSubject
	seenSchema
	seenContentType
	seenData
	seenTraceParent
	seenTraceState
)

func knownBit(key string) uint32 {
	switch key {
	case "specversion":
		return seenSpec
	case "id":
		return seenID
	case "type":
		return seenType
	case "source":
		return seenSource
	case "time":
		return seenTime
	case "version":
		return seenVersion
	case "subject":
		return seenSubject
	case "dataschema":
		return seenSchema
	case "datacontenttype":
		return seenContentType
	case "data":
		return seenData
	case "traceparent":
		return seenTraceParent
	case "tracestate":
		return seenTraceState
	}
	return 0
}

// parser is a small hand-written scanner over the top-level object, on the
// lexer of json.go: "data" is delimited and validated in one pass by
// scanValue (no recursion), strings are scanned by scanString and numbers
// by scanNumber.
type parser struct {
	s   string // a private copy of the input; attribute strings are substrings of it
	buf []byte // the same bytes as s; Data is a slice of it
	i   int
}

func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) skipWS() { p.i = skipSpace(p.buf, p.i) }

func (p *parser) syntax(field, msg string) *FieldError {
	return fieldErr(field, ErrSyntax, msg+" at byte "+strconv.Itoa(p.i))
}

func (p *parser) parse(e *Envelope) *FieldError {
	p.skipWS()
	if p.peek() != '{' {
		return p.syntax("", "expected a JSON object")
	}
	p.i++
	var seen uint32
	var nullExts []string // extensions given as null, to catch duplicates
	p.skipWS()
	if p.peek() == '}' {
		p.i++
	} else {
		for {
			p.skipWS()
			if p.peek() != '"' {
				return p.syntax("", "expected an attribute name")
			}
			key, err := p.str("")
			if err != nil {
				return err
			}
			p.skipWS()
			if p.peek() != ':' {
				return p.syntax(key, "expected ':'")
			}
			p.i++
			p.skipWS()
			if bit := knownBit(key); bit != 0 {
				if seen&bit != 0 {
					return fieldErr(key, ErrDuplicateField, "")
				}
				seen |= bit
			}
			if err := p.attribute(e, key, &nullExts); err != nil {
				return err
			}
			p.skipWS()
			switch p.peek() {
			case ',':
				p.i++
				continue
			case '}':
				p.i++
			default:
				return p.syntax(key, "expected ',' or '}' after the value")
			}
			break
		}
	}
	p.skipWS()
	if p.i < len(p.s) {
		return p.syntax("", "trailing data after the object")
	}
	switch {
	case seen&seenSpec == 0:
		return fieldErr("specversion", ErrMissingField, "")
	case seen&seenID == 0:
		return fieldErr("id", ErrMissingField, "")
	case seen&seenType == 0:
		return fieldErr("type", ErrMissingField, "")
	case seen&seenSource == 0:
		return fieldErr("source", ErrMissingField, "")
	case seen&seenTime == 0:
		return fieldErr("time", ErrMissingField, "")
	}
	if seen&seenVersion == 0 {
		e.Version = 1
	}
	return nil
}

func (p *parser) attribute(e *Envelope, key string, nullExts *[]string) *FieldError {
	switch key {
	case "specversion":
		s, err := p.reqString(key)
		if err != nil {
			return err
		}
		if s != SpecVersion {
			return fieldErr(key, ErrInvalidField, `must be "1.0"`)
		}
	case "id":
		s, err := p.reqString(key)
		if err != nil {
			return err
		}
		if s == "" {
			return fieldErr(key, ErrInvalidField, "empty")
		}
		if err := checkID(s); err != nil {
			return err
		}
		e.ID = s
	case "type", "source":
		s, err := p.reqString(key)
		if err != nil {
			return err
		}
		if s == "" {
			return fieldErr(key, ErrInvalidField, "empty")
		}
		if key == "type" {
			e.Type = s
		} else {
			e.Source = s
		}
	case "time":
		s, err := p.reqString(key)
		if err != nil {
			return err
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			return &FieldError{Field: key, Err: ErrInvalidField, detail: "not RFC 3339", cause: perr}
		}
		t = t.UTC()
		if err := checkTime(t); err != nil {
			err.Err = ErrInvalidField
			return err
		}
		e.Time = t
	case "version":
		return p.version(e)
	case "subject":
		s, _, err := p.optString(key)
		if err != nil {
			return err
		}
		e.Subject = s
	case "dataschema":
		s, _, err := p.optString(key)
		if err != nil {
			return err
		}
		if err := checkDataSchema(s); err != nil {
			return err
		}
		e.DataSchema = s
	case "datacontenttype":
		s, ok, err := p.optString(key)
		if err != nil {
			return err
		}
		if ok && !isJSONContentType(s) {
			return fieldErr(key, ErrInvalidField, "only JSON data is supported, got "+strconv.Quote(s))
		}
	case "traceparent":
		s, _, err := p.optString(key)
		if err != nil {
			return err
		}
		e.TraceParent = s
	case "tracestate":
		s, _, err := p.optString(key)
		if err != nil {
			return err
		}
		e.TraceState = s
	case "data":
		end, ok := scanValue(p.buf, p.i)
		if !ok {
			p.i = end
			return p.syntax(key, "not valid JSON (or invalid UTF-8, or nested deeper than 10000)")
		}
		e.Data = p.buf[p.i:end:end]
		p.i = end
	case "data_base64":
		return fieldErr(key, ErrInvalidField, "binary data is not supported; data must be JSON")
	default:
		return p.extension(e, key, nullExts)
	}
	return nil
}

func (p *parser) extension(e *Envelope, key string, nullExts *[]string) *FieldError {
	if err := checkExtName(key); err != nil {
		return err
	}
	if _, dup := e.Extensions[key]; dup || slices.Contains(*nullExts, key) {
		return fieldErr(key, ErrDuplicateField, "")
	}
	var v string
	switch c := p.peek(); {
	case c == '"':
		s, err := p.str(key)
		if err != nil {
			return err
		}
		v = s
	case c == 'n':
		if err := p.literal(key, "null"); err != nil {
			return err
		}
		*nullExts = append(*nullExts, key)
		return nil
	case c == 't':
		if err := p.literal(key, "true"); err != nil {
			return err
		}
		v = "true"
	case c == 'f':
		if err := p.literal(key, "false"); err != nil {
			return err
		}
		v = "false"
	case c == '-' || c >= '0' && c <= '9':
		s, _, err := p.number(key)
		if err != nil {
			return err
		}
		v = s
	default:
		return p.typeErr(key, "a string, number or boolean")
	}
	if e.Extensions == nil {
		e.Extensions = make(map[string]string, 4)
	}
	e.Extensions[key] = v
	return nil
}

func (p *parser) version(e *Envelope) *FieldError {
	const key = "version"
	if c := p.peek(); c != '-' && (c < '0' || c > '9') {
		return p.typeErr(key, "an integer")
	}
	s, integer, err := p.number(key)
	if err != nil {
		return err
	}
	if !integer {
		return fieldErr(key, ErrInvalidField, "must be an integer, got "+s)
	}
	v, perr := strconv.Atoi(s)
	if perr != nil || v < 1 || v > MaxVersion {
		return fieldErr(key, ErrInvalidField, "must be an integer from 1 to 2147483647, got "+s)
	}
	e.Version = v
	return nil
}

// typeErr reports the JSON type found at p.i where want was expected.
func (p *parser) typeErr(field, want string) *FieldError {
	var got string
	switch c := p.peek(); {
	case c == '"':
		got = "string"
	case c == '{':
		got = "object"
	case c == '[':
		got = "array"
	case c == 't' || c == 'f':
		got = "boolean"
	case c == 'n':
		got = "null"
	case c == '-' || c >= '0' && c <= '9':
		got = "number"
	case c == 0 && p.i >= len(p.s):
		return p.syntax(field, "unexpected end of input")
	default:
		return p.syntax(field, "unexpected character "+strconv.QuoteRune(rune(c)))
	}
	return fieldErr(field, ErrFieldType, "want "+want+", got "+got)
}

func (p *parser) reqString(field string) (string, *FieldError) {
	if p.peek() != '"' {
		return "", p.typeErr(field, "a string")
	}
	return p.str(field)
}

// optString reads a string or null (absent).
func (p *parser) optString(field string) (string, bool, *FieldError) {
	if p.peek() == 'n' {
		return "", false, p.literal(field, "null")
	}
	s, err := p.reqString(field)
	return s, err == nil, err
}

func (p *parser) literal(field, word string) *FieldError {
	if !strings.HasPrefix(p.s[p.i:], word) {
		return p.syntax(field, "invalid literal")
	}
	p.i += len(word)
	return nil
}

// number reads the JSON number at p.i and returns its text and whether it
// is an integer (no fraction, no exponent).
func (p *parser) number(field string) (string, bool, *FieldError) {
	end, integer, ok := scanNumber(p.buf, p.i)
	if !ok || end < len(p.buf) && strings.IndexByte("0123456789+-.eE", p.buf[end]) >= 0 {
		// "01", "1.5.2": malformed JSON, reported before any value rule.
		return "", false, p.syntax(field, "invalid number")
	}
	s := p.s[p.i:end]
	p.i = end
	return s, integer, nil
}

// str reads the JSON string at p.i (which is '"'). A valid string without
// escapes is a substring of the input; one with escapes, or an invalid
// one, takes strSlow, which decodes the escapes, rejects unpaired
// surrogates and says what is wrong.
func (p *parser) str(field string) (string, *FieldError) {
	if end, escaped, ok := scanString(p.buf, p.i); ok && !escaped {
		s := p.s[p.i+1 : end-1]
		p.i = end
		return s, nil
	}
	return p.strSlow(field)
}

func (p *parser) strSlow(field string) (string, *FieldError) {
	start := p.i + 1
	var buf []byte // nil until an escape is seen
	lit := start   // start of the pending unescaped run
	i := start
	for i < len(p.s) {
		c := p.s[i]
		switch {
		case c == '"':
			var s string
			if buf == nil {
				s = p.s[start:i]
			} else {
				s = string(append(buf, p.s[lit:i]...))
			}
			p.i = i + 1
			return s, nil
		case c < 0x20:
			p.i = i
			return "", p.syntax(field, "control character in string")
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(p.s[i:])
			if r == utf8.RuneError && size == 1 {
				p.i = i
				return "", p.syntax(field, "invalid UTF-8")
			}
			i += size
		case c == '\\':
			if buf == nil {
				buf = make([]byte, 0, 64)
			}
			buf = append(buf, p.s[lit:i]...)
			if i+1 >= len(p.s) {
				p.i = i
				return "", p.syntax(field, "unterminated string")
			}
			switch e := p.s[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
				i += 2
			case 'b':
				buf = append(buf, '\b')
				i += 2
			case 'f':
				buf = append(buf, '\f')
				i += 2
			case 'n':
				buf = append(buf, '\n')
				i += 2
			case 'r':
				buf = append(buf, '\r')
				i += 2
			case 't':
				buf = append(buf, '\t')
				i += 2
			case 'u':
				r, ok := hex4(p.buf, i+2)
				if !ok {
					p.i = i
					return "", p.syntax(field, "invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2, ok := rune(0), false
					if i+1 < len(p.s) && p.s[i] == '\\' && p.s[i+1] == 'u' {
						r2, ok = hex4(p.buf, i+2)
					}
					dec := utf16.DecodeRune(r, r2)
					if !ok || dec == utf8.RuneError {
						p.i = i
						return "", fieldErr(field, ErrInvalidField, "unpaired UTF-16 surrogate in string")
					}
					r = dec
					i += 6
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.i = i
				return "", p.syntax(field, "invalid escape")
			}
			lit = i
		default:
			i++
		}
	}
	p.i = i
	return "", p.syntax(field, "unterminated string")
}

// isJSONContentType accepts application/json, with parameters, and any
// "+json" structured-syntax type (case-insensitive).
func isJSONContentType(s string) bool {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "application/json" || strings.HasSuffix(s, "+json") || s == "text/json"
}
