#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint; every test on embedded PostgreSQL; then the database
# tests again on MariaDB, and the fast ones on a PostgreSQL server over TCP (the server deployment path). In CI
# (CI=true) a backend that cannot be started fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
bash deploy/system-packages.sh
require() {  # $1: the URL variable, $2: what it names
  if [ -z "${!1:-}" ]; then
    if [ "${CI:-}" = "true" ]; then
      echo "ERROR: $2 could not be started, and CI must run the database tests on it" >&2
      exit 1
    fi
    echo "WARNING: no $2 here; the database tests will NOT run on it" >&2
  fi
}
if mysql_env=$(bash deploy/mariadb.sh); then eval "$mysql_env"; fi
require BRAINOBS_TEST_MYSQL_URL MariaDB
if postgres_env=$(bash deploy/postgres.sh); then eval "$postgres_env"; fi
require BRAINOBS_TEST_POSTGRES_URL "a PostgreSQL server"
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
"$venv/bin/ruff" check . && "$venv/bin/ruff" format --check .
# AllenSDK's own environment for the tests that read our files through it (cached; ~1 min the first time)
echo "AllenSDK test environment: $(bash tests/allensdk/setup-venv.sh)"
"$venv/bin/python" -m pytest tests "$@"
if [ -n "${BRAINOBS_TEST_MYSQL_URL:-}" ]; then
  echo "=== database tests on MariaDB ==="
  BRAINOBS_TEST_DATABASE_URL="$BRAINOBS_TEST_MYSQL_URL" BRAINOBS_TEST_DB_RESTART="bash tests/restart-db.sh mariadb" \
    "$venv/bin/python" -m pytest tests -m db "$@"
fi
if [ -n "${BRAINOBS_TEST_POSTGRES_URL:-}" ]; then
  # the same server software as the embedded one: the fast database tests, for the TCP connection, server
  # restarts and roles; the slow pipeline and cluster fault tests ran on embedded PostgreSQL and MariaDB above
  echo "=== database tests on PostgreSQL over TCP ==="
  BRAINOBS_TEST_DATABASE_URL="$BRAINOBS_TEST_POSTGRES_URL" BRAINOBS_TEST_DB_RESTART="bash tests/restart-db.sh postgres" \
    "$venv/bin/python" -m pytest tests -m "db and not slow" "$@"
fi
