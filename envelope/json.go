package envelope

import (
	"encoding/binary"
	"unicode/utf8"
)

// This file is durabus's one JSON lexer: the number grammar (scanNumber),
// the string scanner (scanString, with special), and the value validator
// built on them (scanValue, isValidJSON). The envelope decoder, the check
// of Data on Encode and Validate, and DataDecoder all use it. It is
// fuzzed against encoding/json: FuzzValidJSON (json.Valid), FuzzDecode and
// FuzzMatchesEncodingJSON (json.Unmarshal).

// maxDepth is the nesting limit of data, the same as encoding/json's so
// that Bind can read whatever Decode accepts.
const maxDepth = 10000

// isValidJSON reports whether b is exactly one JSON value (RFC 8259) with
// valid UTF-8 in its strings: json.Valid plus utf8.Valid in one pass,
// several times faster.
func isValidJSON(b []byte) bool {
	end, ok := scanValue(b, skipSpace(b, 0))
	return ok && skipSpace(b, end) == len(b)
}

// scanValue reads the JSON value that starts at b[i] (valid UTF-8 in its
// strings, nested at most maxDepth deep) and returns the index after it,
// or where it went wrong. It uses an explicit stack instead of recursion.
func scanValue(b []byte, i int) (int, bool) {
	var arr [64]byte
	stack := arr[:0] // '{' or '[' per open container
	for {
		// Read one value at b[i:].
		i = skipSpace(b, i)
		if i >= len(b) {
			return i, false
		}
		var ok bool
		switch c := b[i]; {
		case c == '{' || c == '[':
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '{'+2 == '}', '['+2 == ']'
				i++
				break
			}
			if len(stack) >= maxDepth {
				return i, false
			}
			stack = append(stack, c)
			if c == '{' {
				if i, ok = objectKey(b, i); !ok {
					return i, false
				}
			}
			continue // read the first element
		case c == '"':
			if i, _, ok = scanString(b, i); !ok {
				return i, false
			}
		case c == 't':
			if i, ok = scanLiteral(b, i, "true"); !ok {
				return i, false
			}
		case c == 'f':
			if i, ok = scanLiteral(b, i, "false"); !ok {
				return i, false
			}
		case c == 'n':
			if i, ok = scanLiteral(b, i, "null"); !ok {
				return i, false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i, _, ok = scanNumber(b, i); !ok {
				return i, false
			}
		default:
			return i, false
		}
		// After a value: close containers, or find the next element.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return i, false
			}
			i++
			if top == '{' {
				if i, ok = objectKey(b, skipSpace(b, i)); !ok {
					return i, false
				}
			}
			break
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// objectKey reads `"key" :` at b[i:] and returns the index after the colon.
func objectKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	i, _, ok := scanString(b, i)
	if !ok {
		return i, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	return i + 1, true
}

// scanString reads the JSON string whose opening quote is b[i]: escapes
// well-formed, no control characters, valid UTF-8. It returns the index
// after the closing quote (or where it went wrong) and whether the string
// has escapes: without, its value is b[i+1 : end-1] as it is. Unpaired
// UTF-16 surrogate escapes pass, as in encoding/json.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	i++
	for {
		if i = special(b, i); i >= len(b) {
			return i, escaped, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := hex4(b, i+2); !ok {
					return i, escaped, false
				}
				i += 6
			default:
				return i, escaped, false
			}
		case c < 0x20:
			return i, escaped, false
		default: // not ASCII (special stops at nothing else)
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, escaped, false
			}
			i += size
		}
	}
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special returns the index of the first byte of b at or after i that is a
// quote, a backslash, a control character (below 0x20) or not ASCII, or
// len(b) when there is none. It looks at eight bytes at a time.
func special(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (ones * '"')
		bs := x ^ (ones * '\\')
		// Each term is nonzero exactly when some byte is special: below
		// 0x20, a zero byte of q or bs (a quote or a backslash), a high bit.
		if (x-ones*0x20)&^x&highs|(q-ones)&^q&highs|(bs-ones)&^bs&highs|x&highs != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
			return i
		}
	}
	return len(b)
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// scanNumber reads the JSON number at b[i],
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns the index
// after it (or where it went wrong) and whether it has neither fraction
// nor exponent.
func scanNumber(b []byte, i int) (end int, integer, ok bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i, integer, true
}
