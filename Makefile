# crowdsurf: `make demo` runs the whole system on one machine; `make test` passes the tests.
GO      ?= go
BIN     := bin/crowdsurf
# Debian packages the tests need: ffmpeg (publishers, decoders, ffprobe) and docker-compose
# (only to validate docker-compose.yml; no Docker engine is needed).
DEBS    := ffmpeg docker-compose
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test deps vet demo loadtest fuzz bench clean

all: build

build:
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

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseChunk -fuzztime 60s ./proto
	$(GO) test -run '^$$' -fuzz FuzzParseMessage -fuzztime 60s ./proto
	$(GO) test -run '^$$' -fuzz FuzzParseWatchLink -fuzztime 60s ./proto

clean:
	rm -rf bin loadtest.json loadtest.html
