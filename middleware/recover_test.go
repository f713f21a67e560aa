package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/durabus/durabus/bus"
	"github.com/durabus/durabus/middleware"
)

func TestRecover(t *testing.T) {
	tests := []struct {
		name    string
		h       func() error
		wantVal any
		wantIs  error
	}{
		{"no panic, nil", func() error { return nil }, nil, nil},
		{"no panic, error passes", func() error { return errBoom }, nil, errBoom},
		{"panic with a string", func() error { panic("kaput") }, "kaput", nil},
		{"panic with an error unwraps", func() error { panic(errBoom) }, errBoom, errBoom},
		{"runtime error", func() error { var s []int; _ = s[len(s)]; return nil }, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := middleware.Recover()(bus.HandlerFunc(func(context.Context, *bus.Message) error { return tt.h() }))
			err := h.Handle(context.Background(), msg(t, 1))
			var pe *middleware.PanicError
			panicked := errors.As(err, &pe)
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want it to wrap %v", err, tt.wantIs)
			}
			switch {
			case tt.name == "runtime error":
				if !panicked {
					t.Fatalf("err = %v, want a *PanicError", err)
				}
			case tt.wantVal != nil:
				if !panicked || pe.Value != tt.wantVal {
					t.Fatalf("err = %#v, want a *PanicError with %v", err, tt.wantVal)
				}
			default:
				if panicked {
					t.Fatalf("unexpected panic error %v", err)
				}
			}
			if panicked {
				if !bytes.Contains(pe.Stack, []byte("recover_test.go")) {
					t.Fatalf("stack does not show the panicking frame:\n%s", pe.Stack)
				}
				if middleware.IsPermanent(err) {
					t.Fatal("a panic must not be permanent: Retry should see it")
				}
			}
		})
	}
}
