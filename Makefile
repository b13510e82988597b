# PushGo Event Gateway — the single entry point. `make help` lists the targets.
# Tool versions are pinned; tools are installed into ./bin with `go install` on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.33.0
GOLANGCI_LINT_VERSION      := v2.15.0
OAPI_CODEGEN_VERSION       := v2.8.2
# What `pushgo version` prints: the commit (with -dirty for uncommitted changes), "dev" outside a git checkout.
PUSHGO_VERSION             := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The v1 grpc-gateway module is the one Go module that ships google/api/{annotations,http}.proto.
GOOGLEAPIS_MODULE          := github.com/grpc-ecosystem/grpc-gateway@v1.16.0

BIN        := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
MODULE_DIRS = $(shell go list -m -f '{{.Dir}}')
MODULES     = $(addsuffix /...,$(MODULE_DIRS))
GOOGLEAPIS := third_party/googleapis/google/api
DATA_DIR   ?= data
TEST_FLAGS ?= -race -count=1 -shuffle=on -timeout=15m

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

## --- run -----------------------------------------------------------------

.PHONY: build
build: ## build bin/pushgo
	cd cmd/pushgo && go build -trimpath -ldflags='-X main.version=$(PUSHGO_VERSION)' -o $(BIN)/pushgo .

.PHONY: run
run: build ## start the gateway with its embedded JetStream (store in ./data) on 127.0.0.1:6666
	$(BIN)/pushgo serve --data-dir $(DATA_DIR)

## --- checks --------------------------------------------------------------

.PHONY: test
test: fmt-check vet gen-check lint test-go test-partitions test-cluster-if-docker ## everything CI checks

.PHONY: test-go
test-go: ## go test -race of every module (fuzz seed corpora included)
	go test $(TEST_FLAGS) $(MODULES)

# The end-to-end suite once more on a store of 3 partitions (--partitions 3): the conformance,
# crash and delivery tests must hold whichever stream a channel lands in.
.PHONY: test-partitions
test-partitions: ## the end-to-end suite (cmd/pushgo) on a 3-partition store
	cd cmd/pushgo && PUSHGO_TEST_PARTITIONS=3 go test $(TEST_FLAGS) .

# The cluster fault suite needs a Docker engine; where none answers it says so and is skipped.
.PHONY: test-cluster-if-docker
test-cluster-if-docker:
	@if docker info >/dev/null 2>&1; then $(MAKE) test-cluster; \
	 else echo "test-cluster: no Docker engine answers; the cluster fault suite is skipped"; fi

.PHONY: test-cluster
test-cluster: images deploy-secrets ## the cluster fault suite (testcontainers: 3 NATS nodes, 2× each service; TLS and per-service users)
	$(MAKE) docker-sweep
	cd test/cluster && PUSHGO_CLUSTER_SUITE=1 TESTCONTAINERS_RYUK_DISABLED=true go test -count=1 -timeout=15m -v -run TestClusterFaults . ; \
	  status=$$?; $(MAKE) -C $(CURDIR) docker-sweep; exit $$status

# Containers, networks and volumes the suite left behind (it removes its own; this is for a
# killed run).
.PHONY: docker-sweep
docker-sweep:
	@docker ps -aq --filter label=org.testcontainers=true | xargs -r docker rm -f -v >/dev/null
	@docker network ls -q --filter label=org.testcontainers=true | xargs -r docker network rm >/dev/null

.PHONY: fmt
fmt: ## format the Go code
	gofmt -w $(MODULE_DIRS)

.PHONY: fmt-check
fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $(MODULE_DIRS)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every module
	go vet $(MODULES)

.PHONY: lint
lint: $(BIN)/golangci-lint ## golangci-lint every module (.golangci.yml)
	@set -e; for d in $(MODULE_DIRS); do echo "lint $$d"; (cd $$d && $(BIN)/golangci-lint run --config $(CURDIR)/.golangci.yml ./...); done

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	cd services/ingest && go test -run '^$$' -fuzz FuzzDecodeEventRequest -fuzztime $${FUZZTIME:-30s} ./internal/validate/
	cd proto && go test -run '^$$' -fuzz FuzzToken -fuzztime $${FUZZTIME:-30s} ./bus/
	cd services/ingest && go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $${FUZZTIME:-30s} ./internal/ratelimit/
	cd services/ingest && go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $${FUZZTIME:-30s} ./internal/streamlimit/
	cd proto && go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $${FUZZTIME:-30s} ./opfilter/
	cd services/dispatch && go test -run '^$$' -fuzz '^FuzzErrorCode$$' -fuzztime $${FUZZTIME:-30s} ./internal/fcm/
	cd services/dispatch && go test -run '^$$' -fuzz '^FuzzParseCredentials$$' -fuzztime $${FUZZTIME:-30s} ./internal/fcm/
	cd services/dispatch && go test -run '^$$' -fuzz '^FuzzParseKey$$' -fuzztime $${FUZZTIME:-30s} ./internal/apns/
	cd services/ingest && go test -run '^$$' -fuzz '^FuzzRenameKeys$$' -fuzztime $${FUZZTIME:-30s} ./internal/httpapi/

## --- performance -------------------------------------------------------

