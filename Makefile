# usbhotplugd — build, test, lint.
GO        ?= go
STATICCHECK_VERSION ?= v0.8.2
GOTESTSUM_VERSION   ?= v1.13.0
# A count, not a duration: a duration races Go 1.26's fuzz coordinator at its
# deadline (go.dev/issue/75804) and fails with "context deadline exceeded".
FUZZTIME  ?= 150000x
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X github.com/usbhotplugd/usbhotplugd/internal/build.Version=$(VERSION) \
             -X github.com/usbhotplugd/usbhotplugd/internal/build.Commit=$(COMMIT)

# Every fuzz target, as package:Target[@RUNS] (RUNS for a target much slower than the rest).
FUZZ := ./internal/xenstore:FuzzReplyDecoder \
        ./internal/daemon:FuzzControlRequest \
        ./cmd/usbhotplugd-exporter:FuzzFamilies \
        ./internal/xenstore:FuzzParseHeader \
        ./internal/xenstore/server:FuzzServerRequest \
        ./internal/uevent:FuzzParse \
        ./internal/uevent:FuzzReadTrace \
        ./internal/uevent:FuzzImportUdevadm \
        ./policy:FuzzParse \
        ./policy:FuzzInclude \
        ./policy:FuzzSpec \
        ./internal/safetext:FuzzText \
        ./internal/qmp:FuzzReply \
        ./internal/mounts:FuzzParse \
        ./internal/policygen:FuzzXLConfig \
        ./internal/usbname:FuzzParse \
        ./internal/fakekernel:FuzzWriteAttr \
        ./internal/usbsysfs:FuzzDevice@20000x \
        ./test/vm:FuzzParse

.PHONY: all build test lint unit fuzz bench benchonce demo clean package vmtest vmtest-calibrate

PKG_VERSION  ?= 0.$(shell git rev-list --count HEAD 2>/dev/null || echo 0).0
PKG_ARCH     ?= $(shell $(GO) env GOARCH)
NFPM_VERSION ?= v2.45.2

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/usbhotplugd ./cmd/usbhotplugd
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/usbhotplugd-exporter ./cmd/usbhotplugd-exporter

demo:
	$(GO) run ./cmd/usbhotplugd replay

## test: everything CI runs — format, vet, staticcheck, a short run of each
## fuzzer, the unit and conformance tests with the race detector, whose
## output ends with every skipped test and its reason, then the counts, and
## one run of each benchmark (so that none rots: they measure, and assert
## only that what they measure still works).
test: lint fuzz unit benchonce

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

unit:
	$(GO) run gotest.tools/gotestsum@$(GOTESTSUM_VERSION) --format pkgname-and-test-fails \
		--format-hide-empty-pkg -- -race -count=1 ./...

fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; ft=$(FUZZTIME); \
		case $$name in *@*) ft=$${name#*@}; name=$${name%@*};; esac; \
		echo "fuzz $$pkg $$name for $$ft"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$ft -fuzzminimizetime 200x $$pkg; \
	done

benchonce:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./... >bench-once.txt 2>&1 || { cat bench-once.txt; rm -f bench-once.txt; exit 1; }
	@grep -c '^Benchmark' bench-once.txt | sed 's/$$/ benchmarks ran once/'; rm -f bench-once.txt

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./... | tee bench.txt

clean:
	rm -rf bin bench.txt dist

## package: dist/usbhotplugd_<version>_<arch>.deb and the .rpm, with nfpm.
package:
	rm -rf dist
	mkdir -p dist/root/usr/bin dist/root/usr/share/man dist/root/usr/share/bash-completion/completions \
		dist/root/usr/share/zsh/vendor-completions dist/root/usr/share/fish/vendor_completions.d
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X github.com/usbhotplugd/usbhotplugd/internal/build.Version=$(PKG_VERSION) \
		-X github.com/usbhotplugd/usbhotplugd/internal/build.Commit=$(COMMIT)" -o dist/root/usr/bin/usbhotplugd ./cmd/usbhotplugd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X github.com/usbhotplugd/usbhotplugd/internal/build.Version=$(PKG_VERSION) \
		-X github.com/usbhotplugd/usbhotplugd/internal/build.Commit=$(COMMIT)" -o dist/root/usr/bin/usbhotplugd-exporter ./cmd/usbhotplugd-exporter
	dist/root/usr/bin/usbhotplugd man dist/root/usr/share/man >/dev/null
	cp cmd/usbhotplugd-exporter/usbhotplugd-exporter.8 dist/root/usr/share/man/man8/
	gzip -9n dist/root/usr/share/man/man8/*.8 dist/root/usr/share/man/man5/*.5
	dist/root/usr/bin/usbhotplugd completion bash > dist/root/usr/share/bash-completion/completions/usbhotplugd
	dist/root/usr/bin/usbhotplugd completion zsh > dist/root/usr/share/zsh/vendor-completions/_usbhotplugd
	dist/root/usr/bin/usbhotplugd completion fish > dist/root/usr/share/fish/vendor_completions.d/usbhotplugd.fish
	for p in deb rpm; do \
		PKG_VERSION=$(PKG_VERSION) PKG_ARCH=$(PKG_ARCH) $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION) \
			package --config packaging/nfpm.yaml --packager $$p --target dist/ || exit 1; \
	done
	ls -l dist/*.deb dist/*.rpm

## vmtest: the real agent inside Debian's kernel under QEMU (root, apt, QEMU,
## linux-headers; see the README). SCENARIO=FILE… runs those only.
vmtest:
	USBHOTPLUGD_VMTEST=1 $(GO) run ./test/vm/cmd/vmtest $(SCENARIO)

## vmtest-calibrate: runs the calibrated scenarios (or SCENARIO=FILE…) on
## the real kernel and writes what the fake kernel is compared with to
## test/vm/testdata/calibration.
CALIBRATED = $(patsubst test/vm/testdata/calibration/%.txt,test/vm/scenarios/%.scn,$(wildcard test/vm/testdata/calibration/*.txt))
vmtest-calibrate:
	USBHOTPLUGD_VMTEST=1 $(GO) run ./test/vm/cmd/vmtest -calibrate test/vm/testdata/calibration $(or $(SCENARIO),$(CALIBRATED))
