#!/usr/bin/env bash
# Installs redis-server, redis-sentinel and redis-cli from Debian's packages
# when any of them is missing. The integration tests start real Redis
# processes (internal/redistest). It also installs docker-compose, which
# validates deploy/docker-compose.redis.yml (without Docker's engine, which
# the tests do not need). Under CI=true a failed install is fatal;
# elsewhere the tests that need Redis skip.
set -euo pipefail

bins=(redis-server redis-sentinel redis-cli docker-compose)

missing() {
	local b out=()
	for b in "${bins[@]}"; do
		command -v "$b" >/dev/null 2>&1 || out+=("$b")
	done
	echo "${out[*]}"
}

ci=false
case "${CI:-}" in true | TRUE | True | 1) ci=true ;; esac

need=$(missing)
if [ -z "$need" ]; then
	exit 0
fi

echo "install-redis: missing $need; installing redis-server redis-sentinel redis-tools docker-compose" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-redis: not root and no sudo; cannot install" >&2
	fi
fi

if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
	# --no-install-recommends: docker-compose would bring Docker's engine.
	if ! { "${sudo[@]}" apt-get update &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
			redis-server redis-sentinel redis-tools docker-compose; }; then
		echo "install-redis: apt-get failed" >&2
	fi
fi

need=$(missing)
if [ -n "$need" ]; then
	if [ "$ci" = true ]; then
		echo "install-redis: ERROR: still missing $need under CI=true; the Redis integration tests cannot run" >&2
		exit 1
	fi
	echo "install-redis: WARNING: still missing $need; tests that need Redis will skip" >&2
fi
