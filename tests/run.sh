#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint; every test on embedded PostgreSQL; then the fast database
# tests again on MariaDB, and the connection's own on a PostgreSQL server over TCP (the server deployment path). In CI
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
# CI must stay under 40 minutes on a 2-core machine: the slow pipeline tests (db and slow) run on embedded
# PostgreSQL only; every fast database test runs on MariaDB (the MySQL path), and over TCP the tests of the
# connection itself (server restarts, roles, the cluster's workers and scheduler, virtual schemas)
if [ -n "${BRAINOBS_TEST_MYSQL_URL:-}" ]; then
  echo "=== database tests on MariaDB ==="
  BRAINOBS_TEST_DATABASE_URL="$BRAINOBS_TEST_MYSQL_URL" BRAINOBS_TEST_DB_RESTART="bash tests/restart-db.sh mariadb" \
    "$venv/bin/python" -m pytest tests -m "db and not slow" "$@"
fi
if [ -n "${BRAINOBS_TEST_POSTGRES_URL:-}" ]; then
  echo "=== database tests on PostgreSQL over TCP ==="
  BRAINOBS_TEST_DATABASE_URL="$BRAINOBS_TEST_POSTGRES_URL" BRAINOBS_TEST_DB_RESTART="bash tests/restart-db.sh postgres" \
    "$venv/bin/python" -m pytest tests/test_database.py tests/test_access_db.py tests/test_cli_errors.py \
    tests/test_scheduling_db.py tests/test_worker_db.py tests/test_virtual_schema.py -m "db and not slow" "$@"
fi
