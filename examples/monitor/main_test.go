package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/durabus/durabus/internal/redistest"
)

func TestMonitorShowsStatusAndHealthAndNothingLostThroughConnectionKills(t *testing.T) {
	url := "redis://" + redistest.Start(t).Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	args := []string{"--redis", url, "--for", "2s", "--every", "500ms", "--rate", "400", "--chaos", "600ms"}
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	text := out.String()
	var published, delivered int
	if i := strings.LastIndex(text, "summary: "); i < 0 {
		t.Fatal("no summary")
	} else if _, err := fmt.Sscanf(text[i:], "summary: published %d, delivered %d", &published, &delivered); err != nil {
		t.Fatal(err)
	}
	if published < 100 || delivered != published {
		t.Errorf("published %d, delivered %d: want all delivered", published, delivered)
	}
	last := text[strings.LastIndex(text, "health round trip"):]
	for _, want := range []string{"sensors.*  connected=true", "lost=0", "sensors.a  cursor", "sensors.b  cursor", "lag 0"} {
		if !strings.Contains(last, want) {
			t.Errorf("last status has no %q", want)
		}
	}
	if strings.Count(text, "chaos: killed") < 2 || strings.Contains(last, "reconnects=0 ") {
		t.Error("want connection kills and the reconnects they caused in the status")
	}
}
