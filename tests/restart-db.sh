#!/usr/bin/env bash
# Restart the private test server that deploy/mariadb.sh or deploy/postgres.sh started (same environment
# variables): stop it, wait a moment, start it again. The fault test runs it (BRAINOBS_TEST_DB_RESTART).
# Usage: bash tests/restart-db.sh mariadb|postgres
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  mariadb)
    dir=${BRAINOBS_MARIADB_DIR:-/tmp/brainobs-mariadb}
    pid=$(cat "$dir/mysqld.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    sleep 2
    bash deploy/mariadb.sh >/dev/null ;;
  postgres)
    dir=${BRAINOBS_POSTGRES_DIR:-/tmp/brainobs-postgres}
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    as_owner=()
    [ "$(id -u)" = 0 ] && as_owner=(runuser -u postgres --)
    "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    sleep 2
    bash deploy/postgres.sh >/dev/null ;;
  *) echo "usage: $0 mariadb|postgres" >&2; exit 2 ;;
esac
