package envelope

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"unsafe"
)

// DataDecoder decodes an event's data (JSON) into a *T with the value and
// error json.Unmarshal gives, several times faster for a flat struct: one
// whose exported fields are all strings, booleans, integers or floats (no
// embedded fields, no ",string" option, no json.Number, no type
// implementing json.Unmarshaler or encoding.TextUnmarshaler).
//
// For such a T it reads an object whose keys match the field names
// exactly and whose values are plain literals of the field's kind: strings
// without escapes, integers within range, JSON numbers for floats,
// true/false, null. Anything else — another key spelling, an unknown key,
// an escape, a nested value, a type mismatch, a syntax error — makes it
// hand the whole input to json.Unmarshal. For other types it is
// json.Unmarshal. The bus's typed handlers (bus.Subscribe) use it, where
// decoding the payload is most of the cost of a delivery.
//
// A DataDecoder holds no state beyond its plan and is safe for concurrent
// use.
type DataDecoder[T any] struct {
	fields []flatField // nil: no fast path for T
}

type flatField struct {
	name   string
	offset uintptr
	kind   reflect.Kind
	size   uintptr // bytes of the field's value
}

// NewDataDecoder returns the DataDecoder of T, with a fast path when T is
// a flat struct (see DataDecoder).
func NewDataDecoder[T any]() *DataDecoder[T] {
	return &DataDecoder[T]{fields: flatPlan(reflect.TypeFor[T]())}
}

// Fast reports whether the DataDecoder has a fast path for T.
func (d *DataDecoder[T]) Fast() bool { return d.fields != nil }

// Unmarshal decodes data into *v, which must be T's zero value, with the
// result and error json.Unmarshal(data, v) would give.
func (d *DataDecoder[T]) Unmarshal(data []byte, v *T) error {
	if d.fields != nil {
		if flatDecode(data, unsafe.Pointer(v), d.fields) {
			return nil
		}
		var zero T
		*v = zero
	}
	return json.Unmarshal(data, v)
}

var (
	numberType          = reflect.TypeFor[json.Number]()
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodesItself reports whether encoding/json would hand t (or *t) to its
// own UnmarshalJSON or UnmarshalText.
func decodesItself(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return t.Implements(unmarshalerType) || p.Implements(unmarshalerType) ||
		t.Implements(textUnmarshalerType) || p.Implements(textUnmarshalerType)
}

// flatPlan returns the fields of struct type t in encoding/json's naming,
// or nil when t has no fast path.
func flatPlan(t reflect.Type) []flatField {
	if t.Kind() != reflect.Struct || decodesItself(t) {
		return nil
	}
	fields := []flatField{}
	seen := map[string]bool{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			return nil // embedded fields: encoding/json's promotion rules
		}
		if !sf.IsExported() {
			continue
		}
		name := sf.Name
		if tag, ok := sf.Tag.Lookup("json"); ok {
			if tag == "-" {
				continue
			}
			tagName, opts, _ := strings.Cut(tag, ",")
			for opts != "" {
				var opt string
				opt, opts, _ = strings.Cut(opts, ",")
				if opt == "string" {
					return nil
				}
			}
			if tagName != "" {
				if !plainName(tagName) {
					return nil // encoding/json's tag-name rules: leave them to it
				}
				name = tagName
			}
		}
		switch sf.Type.Kind() {
		case reflect.String, reflect.Bool,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Float32, reflect.Float64:
		default:
			return nil
		}
		if sf.Type == numberType {
			return nil // a string that encoding/json checks as a number literal
		}
		if decodesItself(sf.Type) || seen[strings.ToLower(name)] {
			// Two names equal but for case: encoding/json's matching of
			// such keys is not exact; leave it to it.
			return nil
		}
		seen[strings.ToLower(name)] = true
		fields = append(fields, flatField{name: name, offset: sf.Offset, kind: sf.Type.Kind(), size: sf.Type.Size()})
	}
	return fields
}

// plainName reports whether a tag name is ASCII letters, digits and
// underscores, which encoding/json takes as given.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// flatDecode is the fast path: false means "not handled", and *p may then
// hold some decoded fields.
func flatDecode(b []byte, p unsafe.Pointer, fields []flatField) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		next, escaped, ok := scanString(b, i)
		if !ok || escaped {
			return false
		}
		f := flatLookup(fields, b[i+1:next-1])
		if f == nil {
			return false // unknown, or a spelling encoding/json matches by folding
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i, ok = flatValue(b, i, unsafe.Add(p, f.offset), f.kind, f.size); !ok {
			return false
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func flatLookup(fields []flatField, key []byte) *flatField {
	for i := range fields {
		if fields[i].name == string(key) {
			return &fields[i]
		}
	}
	return nil
}

// flatValue decodes the literal at b[i] into the field at p of kind k and
// size bytes, and returns the index after it.
func flatValue(b []byte, i int, p unsafe.Pointer, k reflect.Kind, size uintptr) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	if b[i] == 'n' {
		// null leaves the field as it is, whatever its kind.
		if len(b)-i >= 4 && string(b[i:i+4]) == "null" {
			return i + 4, true
		}
		return 0, false
	}
	switch k {
	case reflect.String:
		if b[i] != '"' {
			return 0, false
		}
		next, escaped, ok := scanString(b, i)
		if !ok || escaped {
			return 0, false // escapes: encoding/json decodes them its own way
		}
		*(*string)(p) = string(b[i+1 : next-1])
		return next, true
	case reflect.Bool:
		switch {
		case len(b)-i >= 4 && string(b[i:i+4]) == "true":
			*(*bool)(p) = true
			return i + 4, true
		case len(b)-i >= 5 && string(b[i:i+5]) == "false":
			*(*bool)(p) = false
			return i + 5, true
		}
		return 0, false
	}
	end, integer, ok := scanNumber(b, i)
	if !ok {
		return 0, false
	}
	text := unsafe.String(&b[i], end-i)
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !integer {
			return 0, false
		}
		n, err := strconv.ParseInt(text, 10, 8*int(size)) // out of the field's range: an error
		if err != nil {
			return 0, false
		}
		switch size {
		case 1:
			*(*int8)(p) = int8(n)
		case 2:
			*(*int16)(p) = int16(n)
		case 4:
			*(*int32)(p) = int32(n)
		default:
			*(*int64)(p) = n
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !integer {
			return 0, false
		}
		n, err := strconv.ParseUint(text, 10, 8*int(size))
		if err != nil {
			return 0, false
		}
		switch size {
		case 1:
			*(*uint8)(p) = uint8(n)
		case 2:
			*(*uint16)(p) = uint16(n)
		case 4:
			*(*uint32)(p) = uint32(n)
		default:
			*(*uint64)(p) = n
		}
	case reflect.Float32:
		f, err := strconv.ParseFloat(text, 32)
		if err != nil {
			return 0, false
		}
		*(*float32)(p) = float32(f)
	case reflect.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return 0, false
		}
		*(*float64)(p) = f
	default:
		return 0, false
	}
	return end, true
}
