package redistransport

import "unsafe"

// replyBytes returns the bytes of s without copying them. s must be a reply
// string go-redis has just read (a backlog entry's envelope): go-redis reads
// each bulk string into a fresh []byte and hands it out as a string without
// a copy, and nothing else keeps it, so the bytes can belong to the
// receiver of a Delivery. Full slice expressions keep an append from
// reaching the bytes after s. (Live frames are copied per event instead:
// see parseFrame.)
func replyBytes(s string) []byte {
	if s == "" {
		return []byte{}
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	return b[:len(s):len(s)]
}
