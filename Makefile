# warden: `make run` starts an agent on ./.warden with the demo desired state;
# `make test` runs every test. See README.md.
GO       ?= go
ROOT     ?= $(CURDIR)/.warden
BIN      := bin/warden
STATICCHECK_VERSION := v0.8.2
FUZZTIME ?= 10s

.PHONY: build run test test-opa race bench fuzz lint acceptance clean man deb deb-check alerts

# The binary carries its version, commit and commit time (warden version),
# stamped by the toolchain from git: -buildvcs=true overrides a
# GOFLAGS=-buildvcs=false environment.
BUILDFLAGS := -buildvcs=true -trimpath

# Two executables, installed side by side: bin/warden-core is the whole CLI
# and the agent (cmd/warden); bin/warden is the small front (cmd/front) that
# runs `warden elevate` itself and execs warden-core for everything else,
# built static (CGO_ENABLED=0) so that it starts without the dynamic loader.
build:
	$(GO) build $(BUILDFLAGS) -o $(BIN)-core ./cmd/warden
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o $(BIN) ./cmd/front

# Man pages of every command, generated from the cobra commands (cobra/doc).
# gen-docs lives only in a binary built with -tags gendocs.
man:
	$(GO) build -tags gendocs -o bin/warden-gendocs ./cmd/warden
	rm -rf man && bin/warden-gendocs gen-docs man man

# The Debian package, built with nfpm (pinned in tools/nfpm/go.mod, its own
# module so that its dependencies stay out of warden's).
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
DEB_VERSION ?= $(shell git log -1 --format='0.1.0~git%cd.%h' --date=format:%Y%m%d%H%M%S 2>/dev/null || echo 0.1.0)
DEB         := bin/warden_$(DEB_VERSION)_$(DEB_ARCH).deb
deb:
	rm -rf build/deb && mkdir -p build/deb/completion build/deb/doc bin
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -buildmode=pie -ldflags='-s -w' -o build/deb/warden-core ./cmd/warden
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags='-s -w' -o build/deb/warden ./cmd/front
	$(GO) build -tags gendocs -o bin/warden-gendocs ./cmd/warden
	bin/warden-gendocs gen-docs man build/deb/man && gzip -9n build/deb/man/*.1
	build/deb/warden completion bash > build/deb/completion/warden.bash
	build/deb/warden completion zsh > build/deb/completion/_warden
	build/deb/warden completion fish > build/deb/completion/warden.fish
	cp README.md docs/*.md build/deb/doc/
	printf 'warden ($(DEB_VERSION)) unstable; urgency=medium\n\n  * Build of %s.\n\n -- warden maintainers <warden@lists.example.org>  %s\n' \
	  "$$(git rev-parse HEAD 2>/dev/null || echo unknown)" "$$(date -R -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)})" \
	  | gzip -9n > build/deb/changelog.gz
	$(GO) -C tools/nfpm build -o $(CURDIR)/bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm
	DEB_ARCH=$(DEB_ARCH) DEB_VERSION=$(DEB_VERSION) bin/nfpm package --config deploy/nfpm.yaml --packager deb --target $(DEB)
	@echo $(DEB)

# The Prometheus alert rules: syntax and unit tests (promtool, from the
# Debian prometheus package).
alerts:
	promtool check rules deploy/prometheus/warden-alerts.yml
	cd deploy/prometheus && promtool test rules warden-alerts_test.yml

# Build, lint, install, start with the packaged defaults, doctor, remove.
deb-check: deb
	scripts/deb-check.sh $(DEB)

run: build
	mkdir -p $(ROOT)/Plugins/heartbeat
	$(GO) build -o $(ROOT)/Plugins/heartbeat/heartbeat ./fixtures/plugins/heartbeat
	./scripts/run-demo.sh $(BIN) $(ROOT)

test: test-opa
	$(GO) vet ./...
	$(GO) test -race -timeout 8m ./...

# bench/opa is a module of its own (it pulls in OPA): its equivalence tests
# (warden's engine and the Rego policies decide alike) run with make test.
# Without -race: OPA's compile under the race detector costs minutes, and
# the tests check decisions, not concurrency.
test-opa:
	cd bench/opa && $(GO) vet ./... && $(GO) test -timeout 4m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m ./...

# A short run of every fuzz target (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

acceptance: build
	WARDEN=$(CURDIR)/$(BIN) ../shared/acceptance/check

clean:
	rm -rf bin build man .warden
