# fetchd developer tasks. Tools are installed into ./.bin at pinned versions,
# so a fresh machine needs nothing but Go.

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)

BUF_VERSION                := v1.47.2
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
STATICCHECK_VERSION        := v0.8.2
GRPCURL_VERSION            := v1.9.3

.PHONY: check test lint generate checkgenerate bench bench-compare fuzz tools run soak

# How much each fuzz target runs in `make fuzz` (and so in CI): a count of
# executions, not a duration. A duration-based -fuzztime can fail with a bare
# "context deadline exceeded" on a loaded machine (a race in Go 1.26's fuzz
# coordinator, golang.org/issue/75804); a count has no deadline to race.
# 50000 executions take about 3 to 12 seconds per target here.
FUZZTIME ?= 50000x
FUZZMINIMIZETIME ?= 2000x
FUZZ_TARGETS := \
	FuzzLoad:./internal/policy/ \
	FuzzRetryAfter:./internal/outbound/ \
	FuzzValidate:./internal/service/ \
	FuzzClassify:./internal/egress/ \
	FuzzParseURL:./internal/egress/ \
	FuzzPlainASCII:./internal/egress/ \
	FuzzJSONLine:./internal/calllog/

check: checkgenerate lint test fuzz ## everything CI runs: generated code fresh, lint, tests under -race, a short fuzz run

run: ## run fetchd on its embedded defaults
	go run ./cmd/fetchd

test: $(BIN)/grpcurl ## the whole test suite, under the race detector (starts Redis, installs node if needed)
	./scripts/ensure-redis
	./scripts/ensure-node
	go test -race -count=1 ./...
	# the outbound engine's tests again, plain-HTTP targets on the direct transport (fetchd's default)
	FETCHD_TEST_DIRECT_HTTP=1 go test -race -count=1 ./internal/outbound/

lint: tools ## vet, staticcheck, buf lint/format and breaking checks
	go vet ./...
	$(BIN)/staticcheck ./...
	buf lint
	buf format --diff --exit-code
	@if git rev-parse --verify -q main >/dev/null; then buf breaking --against '.git#branch=main'; fi

generate: tools ## regenerate gen/ from proto/
	rm -rf gen
	buf generate

checkgenerate: generate ## fail when gen/ is stale
	@test -z "$$(git status --porcelain -- gen)" || { echo "gen/ is stale: run 'make generate' and commit the result"; git status --porcelain -- gen; git diff --stat -- gen; exit 1; }

fuzz: ## each fuzz target for FUZZTIME executions from its committed seed corpus; a crash is written to testdata/fuzz and fails
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; pkg=$${t#*:}; \
		echo "go test -run '^$$' -fuzz '^$$name$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
	done

bench: ## benchmarks against a direct net/http baseline in the same run
	go test -run '^$$' -bench . -benchmem -count 6 ./internal/outbound/ ./internal/service/ ./internal/idempotency/ ./internal/policy/ ./cmd/fetchd/

soak: ## the soak run for 3 minutes: mixed traffic through the real binary; every call answered, no duplicate keyed write, resources back to rest
	FETCHD_SOAK=3m go test -race -count=1 -run '^TestSoak$$' -v ./cmd/fetchd/

BENCH_COMPARE_FLAGS ?= -duration 10s

bench-compare: ## fetchd against a direct call, a bare gRPC forwarder and haproxy on this machine; writes BENCHMARKS.md and docs/bench-compare.png (installs haproxy with apt-get if missing; about 3 minutes)
	./scripts/bench-compare $(BENCH_COMPARE_FLAGS)

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/staticcheck $(BIN)/grpcurl

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/staticcheck:
	GOBIN=$(BIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
$(BIN)/grpcurl:
	GOBIN=$(BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
