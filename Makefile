# crowdsurf: `make demo` runs the whole system on one machine; `make test` passes the tests.
GO      ?= go
BIN     := bin/crowdsurf
STATICCHECK := v0.8.2
# What a viewer downloads: `crowdsurf-peer WATCHLINK` (main.go runs a build's only command).
VIEWER_BIN := bin/crowdsurf-peer
# Debian packages the tests need: ffmpeg (publishers, decoders, ffprobe), docker-compose
# (only to validate docker-compose.yml; no Docker engine is needed), and iproute2 and nftables
# for the kernel NAT tests in network namespaces (run as root only, see test).
DEBS    := ffmpeg docker-compose iproute2 nftables
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The web player's browser test: a node project (pinned playwright-core) that drives Chromium.
BROWSER_TEST := webui/testdata/browser
# hls.js is vendored into the web player; webui/hls.js.pin holds its version and SHA-256.
HLSJS_PIN    := webui/hls.js.pin
HLSJS_OUT    := webui/static/vendor

.PHONY: all build test deps vet demo loadtest scale fuzz bench bench-floor bench-peer bench-tracker clean webui-update webui-screenshots

all: build

# The first build compiles every dependency (QUIC, NATS, RTSP) and takes about 90 s on two cores,
# with no output from go in the meantime: say so.
build:
	@echo "building $(BIN) (first build takes about 90 s)..."
	$(GO) build -o $(BIN) .
	@echo "building $(VIEWER_BIN): the viewer's binary, the peer command alone (no NATS server, no RTSP, no load test)"
	$(GO) build -tags viewer -trimpath -ldflags "-s -w" -o $(VIEWER_BIN) .
	@ls -l $(BIN) $(VIEWER_BIN) | awk '{printf "  %-24s %5.1f MB\n", $$NF, $$5/1e6}'

