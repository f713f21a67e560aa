package hashslot

import "testing"

// The slots Redis's cluster specification gives, and hash-tag edge cases
// (the live check against CLUSTER KEYSLOT is in redistest and cmd/durabus).
func TestOf(t *testing.T) {
	for _, c := range []struct {
		key  string
		want int
	}{
		{"123456789", 0x31C3 % Count}, // CRC16/XMODEM check value 0x31C3
		{"{user1000}.following", Of("user1000")},
		{"foo{}{bar}", Of("foo{}{bar}")}, // empty tag: the whole key
		{"foo{{bar}}zap", Of("{bar")},
		{"foo{bar}{zap}", Of("bar")},
		{"durabus:{orders}:log", Of("orders")},
	} {
		if got := Of(c.key); got != c.want {
			t.Errorf("Of(%q) = %d, want %d", c.key, got, c.want)
		}
	}
}
