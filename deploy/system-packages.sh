#!/usr/bin/env bash
# Debian packages the tests use beyond Python: MariaDB (the MySQL-path tests), PostgreSQL (the database tests
# on a server over TCP), Graphviz (SVG diagrams) and Chromium (headless rendering of the QC report pages).
# Installs what is missing when run as root with apt; elsewhere says what is missing and carries on.
set -uo pipefail
need=()
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; } || need+=(mariadb-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[system] installing ${need[*]} with apt" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
else
  echo "[system] WARNING: missing ${need[*]} and cannot install them here (needs root and apt)" >&2
fi
