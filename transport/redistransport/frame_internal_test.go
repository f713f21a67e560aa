package redistransport

import (
	"strings"
	"testing"
	"unsafe"
)

// What a receiver keeps of one live event (its Position, its Data, strings
// decoded from Data in place) must not hold the whole frame: parseFrame
// copies each event and the epoch out of the payload.
func TestFrameEventsDoNotPinTheFrame(t *testing.T) {
	body := strings.Repeat("x", 1000)
	frame := "v1 abcdef0012345678 7 2\n1700000000000-0 1000\n" + body + "1700000000000-1 1000\n" + body
	got, err := parseFrame("t", frame, nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("parseFrame: %d events, %v", len(got), err)
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(frame)))
	hi := lo + uintptr(len(frame))
	inside := func(p unsafe.Pointer) bool { return uintptr(p) >= lo && uintptr(p) < hi }
	for i, d := range got {
		if string(d.Data) != body || d.Position.Seq != uint64(7+i) || d.Position.Epoch != "abcdef0012345678" {
			t.Fatalf("event %d: %+v", i, d.Position)
		}
		if inside(unsafe.Pointer(unsafe.SliceData(d.Data))) || inside(unsafe.Pointer(unsafe.StringData(d.Position.ID))) ||
			inside(unsafe.Pointer(unsafe.StringData(d.Position.Epoch))) {
			t.Errorf("event %d points into the frame", i)
		}
		d.Data[0] = 'y' // Data is the receiver's: changing it changes no id
		if d.Position.ID != "1700000000000-"+string(rune('0'+i)) {
			t.Errorf("event %d: id %q after changing Data", i, d.Position.ID)
		}
	}
	if unsafe.SliceData(got[0].Data) == unsafe.SliceData(got[1].Data) {
		t.Error("two events share a buffer")
	}
}
