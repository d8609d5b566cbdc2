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


##@ CoreDNS with the kubelink plugin (plugin/, coredns-build/, test/dns/)

# Built without -trimpath so it shares the build cache with `go test`
# (the plugin's tests compile the same CoreDNS packages); go build itself is
# incremental, so this target is cheap when nothing changed.
.PHONY: coredns
coredns: ## build bin/coredns (CoreDNS v1.15.0 + kubelink)
	$(GO) build -o $(BIN)/coredns ./coredns-build

build: coredns

DNS_RUN_ADDR ?= 127.0.0.1
DNS_RUN_PORT ?= 1053
# The stand-ins for the cluster DNS servers the plugin asks (127.0.0.11,
# 127.0.0.12 and 127.0.0.100: server blocks of the same CoreDNS process)
# listen on this port.
DNS_RUN_STANDIN_PORT ?= 1054

# `make run` prints the dig commands of examples/run/digs.txt with their
# expected answers (the README's quick start lists the same; test/dns
# TestMakeRun runs `make run` and checks every answer), then runs CoreDNS in
# the foreground.
.PHONY: run
run: coredns ## serve the example mesh (examples/run) on 127.0.0.1:1053 offline, print dig commands and their answers
	@echo "serving the example mesh of examples/run on $(DNS_RUN_ADDR):$(DNS_RUN_PORT), its cluster DNS stand-ins on 127.0.0.11, .12 and .100:$(DNS_RUN_STANDIN_PORT); try:"
	@awk -v dig="dig @$(DNS_RUN_ADDR) -p $(DNS_RUN_PORT) +norec" ' \
		/^;/ || !NF { next } \
		/^#/ { print ""; print; next } \
		{ i = index($$0, " | "); if (!i) { print FILENAME ":" FNR ": no \" | \"" > "/dev/stderr"; exit 1 } \
		  printf "%-77s # %s\n", dig " " substr($$0, 1, i - 1), substr($$0, i + 3) }' examples/run/digs.txt
	@echo
	cd examples/run && DNS_RUN_ADDR=$(DNS_RUN_ADDR) DNS_RUN_PORT=$(DNS_RUN_PORT) DNS_RUN_STANDIN_PORT=$(DNS_RUN_STANDIN_PORT) \
		$(BIN)/coredns -conf ../../coredns-build/Corefile.example

.PHONY: bench-dns
bench-dns: coredns testenv ## dnsperf: CPU per query of kubelink vs hosts, rewrite+forward and the kubernetes plugin (BENCH_DNS_ARGS, e.g. -services 1000; not part of make test)
	$(GO) run ./test/dns/benchdns -coredns $(BIN)/coredns $(BENCH_DNS_ARGS)

FUZZ_DNS_TIME ?= 5m

.PHONY: fuzz-dns
fuzz-dns: ## fuzz the kubelink query path for FUZZ_DNS_TIME (default 5m)
	$(GO) test -run '^$$' -fuzz '^FuzzServeDNS$$' -fuzztime $(FUZZ_DNS_TIME) ./plugin/

##@ netd: the mesh gateway (netd/, test/netd/)

.PHONY: netd
netd: ## build bin/netd (broker, keygen, version)
	$(GO) build -ldflags '-X main.version=$(VERSION)' -o $(BIN)/netd ./netd

build: netd

.PHONY: bench-netd
bench-netd: ## root: broker reconcile at 250 links / 1000 MeshServices and 1000 links / 10000 MeshServices on the real kernel (not part of make test)
	$(GO) build -o $(BIN)/benchnetd ./test/netd/benchnetd
	$(BIN)/benchnetd $(BENCH_NETD_ARGS)

.PHONY: bench-sync
bench-sync: testenv ## netd sync against real apiservers, 3 remote × 1000 Services × 10 endpoints: converge, change p50/p99, no-op writes, RSS (BENCH_SYNC_ARGS; not part of make test)
	$(GO) build -o $(BIN)/benchsync ./test/netd/benchsync
	$(BIN)/benchsync $(BENCH_SYNC_ARGS)

.PHONY: bench-tunnel
bench-tunnel: netd testenv ## root, iperf3: raw veth vs bare wireguard-go vs netd wireguard vs netd bridge (not part of make test)
	$(GO) run ./test/netd/benchtunnel -netd $(BIN)/netd

##@ Helm chart and images (chart/kubelink, examples/, hack/ocibuild, test/chart, test/images)

# helm and the Kubernetes version it assumes offline (`helm template`,
# `helm lint`), from the modules pinned in go.mod.
HELM_MODULE_VERSION = $(shell $(GO) list -m -f '{{.Version}}' helm.sh/helm/v3)
HELM_LDFLAGS = -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_MODULE_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37

$(BIN)/helm: go.mod go.sum
	$(GO) build $(GOFLAGS_BUILD) -ldflags '$(HELM_LDFLAGS)' -o $@ helm.sh/helm/v3/cmd/helm

.PHONY: helm
helm: $(BIN)/helm ## helm v3 CLI at bin/helm, built from the helm.sh/helm/v3 module in go.mod

build: helm

