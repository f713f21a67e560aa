package exredis

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestConnectWithoutURLStartsAndStopsAPrivateServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out bytes.Buffer
	rdb, closeRedis, err := Connect(ctx, "", &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "private redis-server") {
		t.Errorf("said %q, want a note about the private server", out.String())
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := rdb.Options().Addr
	closeRedis()
	if _, _, err := Connect(ctx, "redis://"+addr, &out); err == nil {
		t.Errorf("the private server on %s still answers after the stop", addr)
	}
}

func TestConnectReportsABadURLAndAnUnreachableServer(t *testing.T) {
	ctx := context.Background()
	if _, _, err := Connect(ctx, "http://nope", nil); err == nil || !strings.Contains(err.Error(), "--redis") {
		t.Errorf("bad URL: %v", err)
	}
	if _, _, err := Connect(ctx, "redis://127.0.0.1:1", nil); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
}
