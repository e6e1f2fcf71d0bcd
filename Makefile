# confab build. The two commands people need:
#
#   make run    build bin/confab and run one node on http://localhost:8080
#   make test   install whatever is missing, then run every check:
#               templ freshness, go vet, Go tests (race), every Go benchmark
#               once, Playwright in Chromium
#
# Other targets: build, generate, vet, gotest, benchonce, e2e, cluster, deps,
# bench (benchmarks + load scenarios -> docs/performance.md), clean.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

export GOTOOLCHAIN := local

GO        ?= go
CHROMIUM  ?= /usr/bin/chromium
BIN       := bin
CONFAB    := $(BIN)/confab
CONSUL    := $(BIN)/consul
LOADGEN   := $(BIN)/confab-load
CLIP      := $(BIN)/media/720p
# apt-get needs root; use sudo when we are not root.
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Cluster tests look for the Consul binary here.
export CONFAB_CONSUL_BIN := $(abspath $(CONSUL))

.PHONY: build run test deps chromium mediatools iproute2 iptables consul npm generate templcheck vet gotest benchonce e2e cluster bench clean FORCE

## build: compile bin/confab (go build is incremental, so always ask it).
build: $(CONFAB) $(LOADGEN)

$(CONFAB): FORCE
	$(GO) build -o $@ ./cmd/confab

$(LOADGEN): FORCE
	$(GO) build -o $@ ./cmd/confab-load

## run: one node on http://localhost:8080, single-node mode (no Consul).
run: build
	./$(CONFAB) --http-addr 127.0.0.1:8080

## test: everything. Installs missing tools first.
test: deps templcheck vet gotest benchonce e2e

## deps: what the tests need and the Go toolchain does not bring.
deps: chromium mediatools iproute2 iptables consul npm

## chromium: Debian's Chromium for Playwright (apt, needs root or sudo).
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing chromium with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

## mediatools: Debian's VP8 and Opus encoders, which make the load
## generator's test clips (apt, needs root or sudo).
mediatools:
	@if ! command -v vpxenc >/dev/null || ! command -v opusenc >/dev/null; then \
		echo "installing vpx-tools and opus-tools with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y vpx-tools opus-tools; \
	fi

## iproute2: ip and tc, with which the shaped-network browser tests make
## network namespaces and limit their links (apt, needs root or sudo).
iproute2:
	@if ! PATH="$$PATH:/usr/sbin:/sbin" command -v ip >/dev/null || ! PATH="$$PATH:/usr/sbin:/sbin" command -v tc >/dev/null; then \
		echo "installing iproute2 with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2; \
	fi

## iptables: the reach browser tests drop UDP (and TCP to the media port)
## inside their network namespaces (apt, needs root or sudo).
iptables:
	@if ! PATH="$$PATH:/usr/sbin:/sbin" command -v iptables >/dev/null; then \
		echo "installing iptables with apt-get"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y iptables; \
	fi

## consul: the Consul agent pinned by tools/consul, built once into bin/.
consul: $(CONSUL)

$(CONSUL):
	@mkdir -p $(BIN)
	cd tools/consul && GONOSUMDB=github.com/hashicorp/consul-awsauth \
		$(GO) build -o ../../$(CONSUL) github.com/hashicorp/consul

## npm: Playwright's npm packages (the browser itself comes from apt).
npm: e2e/node_modules/.package-lock.json

e2e/node_modules/.package-lock.json: e2e/package.json e2e/package-lock.json
	cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	@touch $@

## generate: regenerate Go code from templates/*.templ.
generate:
	$(GO) tool templ generate -path templates

## templcheck: fail when generated templ code is stale.
templcheck:
	./tools/templcheck.sh templates

vet:
	$(GO) vet ./...

## gotest: Go unit and integration tests with the race detector.
gotest: consul
	$(GO) test -race -count=1 -timeout 25m ./...
	# Zero-allocation checks run without -race, which makes sync.Pool drop items.
	$(GO) test -count=1 -run 'DoesNotAllocate' ./...

## benchonce: every Go benchmark for one iteration, so none of them rots.
benchonce: consul
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 10m ./...

## e2e: Playwright tests against the real bin/confab in Chromium.
e2e: build chromium iproute2 iptables npm consul
	cd e2e && CONFAB_BIN="$(abspath $(CONFAB))" CHROMIUM="$(CHROMIUM)" npx playwright test

## cluster: a local Consul agent plus three nodes on 127.0.0.1:8081-8083.
cluster: build consul
	./tools/cluster.sh

## bench: Go benchmarks with -benchmem plus the load scenarios (tools/bench.sh),
## with the server and the generator pinned to different CPUs, and the N=200
## fan-out run alternately against this build and BENCH_BASE's (default
## 9fd9194, main before simulcast; BENCH_BASE=none skips it); rewrites the
## generated part of docs/performance.md. Needs an otherwise idle box and
## the git history (the base is built from a temporary worktree).
bench: build consul mediatools $(CLIP)/video.ivf
	./tools/bench.sh

## The 720p, 2 Mbit/s VP8 + Opus clip the load generator sends (made once).
$(CLIP)/video.ivf: | $(LOADGEN) mediatools
	./$(LOADGEN) clip --out $(CLIP)

clean:
	rm -rf $(CONFAB) $(LOADGEN) e2e/test-results e2e/playwright-report

## fuzz: search for failing signaling inputs, FUZZTIME per fuzz target.
FUZZTIME ?= 60s
.PHONY: fuzz
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParseMessage -fuzztime=$(FUZZTIME) ./web/
	$(GO) test -run='^$$' -fuzz=FuzzSession -fuzztime=$(FUZZTIME) ./web/

FORCE:
