package transport_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/durabus/durabus/transport"
)

// A refused name names the refused character as it was written, whole.
func TestValidateTopicNamesTheCharacter(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		pattern    bool
	}{
		{"café", `"café" has 'é' at byte 3`, false},
		{"has space", `"has space" has ' ' at byte 3`, false},
		{"star*", `"star*" has '*' at byte 4`, false},
		{"bad\xffbyte", `has byte 0xff at byte 3`, false},
		{"{x}", `has '{' at byte 0`, false},
		{"naïve.*", `pattern "naïve.*" has 'ï' at byte 2`, true},
	} {
		validate := transport.ValidateTopic
		if tc.pattern {
			validate = transport.ValidatePattern
		}
		err := validate(tc.name)
		if !errors.Is(err, transport.ErrInvalidTopic) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want an ErrInvalidTopic saying %s", tc.name, err, tc.want)
		}
	}
	for _, ok := range []string{"order.placed", "a:b_c-D.9"} {
		if err := transport.ValidateTopic(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}