BENCH_FLAGS ?=
# The soaks keep the number of events fixed (created first, then only updated), so that what
# grows between 1M and 3M ops is what grows with ops (issue 12); SOAK_FLAGS= runs the
# create-update-close lifecycles of new events instead (the sixth session's soak).
SOAK_FLAGS ?= -live-events 10000

.PHONY: bench
bench: build ## load-test pushgo serve (lifecycle, fan-out, baseline); ends with the "bench:" line
	cd bench && go run . -pushgo $(BIN)/pushgo $(BENCH_FLAGS)

.PHONY: bench-soak
bench-soak: build ## 1M ops on 10,000 live events: RSS at the end of the load and after 3 min idle, idle CPU
	cd bench && go run . -pushgo $(BIN)/pushgo -ops 1000000 $(SOAK_FLAGS) -fanout-duration 0 -baseline 0 -noisy-duration 0 -idle 3m $(BENCH_FLAGS)

.PHONY: bench-soak-3m
bench-soak-3m: build ## the same with 3M ops (the growth between 1M and 3M, issue 12)
	cd bench && go run . -pushgo $(BIN)/pushgo -ops 3000000 $(SOAK_FLAGS) -fanout-duration 0 -baseline 0 -noisy-duration 0 -idle 3m $(BENCH_FLAGS)

## --- code generation -----------------------------------------------------

.PHONY: gen
GENERATED := proto/gen proto/openapi services/ingest/internal/apidoc cmd/pushgo/internal/apiclient

gen: tools $(GOOGLEAPIS)/annotations.proto ## regenerate proto/gen, proto/openapi, the served OpenAPI spec and docs page, and the client generated from them
	buf lint
	buf generate
	cd services/ingest && go run ./internal/apidoc/gen -swagger ../../proto/openapi/pushgo.swagger.json -out internal/apidoc
	cd cmd/pushgo/internal/apiclient && $(BIN)/oapi-codegen -config oapi-codegen.yaml ../../../../services/ingest/internal/apidoc/openapi.json

.PHONY: gen-check
gen-check: gen ## fail when the committed generated code is not what `make gen` produces
	@git diff --exit-code -- $(GENERATED)
	@untracked=$$(git status --porcelain --untracked-files=all -- $(GENERATED)); \
	  if [ -n "$$untracked" ]; then echo "generated files not committed:"; echo "$$untracked"; exit 1; fi

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-grpc-gateway $(BIN)/protoc-gen-openapiv2 $(BIN)/oapi-codegen

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(BIN)/protoc-gen-grpc-gateway:
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
$(BIN)/protoc-gen-openapiv2:
	GOBIN=$(BIN) go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
$(BIN)/oapi-codegen:
	GOBIN=$(BIN) go install github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@$(OAPI_CODEGEN_VERSION)
$(BIN)/golangci-lint:
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# google/api/*.proto for the HTTP rules, copied (git-ignored) from the Go module proxy.
$(GOOGLEAPIS)/annotations.proto:
	mkdir -p $(GOOGLEAPIS)
	dir=$$(cd /tmp && GOWORK=off GOFLAGS=-mod=mod go mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	  test -n "$$dir" && install -m 0644 $$dir/third_party/googleapis/google/api/annotations.proto $$dir/third_party/googleapis/google/api/http.proto $(GOOGLEAPIS)/

## --- containers ----------------------------------------------------------

IMAGES := deploy/images
COMPOSE := docker-compose -p pushgo -f deploy/compose.yaml

.PHONY: images
images: ## static binaries and FROM-scratch images pushgo:dev and pushgo-nats:dev
	cd cmd/pushgo && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w -X main.version=$(PUSHGO_VERSION)' -o $(CURDIR)/$(IMAGES)/pushgo/pushgo .
	cd proto && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(CURDIR)/$(IMAGES)/nats/nats-server github.com/nats-io/nats-server/v2
	docker build -q -t pushgo:dev $(IMAGES)/pushgo
	docker build -q -t pushgo-nats:dev $(IMAGES)/nats

# The CA, NATS certificates, users and configuration of the cluster (pushgo deploy-secrets,
# package cmd/pushgo/internal/deploygen), git-ignored. Existing secrets are kept.
DEPLOY_SECRETS := deploy/generated

.PHONY: deploy-secrets
deploy-secrets: ## generate (or complete) deploy/generated: CA, NATS certificates, users, passwords
	cd cmd/pushgo && go run . deploy-secrets --dir $(CURDIR)/$(DEPLOY_SECRETS)

.PHONY: compose-up
compose-up: images deploy-secrets ## start the cluster of deploy/compose.yaml (ingest on 127.0.0.1:6666 and :6676)
	$(COMPOSE) up -d
	@for i in $$(seq 1 60); do \
	  curl -sf 127.0.0.1:6666/readyz >/dev/null && curl -sf 127.0.0.1:6676/readyz >/dev/null && { echo "cluster ready"; exit 0; }; \
	  sleep 1; done; echo "cluster not ready after 60s"; $(COMPOSE) ps; exit 1

.PHONY: compose-down
compose-down: ## stop the cluster and remove its containers, network and volumes
	$(COMPOSE) down -v --remove-orphans

.PHONY: clean
clean: ## remove built binaries and tools
	rm -rf $(BIN) third_party $(IMAGES)/pushgo/pushgo $(IMAGES)/nats/nats-server
