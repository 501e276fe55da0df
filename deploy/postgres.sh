#!/usr/bin/env bash
# Start a private PostgreSQL server (Debian's postgresql package) that listens on TCP, for the server-path
# tests, and print the export line for its URL.
# Usage: eval "$(bash deploy/postgres.sh)"   -> sets BRAINOBS_TEST_POSTGRES_URL, or prints why it could not.
# The server has its own data directory and port (BRAINOBS_POSTGRES_DIR, BRAINOBS_POSTGRES_PORT); no init
# system is needed. As root, the server runs as the `postgres` user. Installs postgresql with apt when run
# as root and it is missing.
set -euo pipefail
. "$(dirname "$0")/test-server.sh" postgres 5433

server_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(server_bin)" ]; then
  install_or_skip postgresql PostgreSQL
fi
bin=$(server_bin)
as_owner=()
[ "$(id -u)" = 0 ] && as_owner=(runuser -u postgres --)

if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      >"$dir/initdb.log" 2>&1 || { say "initdb failed; see $dir/initdb.log"; exit 1; }
  fi
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null 2>&1 || {
    say "PostgreSQL did not start; see $dir/server.log"; exit 1; }
fi
"${as_owner[@]}" "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE ROLE $user LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') \gexec
ALTER ROLE $user PASSWORD '$password';
SELECT 'CREATE DATABASE brainobs OWNER $user' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'brainobs') \gexec
SQL
echo "export BRAINOBS_TEST_POSTGRES_URL='postgresql://$user:$password@127.0.0.1:$port/brainobs';"
say "PostgreSQL ready on 127.0.0.1:$port"
