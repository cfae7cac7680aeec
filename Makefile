# khw -- see README.md. `make check` is what CI runs.
GO      ?= go
GOBIN   ?= $(shell $(GO) env GOPATH)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/khw-dev/khw/internal/version.version=$(VERSION)
# Every plugins/NAME with a main package becomes bin/khw-plugin-NAME.
PLUGINS := $(notdir $(patsubst %/main.go,%,$(wildcard plugins/*/main.go)))
# Fuzz targets, PACKAGE:TARGET. Plain `go test` (make test) replays their
# seed corpora in testdata/fuzz/; `make fuzz` searches for new inputs.
FUZZ_TARGETS := ./builtins/all:FuzzEvaluate ./builtins/all:FuzzBuiltinArgs \
  ./builtins/pki:FuzzCSRJSON ./builtins/pki:FuzzConfigJSON ./runtime:FuzzParseState
FUZZTIME ?= 10m

export PATH := $(GOBIN):/usr/local/go/bin:$(PATH)

.PHONY: all build artifacts plugins test fuzz fuzz-ci lint docs bench tools deps check clean guest-image lb-image node-image registry-image lab lab-down e2e

all: build

build: ## bin/khw and every bin/khw-plugin-*
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/khw ./cmd/khw
	@for p in $(PLUGINS); do echo "go build -o bin/khw-plugin-$$p ./plugins/$$p"; \
	  $(GO) build -ldflags '$(LDFLAGS)' -o bin/khw-plugin-$$p ./plugins/$$p || exit 1; done

# Example providers are modules of their own (examples/*/go.mod): ./... at
# the root does not reach them.
EXAMPLES := $(patsubst %/go.mod,%,$(wildcard examples/*/go.mod))

# The labs and the clusters (tests/lab, tests/cluster) are make e2e's.
E2E_PKGS  := ./tests/lab/ ./tests/cluster/
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v -e /tests/lab$$ -e /tests/cluster$$)

test: build ## every test but the labs (make e2e), against real tools; each skip is listed with its reason; and each example provider's own tests
	KHW_REQUIRE_TOOLS=$${KHW_REQUIRE_TOOLS-1} GO=$(GO) bash scripts/gotest.sh $(UNIT_PKGS)
	@for e in $(EXAMPLES); do echo "cd $$e && go test ./..."; (cd $$e && $(GO) test -count=1 ./...) || exit 1; done

fuzz: ## each fuzz target for $(FUZZTIME) (default 10m), one after the other, on one core
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh $(FUZZ_TARGETS)

fuzz-ci: ## each fuzz target briefly (20s), as `make check` does
	$(MAKE) fuzz FUZZTIME=20s

lint: ## tracked build output (ELF, >1 MB), gofmt, go vet, staticcheck (the example providers' modules too)
	bash scripts/check-tracked.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...
	@for e in $(EXAMPLES); do echo "cd $$e && go vet ./... && staticcheck ./..."; (cd $$e && $(GO) vet ./... && staticcheck ./...) || exit 1; done

docs: ## README.md's builtin reference (khw docs) and docs/lab.svg, docs/lab.png (khw graph; needs graphviz)
	$(GO) run ./cmd/khw docs --readme README.md
	$(GO) run ./cmd/khw graph recipes/hardway.star --out docs/lab.svg
	$(GO) run ./cmd/khw graph recipes/hardway.star --out docs/lab.png

bench: build tools ## the speed table (README): writes bench/RESULTS.md; KHW_BENCH_LAB=1 with the lab up
	$(GO) run ./bench/report

tools: ## the Go tools tests and lint use
	@command -v cfssl >/dev/null && command -v cfssljson >/dev/null || \
	  $(GO) install github.com/cloudflare/cfssl/cmd/cfssl@v1.6.5 github.com/cloudflare/cfssl/cmd/cfssljson@v1.6.5
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

deps: ## the machine's packages (Debian/Ubuntu, as root)
	bash scripts/install-deps.sh

# The machine's artifact cache (shared by every workdir) and the workdir
# that records what make artifacts made.
ARTIFACT_CACHE   ?= /var/lib/khw/artifacts
ARTIFACT_WORKDIR ?= /var/lib/khw/artifacts-run

artifacts: build ## the cluster's binaries (Kubernetes, etcd, CNI plugins, flannel, CoreDNS, containerd) into $(ARTIFACT_CACHE); offline, ~15 min cold
	bin/khw run recipes/artifacts.star --workdir $(ARTIFACT_WORKDIR) --parallelism 1 \
	  --set artifacts_dir=$(ARTIFACT_CACHE) --set artifact_source=build

guest-image: ## the lab's Debian guest image, cached in /var/lib/khw/images (root)
	bash scripts/guest-image.sh

lb-image: ## khw/nginx-stream:local, the offline load balancer image (needs dockerd)
	bash scripts/lb-image.sh

registry-image: ## khw/registry:local, the offline image registry, from Debian's docker-registry (needs dockerd)
	bash scripts/registry-image.sh

node-image: ## khw/node:local, the image of container nodes (needs dockerd)
	bash scripts/node-image.sh

lab: ## the post's lab in a network namespace: build, image, daemons, khw run (root)
	bash scripts/lab.sh up

lab-down: ## khw destroy and remove the lab
	bash scripts/lab.sh down

e2e: deps build artifacts ## the labs and the cluster, each checked, then destroyed (root, ~30 min)
	KHW_E2E=1 $(GO) test -count=1 -p 1 -timeout 80m -v $(E2E_PKGS)

check: deps tools lint artifacts test fuzz-ci e2e ## everything CI does, from a fresh machine

clean:
	rm -rf bin
