package middleware_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The core middleware package depends on the standard library, bus and the
// durabus packages bus needs: importing it for Retry pulls neither go-redis
// nor OpenTelemetry (they live in middleware/redisdedupe,
// middleware/metrics and middleware/tracing).
func TestDependsOnStdlibAndBusAlone(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the dependencies: %v", err)
	}
	deps := func(pkg string) []string {
		t.Helper()
		out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	allowed := map[string]bool{}
	for _, p := range deps("github.com/durabus/durabus/bus") {
		allowed[p] = true
	}
	for _, p := range deps("github.com/durabus/durabus/middleware") {
		switch {
		case strings.HasPrefix(p, "github.com/redis/go-redis"), strings.HasPrefix(p, "go.opentelemetry.io/"):
			t.Errorf("middleware depends on %s", p)
		case !allowed[p] && p != "github.com/durabus/durabus/middleware":
			t.Errorf("middleware depends on %s, which bus does not need", p)
		}
	}
}
