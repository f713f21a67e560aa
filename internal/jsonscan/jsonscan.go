// Package jsonscan holds the string scanning shared by durabus's JSON
// readers (package envelope and internal/flatjson): the search for the
// next byte of a JSON string that needs a closer look, eight bytes at a
// time.
package jsonscan

import "encoding/binary"

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// Special returns the index of the first byte of b at or after i that is
// a quote, a backslash, a control character (below 0x20) or not ASCII, or
// len(b) when there is none.
func Special(b []byte, i int) int {
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
