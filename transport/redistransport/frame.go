package redistransport

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"github.com/durabus/durabus/transport"
)

// parseFrame parses a live frame of topic (see "Live frames" in the package
// doc). It returns the events it could read; err is set when the frame, or
// its tail, is not in the format. Each event is copied out of s into a
// buffer of its own, which holds its stream id and its Data, and the epoch
// is copied once per frame: what a receiver keeps of one event (a Position,
// strings of its envelope) holds that event's bytes, not the whole frame.
func parseFrame(topic, s string, out []transport.Delivery) ([]transport.Delivery, error) {
	if strings.HasPrefix(s, "rb1 ") {
		return parseMarker(topic, s, out)
	}
	header, rest, ok := strings.Cut(s, "\n")
	if !ok || !strings.HasPrefix(header, "v1 ") {
		return out, errors.New("redistransport: not a durabus frame (want a \"v1 \" header line)")
	}
	f := strings.Split(header[3:], " ")
	if len(f) != 3 || f[0] == "" || strings.Contains(f[0], ":") {
		return out, errors.New("redistransport: frame header: want \"v1 <epoch> <seq> <count>\"")
	}
	epoch := strings.Clone(f[0])
	seq, err1 := strconv.ParseUint(f[1], 10, 64)
	count, err2 := strconv.ParseUint(f[2], 10, 32)
	if err1 != nil || err2 != nil || seq == 0 || count == 0 || count-1 > math.MaxUint64-seq {
		return out, errors.New("redistransport: frame header: bad seq or count")
	}
	for i := uint64(0); i < count; i++ {
		line, tail, ok := strings.Cut(rest, "\n")
		if !ok {
			return out, errors.New("redistransport: frame truncated: record header missing")
		}
		id, lenText, ok := strings.Cut(line, " ")
		n, err := strconv.ParseUint(lenText, 10, 32)
		if !ok || err != nil || !validID(id) {
			return out, errors.New("redistransport: frame record header: want \"<stream-id> <length>\"")
		}
		if uint64(len(tail)) < n {
			return out, errors.New("redistransport: frame truncated: envelope shorter than its length")
		}
		// One allocation: the id, then the envelope (Data belongs to the
		// receiver, who may change it; the id's bytes are apart).
		buf := make([]byte, len(id)+int(n))
		copy(buf, id)
		copy(buf[len(id):], tail[:n])
		out = append(out, transport.Delivery{
			Topic:    topic,
			Position: transport.Position{Epoch: epoch, Seq: seq + i, ID: unsafe.String(&buf[0], len(id))},
			Data:     buf[len(id):len(buf):len(buf)],
		})
		rest = tail[n:]
	}
	if rest != "" {
		return out, errors.New("redistransport: frame has trailing bytes")
	}
	return out, nil
}

// parseMarker parses a rollback marker's live frame,
// "rb1 <epoch> <seq> <marker stream id> <from> <to>" (see rollbackScript).
func parseMarker(topic, s string, out []transport.Delivery) ([]transport.Delivery, error) {
	f := strings.Split(s[4:], " ")
	if len(f) != 5 || f[0] == "" || strings.Contains(f[0], ":") || !validID(f[2]) {
		return out, errors.New("redistransport: marker frame: want \"rb1 <epoch> <seq> <id> <from> <to>\"")
	}
	seq, err1 := strconv.ParseUint(f[1], 10, 64)
	from, err2 := strconv.ParseUint(f[3], 10, 64)
	to, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || from == 0 || from > to {
		return out, errors.New("redistransport: marker frame: bad seq or range")
	}
	epoch := strings.Clone(f[0])
	return append(out, transport.Delivery{
		Topic:    topic,
		Position: transport.Position{Epoch: epoch, Seq: seq, ID: strings.Clone(f[2])},
		Rollback: &transport.Rollback{Epoch: epoch, From: from, To: to},
	}), nil
}

// validID reports whether id is a stream id "<ms>-<n>".
func validID(id string) bool {
	_, ok := transport.ParseStreamID(id)
	return ok
}

// prevID returns the stream id just before id, for an exclusive bound that
// still includes id. "0-0" (and an id that does not parse) has none and
// gives "0-0".
func prevID(id string) string {
	sid, _ := transport.ParseStreamID(id)
	if prev, ok := sid.Prev(); ok {
		return prev.String()
	}
	return "0-0"
}
