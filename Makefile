# kubelink — the front door. `make help` lists the targets.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
GO           ?= go
BIN          := $(CURDIR)/bin
TESTENV_BIN  := $(BIN)/testenv
TOOLS_MOD    := test/testenv/tools
K8S_VERSION  := v1.37.1
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath
export GOFLAGS := -buildvcs=false
# Outside CI, tests that need root or a kernel feature skip with the reason;
# under CI=true a missing prerequisite fails.
TEST_TIMEOUT ?= 60m

K8S_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitTreeState=clean \
	-X k8s.io/client-go/pkg/version.gitVersion=$(K8S_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=1 \
	-X k8s.io/client-go/pkg/version.gitMinor=37

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

##@ Build

.PHONY: build
build: ## build every binary into bin/


##@ Code generation

$(BIN)/controller-gen: go.mod go.sum
	$(GO) build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: generate
generate: $(BIN)/controller-gen ## regenerate deepcopy code and CRDs
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:dir=chart/kubelink/crds

.PHONY: verify
verify: generate ## fail if generated files or formatting are out of date
	@if [ -n "$$(git status --porcelain -- api chart/kubelink/crds)" ]; then \
		echo "generated files are out of date; run 'make generate' and commit:"; \
		git status --porcelain -- api chart/kubelink/crds; git diff --stat -- api chart/kubelink/crds; exit 1; fi
	@echo "generated files are up to date"

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

##@ Test environment (real etcd + kube-apiserver, built from Go modules)

TESTENV_DEPS := $(TOOLS_MOD)/go.mod $(TOOLS_MOD)/go.sum $(TOOLS_MOD)/etcd/main.go

$(TESTENV_BIN)/kube-apiserver: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

$(TESTENV_BIN)/kubectl: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kubectl

$(TESTENV_BIN)/etcd: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '-s -w' -o $@ ./etcd

.PHONY: testenv
testenv: $(TESTENV_BIN)/kube-apiserver $(TESTENV_BIN)/etcd $(TESTENV_BIN)/kubectl ## build etcd, kube-apiserver and kubectl into bin/testenv

##@ Test

.PHONY: test
test: ## everything CI runs: unit, integration (real apiserver, CoreDNS) and root tests
test: testenv build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

.PHONY: test-unit
test-unit: ## unit tests only (no binaries, no root)
	$(GO) test -count=1 -short ./...

.PHONY: clean
clean: ## remove bin/
	rm -rf $(BIN)
