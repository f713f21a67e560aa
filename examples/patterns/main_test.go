package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestPatternsGetsTopicsCreatedBeforeAndAfterAndNothingElse(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"--redis", url, "--users", "4"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{
		"user:1:notifications   seq 1: welcome",
		"user:2:notifications   seq 1: welcome",
		"user:1:notifications   seq 2: you have a new message",
		"user:2:notifications   seq 2: you have a new message",
		"user:3:notifications   seq 1: you have a new message", // created after the subscriber started
		"user:4:notifications   seq 1: you have a new message",
		"summary: 6 notifications on 4 topics",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q", want)
		}
	}
	if strings.Contains(out.String(), "theme=dark") {
		t.Error("user:1:settings was delivered: it does not match the pattern")
	}
}
