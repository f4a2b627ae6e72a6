# vmgate — build, test, benchmark.
GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN_DIR):$(PATH)

.PHONY: all build test unit deps bench fuzz demo vet fmt clean

all: build

# vmgate reaches libvirt through cgo; without a C compiler go turns cgo off and the build
# would fail with "undefined: libvirt.Domain".
build:
	@test "$$($(GO) env CGO_ENABLED)" = 1 || { echo "make build: vmgate needs cgo, for libvirt, and go finds no C compiler: install gcc and libc6-dev (apt-get install gcc libc6-dev)" >&2; exit 1; }
	$(GO) build -trimpath -tags libvirt_dlopen -ldflags '$(LDFLAGS)' -o $(BIN)/vmgate ./cmd/vmgate
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vmgate-hook ./cmd/vmgate-hook

# Installs what the tests need (Debian packages, the cosign CLI) when missing, then runs every
# test, integration tests and fuzz seed corpora included. A missing dependency fails a test.
test: deps build vet
	VMGATE_INTEGRATION=1 VMGATE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags libvirt_dlopen -count=1 -timeout 40m ./...

# Unit tests only: no root, no installs.
unit:
	$(GO) test -tags libvirt_dlopen ./...

deps:
	bash scripts/deps.sh

vet:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet -tags libvirt_dlopen ./...

# Benchmarks; figures and how to read them are in docs/BENCHMARKS.md.
bench: deps build
	bash scripts/bench.sh

# Fuzz every parser of untrusted input for FUZZTIME each (make fuzz FUZZTIME=5m).
FUZZTIME ?= 30s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

# demo.sh checks for root first, then installs what it needs (deps.sh) and builds.
demo:
	bash scripts/demo.sh

fmt:
	gofmt -w .

clean:
	rm -rf $(BIN)
