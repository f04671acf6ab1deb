#!/usr/bin/env bash
# Compares tiercache with its peers (raw rueidis, rueidisaside,
# go-redis/cache, eko/gocache, jetcache-go, raw otter) on the workloads of
# docs/benchmarks.md's "Peer comparison", against a redis-server that the
# program starts on a free loopback port. The peers live in benchmarks/,
# a module of its own, so they never enter tiercache's go.mod.
#
#   scripts/peer-bench.sh                    # the whole comparison
#   scripts/peer-bench.sh -workloads zipf    # one workload
#   scripts/peer-bench.sh -dur 5s -libs tiercache,rueidisaside
#
# Flags are passed to the program (cd benchmarks && go run . -h lists them).
# REDIS_SERVER names the redis-server binary (default: redis-server on PATH,
# else /usr/bin/redis-server).
set -euo pipefail
cd "$(dirname "$0")/../benchmarks"
bin="${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}"
exec go run . -redis-server "$bin" "$@"