# deps installs what the tests need when it is missing, from Debian's packages.
deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v nft >/dev/null 2>&1 || missing="$$missing nftables"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@ffmpeg -hide_banner -version | head -1
	@# The web player's browser test (webui): Debian's Chromium driven by playwright-core.
	@command -v chromium >/dev/null 2>&1 || { echo "installing: chromium"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@command -v npm >/dev/null 2>&1 || { echo "installing: nodejs npm"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	@cd $(BROWSER_TEST) && \
	[ "$$(node -p "require('./node_modules/playwright-core/package.json').version" 2>/dev/null)" = \
	  "$$(node -p "require('./package.json').dependencies['playwright-core']")" ] || \
	npm ci --silent --no-audit --no-fund

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@# staticcheck, pinned (the module proxy serves it; the first run compiles it, about a minute)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

# As root (CI) the kernel NAT tests run too (CROWDSURF_NETNS=1: network namespaces behind
# nftables routers); they fail, saying why, if the machine cannot build them. Not as root they
# are skipped, and this says so.
test: deps vet
	@if [ "$$(id -u)" = 0 ]; then netns=1; else netns=; echo "not root: the kernel NAT tests (network namespaces) are skipped; CI runs them as root"; fi; \
	CROWDSURF_NETNS=$$netns $(GO) test -race -timeout 30m ./...

demo: build
	./$(BIN) demo

# The loadtest report in docs/measurements.md ("Load tests") comes from this.
loadtest: build
	./$(BIN) loadtest --peers 200 --net sim --duration 60s --json loadtest.json --html loadtest.html

# The scale lab: the same load test in virtual time (testing/synctest; loadtest/lab.go), so a
# swarm of a thousand peers behaves as if each had its own machine, however long it takes here.
# Writes scale.json and scale.html. E.g. make scale SCALE_FLAGS='-lab.peers 2000 -lab.churn 10'
# (flags: -lab.peers -lab.duration -lab.churn -lab.join -lab.nat -lab.uplink -lab.bitrate -lab.latency
# -lab.startwait -lab.ll -lab.heapprofile -lab.log; README "Measured" says what each does)
SCALE_FLAGS ?= -lab.peers 1000 -lab.duration 60s
scale:
	nice $(GO) test -run '^TestScaleLab$$' -count 1 -timeout 0 -v ./loadtest -args $(SCALE_FLAGS) \
		-lab.json $(CURDIR)/scale.json -lab.html $(CURDIR)/scale.html

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./proto ./origin ./segwindow ./internal/...
	$(GO) test -run '^$$' -bench ChunkPath -benchtime 2s ./peer

# The mesh against the floor (a bare quic-go relay tree of as many nodes, same bitrate, loopback
# UDP), in one run: the report's "floor" line gives the ratio of their CPU and the RSS per peer.
bench-floor: build
	./$(BIN) loadtest --peers 100 --net udp --duration 40s --floor --json bench-floor.json

# One real viewer process (bin/crowdsurf peer) in a formed swarm of real processes on loopback UDP
# (tracker, origin fed a 2 Mbit/s clip over RTSP, 8 more viewers), every chunk's signature checked:
# its CPU and RSS from /proc over a 30 s window (docs/measurements.md). Needs ffmpeg. It joins last,
# so it is a leaf; -peer.relay has it join first, so it is the root's child on every stripe and
# the others join below it (its children, and how they were served, from their /stats).
# -peer.args passes flags to it. E.g.
#   make bench-peer PEER_FLAGS='-peer.window 60s -peer.video 3800k'
#   make bench-peer PEER_FLAGS="-peer.relay -peer.args '--cores 2'"
PEER_FLAGS ?=
bench-peer: build
	$(GO) test -run '^TestPeerProcessCost$$' -count 1 -v . -args -peer.bench $(PEER_FLAGS)

# Announce throughput over loopback HTTP: one tracker on embedded NATS, then two trackers sharing a
# three-node NATS cluster (docs/measurements.md). Each run prints announces/s, p50/p99, KV writes, and
# the CPU per announce of the trackers' process and of the load client (a process of its own).
# E.g. make bench-tracker LOAD_FLAGS='-load.peers 20000'
LOAD_FLAGS ?= -load.duration 10s -load.concurrency 64 -load.peers 10000
bench-tracker:
	$(GO) test -run '^TestAnnounceLoad$$' -count 1 -v ./tracker -args $(LOAD_FLAGS) -load.trackers 1
	$(GO) test -run '^TestAnnounceLoad$$' -count 1 -v ./tracker -args $(LOAD_FLAGS) -load.trackers 2

# Every fuzz target of the module, as package:target pairs (found in the *_test.go files, so a
# new target joins without editing this). One at a time; e.g.
#   make fuzz FUZZTIME=45s FUZZFLAGS='-parallel 1' FUZZ_TARGETS=./proto:FuzzParseChunk
# Inputs that fail are written to the package's testdata/fuzz/TARGET/: commit them with the fix.
# Minimising is capped at 2 s (Go's default is a minute): with large inputs cached from earlier
# runs FuzzRemux otherwise spent its whole minute shrinking them, 83 executions in 60 s.
FUZZTIME     ?= 60s
FUZZFLAGS    ?= -fuzzminimizetime 2s
FUZZ_TARGETS ?= $(shell grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do \
	for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do echo "$$(dirname "$$f"):$$fn"; done; done)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) "$$pkg"; \
	done

# webui-update fetches the pinned hls.js from npm, checks its SHA-256 against $(HLSJS_PIN) and
# vendors it (with a licence header line) into the embedded web player. go build never needs npm.
webui-update:
	@set -e; \
	v=$$(awk '$$1=="version"{print $$2}' $(HLSJS_PIN)); \
	f=$$(awk '$$1=="file"{print $$2}' $(HLSJS_PIN)); \
	want=$$(awk '$$1=="sha256"{print $$2}' $(HLSJS_PIN)); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent "hls.js@$$v" >/dev/null && tar xzf "hls.js-$$v.tgz"); \
	got=$$(sha256sum "$$tmp/package/$$f" | cut -d' ' -f1); \
	if [ "$$got" != "$$want" ]; then \
		echo "hls.js@$$v $$f has SHA-256 $$got, $(HLSJS_PIN) says $$want; not vendored."; \
		echo "If you meant to change the version, read its release notes and put the new SHA-256 in $(HLSJS_PIN)."; \
		exit 1; \
	fi; \
	{ printf '/*! hls.js %s (npm hls.js@%s %s, SHA-256 %s) | Apache License 2.0, Copyright (c) 2017 Dailymotion | see LICENSE.hls.js */\n' "$$v" "$$v" "$$f" "$$got"; \
	  cat "$$tmp/package/$$f"; } > $(HLSJS_OUT)/$$(basename $$f); \
	cp "$$tmp/package/LICENSE" $(HLSJS_OUT)/LICENSE.hls.js; \
	echo "vendored hls.js@$$v $$f ($$got) into $(HLSJS_OUT)"

# webui-screenshots runs the browser test and keeps its screenshots in docs/ (README shows them).
webui-screenshots: deps
	WEBUI_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run TestBrowser -v ./webui

clean:
	rm -rf bin loadtest.json loadtest.html bench-floor.json scale.json scale.html
