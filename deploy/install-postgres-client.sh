#!/bin/sh
# Installs the PostgreSQL client tools (pg_dump, pg_restore, psql) of one major version from the PostgreSQL
# project's apt repository (apt.postgresql.org, "pgdg"). Debian's own packages stop at an older major
# version, and pg_dump must be at least as new as the server it dumps.
#
# The repository's signing key and setup script come from Debian's postgresql-common package, so the key is
# trusted through Debian's own signatures rather than fetched over the network.
#
# Usage (as root, on Debian or Ubuntu): install-postgres-client.sh MAJOR      e.g. 18
set -eu

major="${1:?usage: install-postgres-client.sh MAJOR (for example 18)}"
case "$major" in
  *[!0-9]*) echo "install-postgres-client.sh: MAJOR must be a number such as 18, got '$major'" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates postgresql-common
# Writes /etc/apt/sources.list.d/pgdg.sources (Signed-By the key shipped in postgresql-common), then apt-get update.
/usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y
apt-get install -y --no-install-recommends "postgresql-client-${major}"
rm -rf /var/lib/apt/lists/*

installed="$("/usr/lib/postgresql/${major}/bin/pg_dump" --version)"
case "$installed" in
  *" ${major}."*) echo "installed: $installed" ;;
  *) echo "install-postgres-client.sh: expected pg_dump ${major}.x, got: $installed" >&2; exit 1 ;;
esac
