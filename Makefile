# warden: `make run` starts an agent on ./.warden with the demo desired state;
# `make test` runs every test. See README.md.
GO       ?= go
ROOT     ?= $(CURDIR)/.warden
BIN      := bin/warden
STATICCHECK_VERSION := v0.8.2
FUZZTIME ?= 10s

.PHONY: build run test race bench fuzz lint acceptance clean

build:
	$(GO) build -o $(BIN) ./cmd/warden

run: build
	mkdir -p $(ROOT)/Plugins/heartbeat
	$(GO) build -o $(ROOT)/Plugins/heartbeat/heartbeat ./fixtures/plugins/heartbeat
	./scripts/run-demo.sh $(BIN) $(ROOT)

test:
	$(GO) vet ./...
	$(GO) test -race -timeout 8m ./...

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
	rm -rf bin .warden
