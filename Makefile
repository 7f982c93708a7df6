# crowdsurf: `make demo` runs the whole system on one machine; `make test` passes the tests.
GO      ?= go
BIN     := bin/crowdsurf
# Debian packages the tests need: ffmpeg (publishers, decoders, ffprobe) and docker-compose
# (only to validate docker-compose.yml; no Docker engine is needed).
DEBS    := ffmpeg docker-compose
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test deps vet demo loadtest fuzz bench clean

all: build

# The first build compiles every dependency (QUIC, NATS, RTSP) and takes about 90 s on two cores,
# with no output from go in the meantime: say so.
build:
	@echo "building $(BIN) (first build takes about 90 s)..."
	$(GO) build -o $(BIN) .

# deps installs what the tests need when it is missing, from Debian's packages.
deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v docker-compose >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@ffmpeg -hide_banner -version | head -1

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

test: deps vet
	$(GO) test -race -timeout 30m ./...

demo: build
	./$(BIN) demo

# The loadtest report in the README comes from this (see README "Measured").
loadtest: build
	./$(BIN) loadtest --peers 200 --net sim --duration 60s --json loadtest.json --html loadtest.html

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./proto ./origin ./internal/...

# Every fuzz target of the module, as package:target pairs (found in the *_test.go files, so a
# new target joins without editing this). One at a time; e.g.
#   make fuzz FUZZTIME=45s FUZZFLAGS='-parallel 1' FUZZ_TARGETS=./proto:FuzzParseChunk
# Inputs that fail are written to the package's testdata/fuzz/TARGET/: commit them with the fix.
FUZZTIME     ?= 60s
FUZZFLAGS    ?=
FUZZ_TARGETS ?= $(shell grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do \
	for fn in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do echo "$$(dirname "$$f"):$$fn"; done; done)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) "$$pkg"; \
	done

clean:
	rm -rf bin loadtest.json loadtest.html
