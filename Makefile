# usbhotplugd — build, test, lint.
GO        ?= go
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME  ?= 4s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/usbhotplugd/usbhotplugd/internal/build.Version=$(VERSION) \
             -X github.com/usbhotplugd/usbhotplugd/internal/build.Commit=$(COMMIT)

# Every fuzz target, as package:Target.
FUZZ := ./internal/xenstore:FuzzReplyDecoder \
        ./internal/xenstore:FuzzParseHeader \
        ./internal/xenstore/server:FuzzServerRequest \
        ./internal/uevent:FuzzParse \
        ./internal/uevent:FuzzReadTrace \
        ./internal/uevent:FuzzImportUdevadm \
        ./policy:FuzzParse \
        ./policy:FuzzSpec

.PHONY: all build test lint unit fuzz bench demo clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/usbhotplugd ./cmd/usbhotplugd

demo:
	$(GO) run ./cmd/usbhotplugd replay

## test: everything CI runs — format, vet, staticcheck, the unit and
## conformance tests with the race detector, and a short run of each fuzzer.
test: lint unit fuzz

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

unit:
	$(GO) test -race -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x $$pkg; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.txt

clean:
	rm -rf bin bench.txt
