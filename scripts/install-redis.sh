#!/usr/bin/env bash
# Installs redis-server, redis-sentinel and redis-cli from Debian's packages
# when any of them is missing. The integration tests start real Redis
# processes (internal/redistest, internal/lab). It also installs
# docker-compose, which validates deploy/docker-compose.redis.yml (without
# Docker's engine, which the tests do not need). Under CI=true a failed
# install is fatal; elsewhere the tests that need Redis skip.
set -euo pipefail
# shellcheck source=apt-install.sh
. "$(dirname "$0")/apt-install.sh"

apt_install install-redis "the Redis integration tests and the compose file check" \
	redis-server=redis-server redis-sentinel=redis-sentinel redis-cli=redis-tools docker-compose=docker-compose
