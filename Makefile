GO ?= go

# CI=true turns a missing Redis from a skipped test into a failed one.
ifdef CI
export CI
endif

.PHONY: test redis tools deps vet bench fuzz serve python

# The steps of test must run in order, even under make -j.
.NOTPARALLEL:

# test installs Redis and the test tools (Chromium, promtool) if needed,
# then vets and runs every test with the race detector, then the Python
# client's checks and tests (see python).
test: redis tools deps vet
	$(GO) test -race -timeout 30m ./...
	$(GO) test -count=1 -run 'TestCoherence_Staleness' -v .
	$(MAKE) --no-print-directory python

# python checks the Python client (clients/python) with Debian's system
# Python: installs its packages if needed (scripts/install-python.sh),
# type-checks it (mypy --strict), runs its tests against a tiercache built
# from this tree and real redis-server processes, and builds its wheel.
PYTHON ?= /usr/bin/python3

python: redis
	bash scripts/install-python.sh
	cd clients/python && $(PYTHON) -m mypy
	cd clients/python && $(PYTHON) -m pytest -p no:cacheprovider

redis:
	bash scripts/install-redis.sh

tools:
	bash scripts/install-tools.sh

deps:
	$(GO) mod download

vet:
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/envelope
	$(GO) test -run '^$$' -fuzz FuzzDecodeJournal -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzBatch -fuzztime 30s ./internal/server

serve:
	$(GO) run ./cmd/tiercache serve
