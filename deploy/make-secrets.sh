#!/bin/sh
# make-secrets.sh creates every secret of the compose deployment
# (docker-compose.redis.yml) in one command: a random password for each
# ACL user of acl.conf, the password the sentinels require, the bearer
# token of the tiercache HTTP API, Grafana's admin password, and the files
# derived from them: users.acl (acl.conf with the password hashes and the
# namespace filled in) and exporter.json (redis_exporter's password file).
# It also records the namespace in the compose .env file, so that the
# tiercache service uses the namespace that its ACL user may touch.
#
#   deploy/make-secrets.sh [--namespace NS] [--dir DIR] [--env-file FILE] [--force]
#
#   --namespace NS   the cache namespace (CACHE_NAMESPACE); the ACL user
#                    "tiercache" may touch only the keys NS:* and NS#*.
#                    Default: $CACHE_NAMESPACE, else the CACHE_NAMESPACE of
#                    the .env file, else "tiercache".
#   --dir DIR        where the secrets go. Default: secrets/ next to this
#                    script (deploy/secrets, which .gitignore excludes).
#   --env-file FILE  the compose .env file that records CACHE_NAMESPACE.
#                    Default: .env next to this script (deploy/.env, which
#                    docker-compose reads for docker-compose.redis.yml, and
#                    .gitignore excludes).
#                    "-" leaves it alone.
#   --force          replace the existing passwords and token too.
#
# It is idempotent: passwords and the token that exist are kept (unless
# --force), and users.acl, exporter.json and the .env line are rewritten
# from them only when their content changes, for example after a new
# --namespace. It prints what it did, never a secret.
#
# Modes: the directory is 0700, so no other user of the host can reach the
# files. The files are 0644: Compose without Swarm bind-mounts a secret
# file with the mode and owner it has on the host, and the containers run
# as their own users (redis, grafana, nobody...), which could not read a
# 0600 file of yours.
#
# Needs only a POSIX shell, coreutils (sha256sum) and openssl.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=$here/secrets
envfile=$here/.env
ns=
force=no

# usage prints the comment above and exits with $1 (2 when omitted).
usage() {
	awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--namespace) [ $# -ge 2 ] || usage; ns=$2; shift 2 ;;
	--namespace=*) ns=${1#*=}; shift ;;
	--dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
	--dir=*) dir=${1#*=}; shift ;;
	--env-file) [ $# -ge 2 ] || usage; envfile=$2; shift 2 ;;
	--env-file=*) envfile=${1#*=}; shift ;;
	--force) force=yes; shift ;;
	-h | --help) usage 0 ;;
	*) echo "make-secrets.sh: unknown argument $1" >&2; usage ;;
	esac
done

command -v openssl >/dev/null || { echo "make-secrets.sh: openssl not found" >&2; exit 1; }
command -v sha256sum >/dev/null || { echo "make-secrets.sh: sha256sum not found" >&2; exit 1; }

# The namespace: flag, then the environment, then the .env file.
if [ -z "$ns" ]; then ns=${CACHE_NAMESPACE:-}; fi
if [ -z "$ns" ] && [ "$envfile" != - ] && [ -f "$envfile" ]; then
	ns=$(sed -n 's/^CACHE_NAMESPACE=//p' "$envfile" | tail -n 1)
fi
ns=${ns:-tiercache}
# The ACL key patterns are globs and the ACL file is split on spaces and
# quotes: keep to the characters that mean themselves in both.
case $ns in
*[!A-Za-z0-9._:/@+-]*)
	echo "make-secrets.sh: namespace \"$ns\": use letters, digits and . _ : / @ + - only" >&2
	exit 2 ;;
esac

template=$here/acl.conf
[ -r "$template" ] || { echo "make-secrets.sh: cannot read $template" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

# put FILE: moves the new content in FILE.new to FILE when it differs,
# and says what it did.
put() {
	if [ -f "$1" ] && cmp -s "$1.new" "$1"; then
		rm -f "$1.new"
		echo "kept     $1"
		return
	fi
	what=created
	[ -f "$1" ] && what=updated
	chmod 0644 "$1.new"
	mv -f "$1.new" "$1"
	echo "$what  $1"
}

# secret FILE BYTES: a random secret of BYTES bytes, in hex, unless FILE
# exists and is not empty (and --force is not given).
secret() {
	if [ -s "$1" ] && [ "$force" = no ]; then
		chmod 0644 "$1"
		echo "kept     $1"
		return
	fi
	openssl rand -hex "$2" | tr -d '\n' >"$1.new"
	[ -s "$1.new" ] || { echo "make-secrets.sh: openssl rand failed" >&2; exit 1; }
	put "$1"
}

users="tiercache admin replica sentinel exporter"
for u in $users; do secret "$dir/$u.password" 24; done
secret "$dir/sentinels.password" 24
secret "$dir/grafana.password" 24
secret "$dir/tiercache.token" 32

# users.acl: each user's placeholder hash replaced by the SHA-256 of its
# password, and the tiercache user's key patterns moved to the namespace.
hashes=
for u in $users; do
	h=$(printf %s "$(cat "$dir/$u.password")" | sha256sum | cut -d' ' -f1)
	hashes="$hashes $u=$h"
done
awk -v hashes="$hashes" -v ns="$ns" '
	BEGIN { n = split(hashes, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); h[p[1]] = p[2] } }
	$1 == "user" && ($2 in h) {
		for (i = 3; i <= NF; i++) {
			if ($i ~ /^#0+$/) { $i = "#" h[$2]; done[$2] = 1 }
			if ($2 == "tiercache" && $i == "~tiercache:*") $i = "~" ns ":*"
			if ($2 == "tiercache" && $i == "~tiercache#*") $i = "~" ns "#*"
		}
	}
	{ print }
	END { for (u in h) if (!(u in done)) { print "make-secrets.sh: acl.conf has no placeholder hash for user " u > "/dev/stderr"; exit 1 } }
' "$template" >"$dir/users.acl.new"
put "$dir/users.acl"

# exporter.json: redis_exporter's password of every data node.
pw=$(cat "$dir/exporter.password")
printf '{\n  "redis://redis-master:6379": "%s",\n  "redis://redis-replica-1:6379": "%s",\n  "redis://redis-replica-2:6379": "%s"\n}\n' \
	"$pw" "$pw" "$pw" >"$dir/exporter.json.new"
put "$dir/exporter.json"

# The namespace, for docker-compose.redis.yml's ${CACHE_NAMESPACE}.
if [ "$envfile" != - ]; then
	{
		if [ -f "$envfile" ]; then grep -v '^CACHE_NAMESPACE=' "$envfile" || true; fi
		echo "CACHE_NAMESPACE=$ns"
	} >"$envfile.new"
	if [ -f "$envfile" ] && cmp -s "$envfile.new" "$envfile"; then
		rm -f "$envfile.new"
		echo "kept     $envfile (CACHE_NAMESPACE=$ns)"
	else
		chmod 0644 "$envfile.new"
		mv -f "$envfile.new" "$envfile"
		echo "wrote    $envfile (CACHE_NAMESPACE=$ns)"
	fi
fi
echo "namespace $ns: the ACL user tiercache may touch the keys $ns:* and $ns#*"