.PHONY: helm-lint
helm-lint: helm ## helm lint --strict the chart with every examples values file
	@for f in examples/*/values*.yaml; do echo "== $$f"; $(BIN)/helm lint --strict chart/kubelink -f $$f; done

IMAGES        := $(BIN)/images
IMAGE_REPO    ?= kubelink
IMAGE_TAG     ?= $(VERSION)
IMAGE_SOURCE  ?= https://github.com/kubelink/kubelink
# Reproducible archives: every timestamp is the last commit's.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
OCIBUILD       = SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./hack/ocibuild -label org.opencontainers.image.version=$(IMAGE_TAG) \
	-label org.opencontainers.image.source=$(IMAGE_SOURCE) -label org.opencontainers.image.licenses=Apache-2.0 \
	-label org.opencontainers.image.revision=$(shell git rev-parse HEAD 2>/dev/null || echo unknown)

# The images' base is empty, so they get their own static (CGO_ENABLED=0)
# builds of the same packages as `make coredns` and `make netd`.
.PHONY: images
images: ## OCI image archives bin/images/{coredns,netd}.tar without a container daemon
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '-s -w' -o $(IMAGES)/static/coredns ./coredns-build
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '-s -w -X main.version=$(VERSION)' -o $(IMAGES)/static/netd ./netd
	$(OCIBUILD) -binary $(IMAGES)/static/coredns -path /coredns -ref $(IMAGE_REPO)/coredns:$(IMAGE_TAG) \
		-label org.opencontainers.image.title=kubelink-coredns \
		-label "org.opencontainers.image.description=CoreDNS with the kubelink plugin" \
		-port 8053/udp -port 8053/tcp -port 9153/tcp -o $(IMAGES)/coredns.tar
	$(OCIBUILD) -binary $(IMAGES)/static/netd -path /netd -ref $(IMAGE_REPO)/netd:$(IMAGE_TAG) -user 0:0 \
		-label org.opencontainers.image.title=kubelink-netd \
		-label "org.opencontainers.image.description=kubelink netd: mesh gateway (broker) and node router" \
		-dir /tmp -dir /var/run/wireguard -o $(IMAGES)/netd.tar

##@ Code generation

$(BIN)/controller-gen: go.mod go.sum
	$(GO) build -o $@ sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: generate
generate: $(BIN)/controller-gen ## regenerate deepcopy code and CRDs
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:dir=chart/kubelink/crds
	@# The MCS CRDs (ServiceExport, ServiceImport) come as published by the
	@# sigs.k8s.io/mcs-api module at the version go.mod pins, never edited or
	@# fetched by hand; install -m 0644 because the module cache is read-only.
	$(GO) mod download sigs.k8s.io/mcs-api
	mcs=$$($(GO) list -m -f '{{.Dir}}' sigs.k8s.io/mcs-api); \
	for f in multicluster.x-k8s.io_serviceexports.yaml multicluster.x-k8s.io_serviceimports.yaml; do \
		install -m 0644 "$$mcs/config/crd/$$f" chart/kubelink/crds/$$f; done

.PHONY: verify
verify: $(BIN)/controller-gen ## fail if `make generate` would change any file
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p "$$tmp/api" "$$tmp/crds"; cp -r api/. "$$tmp/api/"; cp -r chart/kubelink/crds/. "$$tmp/crds/"; \
	$(MAKE) --no-print-directory generate >/dev/null; \
	if ! diff -ru "$$tmp/api" api || ! diff -ru "$$tmp/crds" chart/kubelink/crds; then \
		echo "generated files were out of date: 'make generate' changed them (shown above); commit the result"; exit 1; fi; \
	echo "generated files are up to date"

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

$(TESTENV_BIN)/kube-controller-manager: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-controller-manager

$(TESTENV_BIN)/kube-proxy: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '$(K8S_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-proxy

$(TESTENV_BIN)/etcd: $(TESTENV_DEPS)
	cd $(TOOLS_MOD) && $(GO) build $(GOFLAGS_BUILD) -ldflags '-s -w' -o $@ ./etcd

.PHONY: testenv
testenv: $(TESTENV_BIN)/kube-apiserver $(TESTENV_BIN)/etcd $(TESTENV_BIN)/kubectl $(TESTENV_BIN)/kube-controller-manager $(TESTENV_BIN)/kube-proxy ## build etcd, kube-apiserver, kube-controller-manager, kube-proxy and kubectl into bin/testenv

##@ Test

# The end-to-end stage runs last, after everything it builds on passed.
E2E_PKG := ./test/e2e

.PHONY: test
test: ## everything CI runs: gofmt, go vet and generated code checked, unit, integration (real apiserver, CoreDNS), root tests, then the e2e
test: lint verify testenv build images
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/e2e$$')
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v $(E2E_PKG) 2>&1 | grep -vE '^\s+(I|E|W)[0-9]{4} |^\s+\[INFO\]'

.PHONY: e2e
e2e: ## root: the mesh-in-a-box end-to-end test (four simulated clusters: WireGuard, TLS bridge, pod mode with MeshServices, overlapping service CIDRs)
e2e: testenv build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v -run TestMeshInABox $(E2E_PKG)

.PHONY: demo
demo: ## root: bring the e2e mesh up, print what to try, tear down on Ctrl-C
demo: testenv build
	KUBELINK_DEMO=1 $(GO) test -count=1 -timeout 24h -v -run TestDemo $(E2E_PKG)

.PHONY: test-unit
test-unit: ## unit tests only (no binaries, no root)
	$(GO) test -count=1 -short ./...

.PHONY: clean
clean: ## remove bin/
	rm -rf $(BIN)
