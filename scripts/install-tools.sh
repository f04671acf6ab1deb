#!/usr/bin/env bash
# Installs the tools some tests drive besides Redis, from Debian's packages,
# when they are missing:
#   chromium, chromium-driver  the dashboard's end-to-end test (headless)
#   prometheus                 promtool, which checks deploy/prometheus/alerts.yml
# Under CI=true a failed install is fatal; elsewhere the tests that need a
# missing tool skip.
set -euo pipefail

# binary=package pairs
tools=(chromium=chromium chromedriver=chromium-driver promtool=prometheus)

missing() {
	local t out=()
	for t in "${tools[@]}"; do
		command -v "${t%%=*}" >/dev/null 2>&1 || out+=("${t#*=}")
	done
	echo "${out[*]}"
}

ci=false
case "${CI:-}" in true | TRUE | True | 1) ci=true ;; esac

need=$(missing)
if [ -z "$need" ]; then
	exit 0
fi

echo "install-tools: installing $need" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-tools: not root and no sudo; cannot install" >&2
	fi
fi

if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
	# shellcheck disable=SC2086 # $need is a list of package names
	if ! { "${sudo[@]}" apt-get update &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; }; then
		echo "install-tools: apt-get failed" >&2
	fi
fi

need=$(missing)
if [ -n "$need" ]; then
	if [ "$ci" = true ]; then
		echo "install-tools: ERROR: still missing $need under CI=true; the browser and promtool tests cannot run" >&2
		exit 1
	fi
	echo "install-tools: WARNING: still missing $need; the tests that need them will skip" >&2
fi
