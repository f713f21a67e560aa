# durabus — the whole set-up is `make demo` and `make test` (see README.md).
# Both install redis-server with apt-get when it is missing.

GO            ?= go
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN           := $(CURDIR)/bin
# A count, not a duration: go1.26's fuzz coordinator can fail a duration-bounded
# run with "context deadline exceeded" at its end on a loaded machine
# (golang/go#75804, fixed in go1.27); a count has no deadline to race.
FUZZTIME      ?= 20000x
SUDO          := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: test lint unit fuzz redis-server chromium bench chaos demo

## test: install Redis and Chromium if missing, check formatting, vet, staticcheck, then all tests with -race and a short fuzz run.
test: redis-server chromium lint unit fuzz

## demo: install Redis if missing, then run `durabus demo` against a private redis-server (about 10 s).
demo: redis-server
	$(GO) run ./cmd/durabus demo

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server not found: installing it with apt-get"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends redis-server </dev/null; \
	}
	@redis-server --version

## chromium: the headless browser of the console's tests (cmd/durabus serve_test.go), installed with
## apt-get when none of the names the tests look for is on PATH: Debian's chromium-headless-shell, else chromium.
CHROMIUM_NAMES := chromium-headless-shell chromium chromium-browser headless_shell
chromium:
	@found=; for n in $(CHROMIUM_NAMES); do command -v $$n >/dev/null 2>&1 && { found=$$n; break; }; done; \
	if [ -z "$$found" ]; then \
		echo "no headless Chromium found: installing chromium-headless-shell with apt-get"; \
		$(SUDO) apt-get update -q && \
		{ DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium-headless-shell </dev/null || \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium </dev/null; }; \
	else echo "headless Chromium: $$(command -v $$found)"; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	@test -x $(BIN)/staticcheck || GOBIN=$(BIN) $(GO) install $(STATICCHECK)
	$(BIN)/staticcheck ./...

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./envelope
	$(GO) test -run '^$$' -fuzz '^FuzzParseFrame$$' -fuzztime $(FUZZTIME) ./transport/redistransport
	$(GO) test -run '^$$' -fuzz '^FuzzMatchesEncodingJSON$$' -fuzztime $(FUZZTIME) ./envelope
	$(GO) test -run '^$$' -fuzz '^FuzzValidJSON$$' -fuzztime $(FUZZTIME) ./envelope

## chaos: the long fault schedule (TestChaos's 13 runs, the 4 process faults, the 5 data faults, the consumer-group history check
## and the 6 Redis Cluster runs of TestChaosCluster: graceful and forced failover and slot migration, plain and sharded Pub/Sub;
## each CHAOS_DURATION of faults: ≥ 15 minutes); prints the tables.
CHAOS_DURATION ?= 25s
chaos: redis-server
	@mkdir -p $(BIN)
	@rm -f $(BIN)/chaos-table.md
	$(GO) test -race -count=1 -timeout 80m -run '^TestChaos' -v ./internal/chaos -chaos.duration=$(CHAOS_DURATION) -chaos.out=$(BIN)/chaos-table.md

## bench: the benchmark suite (bench/, its own Go module) on a private redis-server and
## nats-server (installed with apt-get when missing; its columns are skipped when that fails).
## Prints the Markdown table and rewrites the generated section of docs/benchmarks.md.
BENCHFLAGS ?= -rounds 3
bench: redis-server
	@command -v nats-server >/dev/null 2>&1 || { \
		echo "nats-server not found: installing it with apt-get"; \
		{ $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends nats-server </dev/null; } || \
		echo "could not install nats-server: the JetStream columns will be skipped"; \
	}
	cd bench/peers && $(GO) run . $(BENCHFLAGS) -nats-server "$$(command -v nats-server || echo nats-server)" -plot ../../docs/scaling.png -doc ../../docs/benchmarks.md
