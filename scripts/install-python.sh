#!/usr/bin/env bash
# Installs what the Python client's tests (clients/python) need, from
# Debian's packages, when any of it is missing from the system Python
# (/usr/bin/python3; a python3 earlier on PATH, such as pyenv's, is not
# used):
#   python3-httpx python3-msgpack       the package's dependencies
#   python3-pytest python3-pytest-asyncio python3-redis   the tests
#   mypy                                the type check
#   python3-build python3-setuptools python3-wheel   the wheel build
# It is quick when everything is there, and runs apt-get update only when
# an install fails without it. Under CI=true anything still missing is
# fatal (exit 1); elsewhere it is a warning and `make python` will fail
# where it needs it.
set -euo pipefail

PY=/usr/bin/python3
# module=package pairs: the module must import in $PY.
pairs=(
	httpx=python3-httpx
	msgpack=python3-msgpack
	pytest=python3-pytest
	pytest_asyncio=python3-pytest-asyncio
	redis=python3-redis
	mypy=mypy
	build=python3-build
	setuptools=python3-setuptools
	wheel=python3-wheel
)

ci=false
case "${CI:-}" in true | TRUE | True | 1) ci=true ;; esac

missing() {
	local pair out=()
	if [ ! -x "$PY" ]; then
		out+=(python3)
	fi
	for pair in "${pairs[@]}"; do
		if [ ! -x "$PY" ] || ! "$PY" -c "import ${pair%%=*}" >/dev/null 2>&1; then
			out+=("${pair#*=}")
		fi
	done
	echo "${out[*]}"
}

need=$(missing)
if [ -z "$need" ]; then
	exit 0
fi
echo "install-python: installing $need" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		echo "install-python: not root and no sudo; cannot install" >&2
	fi
fi
if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
	apt_get_install() {
		# shellcheck disable=SC2086 # $need is a list of package names
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need
	}
	if ! apt_get_install; then
		echo "install-python: retrying after apt-get update" >&2
		if ! { "${sudo[@]}" apt-get update && apt_get_install; }; then
			echo "install-python: apt-get failed" >&2
		fi
	fi
fi

need=$(missing)
if [ -n "$need" ]; then
	if [ "$ci" = true ]; then
		echo "install-python: ERROR: still missing $need under CI=true; the Python client's tests cannot run" >&2
		exit 1
	fi
	echo "install-python: WARNING: still missing $need; make python will fail" >&2
fi
