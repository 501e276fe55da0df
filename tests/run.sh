#!/usr/bin/env bash
# The whole suite, as `make test` and CI run it: lint; every test on embedded PostgreSQL; then the
# database tests again on MariaDB. In CI (CI=true) a backend that cannot be reached fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
bash deploy/system-packages.sh
if mysql_env=$(bash deploy/mariadb.sh); then eval "$mysql_env"; fi
if [ -z "${BRAINOBS_TEST_MYSQL_URL:-}" ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "ERROR: MariaDB could not be started, and CI must run the MySQL-path tests" >&2
    exit 1
  fi
  echo "WARNING: no MariaDB here; the MySQL-path database tests will NOT run" >&2
fi
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
"$venv/bin/ruff" check . && "$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest tests "$@"
if [ -n "${BRAINOBS_TEST_MYSQL_URL:-}" ]; then
  echo "=== database tests on MariaDB ==="
  BRAINOBS_TEST_DATABASE_URL="$BRAINOBS_TEST_MYSQL_URL" "$venv/bin/python" -m pytest tests -m db "$@"
fi
