package envelope

import (
	"unicode/utf8"

	"github.com/durabus/durabus/internal/jsonscan"
)

// maxDepth is the nesting limit of data, the same as encoding/json's so
// that Bind can read whatever Decode accepts.
const maxDepth = 10000

// isValidJSON reports whether b is exactly one JSON value (RFC 8259) with
// valid UTF-8 in its strings. It is json.Valid plus utf8.Valid in one pass,
// several times faster, and uses an explicit stack instead of recursion.
func isValidJSON(b []byte) bool {
	var arr [64]byte
	stack := arr[:0] // '{' or '[' per open container
	i := 0
	for {
		// Read one value at b[i:].
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
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
				return false
			}
			stack = append(stack, c)
			if c == '{' {
				if i, ok = objectKey(b, i); !ok {
					return false
				}
			}
			continue // read the first element
		case c == '"':
			if i, ok = scanString(b, i); !ok {
				return false
			}
		case c == 't':
			if i, ok = scanLiteral(b, i, "true"); !ok {
				return false
			}
		case c == 'f':
			if i, ok = scanLiteral(b, i, "false"); !ok {
				return false
			}
		case c == 'n':
			if i, ok = scanLiteral(b, i, "null"); !ok {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i, ok = scanNumber(b, i); !ok {
				return false
			}
		default:
			return false
		}
		// After a value: close containers, or find the next element.
		for {
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return false
			}
			i++
			if top == '{' {
				if i, ok = objectKey(b, skipSpace(b, i)); !ok {
					return false
				}
			}
			break
		}
	}
}

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
	i, ok := scanString(b, i)
	if !ok {
		return i, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	return i + 1, true
}

// scanString reads the string starting with the quote at b[i] and returns
// the index after its closing quote.
func scanString(b []byte, i int) (int, bool) {
	i++
	for {
		if i = jsonscan.Special(b, i); i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return i, false
				}
				for _, h := range b[i+2 : i+6] {
					if (h < '0' || h > '9') && (h < 'a' || h > 'f') && (h < 'A' || h > 'F') {
						return i, false
					}
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		default: // not ASCII (Special stops at nothing else)
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return i, false
			}
			i += size
		}
	}
	return i, false
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// scanNumber reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, false
		}
	}
	return i, true
}
