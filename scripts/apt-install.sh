#!/usr/bin/env bash
# Shared by install-redis.sh and install-tools.sh: installs the Debian
# packages of the commands that are missing. Source it, then call
#   apt_install NAME WHAT binary=package...
# NAME prefixes the messages; WHAT says which tests need the commands.
# Under CI=true a command still missing after the install is fatal (exit
# 1); elsewhere it is a warning and the tests that need it skip.

# missing_packages prints the packages of the binary=package pairs whose
# binary is not on PATH.
missing_packages() {
	local pair out=()
	for pair in "$@"; do
		command -v "${pair%%=*}" >/dev/null 2>&1 || out+=("${pair#*=}")
	done
	echo "${out[*]}"
}

apt_install() {
	local name=$1 what=$2
	shift 2
	local ci=false need
	case "${CI:-}" in true | TRUE | True | 1) ci=true ;; esac

	need=$(missing_packages "$@")
	if [ -z "$need" ]; then
		return 0
	fi
	echo "$name: installing $need" >&2
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			echo "$name: not root and no sudo; cannot install" >&2
		fi
	fi
	if [ "$(id -u)" -eq 0 ] || [ "${#sudo[@]}" -gt 0 ]; then
		# --no-install-recommends: docker-compose would bring Docker's
		# engine, chromium a desktop.
		# shellcheck disable=SC2086 # $need is a list of package names
		if ! { "${sudo[@]}" apt-get update &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; }; then
			echo "$name: apt-get failed" >&2
		fi
	fi

	need=$(missing_packages "$@")
	if [ -n "$need" ]; then
		if [ "$ci" = true ]; then
			echo "$name: ERROR: still missing $need under CI=true; $what cannot run" >&2
			exit 1
		fi
		echo "$name: WARNING: still missing $need; $what will skip" >&2
	fi
}
