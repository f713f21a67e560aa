package transport

import (
	"strconv"
	"strings"
	"time"
)

// StreamID is a backlog entry id in the form of a Redis stream id,
// "<ms>-<n>": the milliseconds of the entry's time and a counter within
// that millisecond. Every transport gives its Positions IDs of this form
// (transporttest checks it), and they grow with each entry of a log, so a
// follower may compare and step them.
type StreamID struct {
	MS, N uint64
}

// ParseStreamID parses "<ms>-<n>", both parts unsigned decimal numbers.
// It reports false for anything else, including "" and Redis's special
// ids ("-", "+", "$", "*", a bare "<ms>").
func ParseStreamID(s string) (StreamID, bool) {
	msText, nText, ok := strings.Cut(s, "-")
	if !ok || !digits(msText) || !digits(nText) {
		return StreamID{}, false
	}
	ms, err1 := strconv.ParseUint(msText, 10, 64)
	n, err2 := strconv.ParseUint(nText, 10, 64)
	if err1 != nil || err2 != nil { // out of range
		return StreamID{}, false
	}
	return StreamID{MS: ms, N: n}, true
}

// digits reports whether s is a non-empty run of ASCII digits.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String formats id as "<ms>-<n>".
func (id StreamID) String() string {
	var buf [41]byte
	b := strconv.AppendUint(buf[:0], id.MS, 10)
	b = append(b, '-')
	return string(strconv.AppendUint(b, id.N, 10))
}

// Compare returns -1, 0 or +1 as id is before, equal to or after o.
func (id StreamID) Compare(o StreamID) int {
	switch {
	case id.MS < o.MS || id.MS == o.MS && id.N < o.N:
		return -1
	case id == o:
		return 0
	}
	return 1
}

// Prev returns the id just before id; false for "0-0", which has none.
// An exclusive read bound of Prev() starts a read at id.
func (id StreamID) Prev() (StreamID, bool) {
	switch {
	case id.N > 0:
		return StreamID{MS: id.MS, N: id.N - 1}, true
	case id.MS > 0:
		return StreamID{MS: id.MS - 1, N: ^uint64(0)}, true
	}
	return StreamID{}, false
}

// Next returns the id just after id; false for the largest id.
func (id StreamID) Next() (StreamID, bool) {
	switch {
	case id.N < ^uint64(0):
		return StreamID{MS: id.MS, N: id.N + 1}, true
	case id.MS < ^uint64(0):
		return StreamID{MS: id.MS + 1}, true
	}
	return StreamID{}, false
}

// Time returns the time in id (its milliseconds since the Unix epoch).
func (id StreamID) Time() time.Time { return time.UnixMilli(int64(id.MS)) }

// IDAfter reports whether backlog id a is after b. Ids that do not parse
// are never after, nor is anything after them.
func IDAfter(a, b string) bool {
	x, ok1 := ParseStreamID(a)
	y, ok2 := ParseStreamID(b)
	return ok1 && ok2 && x.Compare(y) > 0
}
