package redisproc_test

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/durabus/durabus/internal/redisproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartStop(t *testing.T) {
	s, err := redisproc.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.URL() != "redis://"+s.Addr() {
		t.Fatalf("URL %q", s.URL())
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestStartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, err := redisproc.Start(ctx)
	if err == nil {
		// It may have answered before the ctx was looked at.
		_ = s.Stop()
	}
}

func TestNotFound(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := redisproc.Start(context.Background()); err != redisproc.ErrNotFound {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	_ = os.Getenv("PATH")
}
