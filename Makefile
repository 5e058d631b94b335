# EpiTwin: authserver (OAuth2 authorization server) and simapi (simulation API).
# `make help` lists the targets. Every target works from a fresh clone with Go installed.

MODULES     := pkg authserver simapi
BIN         := bin
GO          ?= go
FUZZTIME    ?= 10s
BENCHTIME   ?= 1s
VAR         := var
# The race detector needs cgo and a C compiler; without them tests still run.
RACE        ?= $(shell [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v "$$($(GO) env CC)" >/dev/null 2>&1 && echo -race)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/authserver, bin/simapi and bin/loadgen
	@mkdir -p $(BIN)
	cd authserver && $(GO) build -o ../$(BIN)/authserver ./cmd/authserver
	cd authserver && $(GO) build -o ../$(BIN)/loadgen ./cmd/loadgen
	cd simapi && $(GO) build -o ../$(BIN)/simapi ./cmd/simapi

.PHONY: run
run: build ## build, seed a demo tenant and run both servers on the embedded SQLite default
	./deploy/run-local.sh

.PHONY: test
test: ## run every test of every module (PostgreSQL/Redis tests run when their URLs are set)
	@for m in $(MODULES); do \
		echo "== go test $$m"; \
		(cd $$m && $(GO) test -count=1 $(RACE) ./...) || exit 1; \
	done

.PHONY: bench
bench: ## micro-benchmarks with -benchmem, then the ratios taken in the same run
	@mkdir -p $(VAR)
	@for m in $(MODULES); do \
		(cd $$m && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...) || exit 1; \
	done | tee $(VAR)/bench.txt
	@./deploy/bench-ratios.sh $(VAR)/bench.txt

.PHONY: bench-load
bench-load: build ## load-test a running authserver on PostgreSQL (AUTH_BENCH_POSTGRES_URL) against its floors
	./deploy/bench-load.sh

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME (default 10s)
	@./deploy/fuzz-all.sh $(FUZZTIME)

.PHONY: lint
lint: ## go vet and gofmt -l must both be clean
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: clean
clean: ## remove binaries and the local data directory
	rm -rf $(BIN) $(VAR)
