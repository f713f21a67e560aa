package envelope

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecode checks that Decode never panics, that DecodeOwned gives the
// same result, that errors match a sentinel, and that whatever it accepts Encode writes and Decode reads
// back unchanged. Seeds live in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(validJSON))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := Decode(in)
		owned, oerr := Decoder{}.DecodeOwned(append([]byte(nil), in...))
		if (err == nil) != (oerr == nil) || err != nil && err.Error() != oerr.Error() {
			t.Fatalf("Decode: %v, DecodeOwned: %v\ninput %q", err, oerr, in)
		}
		if err == nil {
			if d := diff(owned, e); d != "" {
				t.Fatalf("DecodeOwned differs from Decode: %s\ninput %q", d, in)
			}
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			for _, s := range []error{ErrTooLarge, ErrSyntax, ErrMissingField, ErrFieldType, ErrInvalidField, ErrDuplicateField} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v matches no sentinel", err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode accepted an envelope Validate rejects: %v\ninput %q", err, in)
		}
		out, err := e.Encode()
		if err != nil {
			t.Fatalf("Decode accepted what Encode rejects: %v\ninput %q", err, in)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(e)): %v\ninput  %q\noutput %q", err, in, out)
		}
		if d := diff(e, again); d != "" {
			t.Fatalf("round trip changed the envelope: %s\ninput  %q\noutput %q", d, in, out)
		}
		out2, err := again.Encode()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("Encode is not stable: %q vs %q (%v)", out, out2, err)
		}
	})
}

// The committed seeds named valid_* decode, those named bad_* do not.
func TestFuzzSeedCorpus(t *testing.T) {
	files, err := os.ReadDir("testdata/fuzz/FuzzDecode")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join("testdata/fuzz/FuzzDecode", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(raw), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", f.Name())
		}
		in, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		_, err = Decode([]byte(in))
		switch {
		case strings.HasPrefix(f.Name(), "valid_") && err != nil:
			t.Errorf("%s: %v", f.Name(), err)
		case strings.HasPrefix(f.Name(), "bad_") && err == nil:
			t.Errorf("%s: accepted", f.Name())
		}
	}
}
