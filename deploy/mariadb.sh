#!/usr/bin/env bash
# Start a private MariaDB server for the MySQL-path tests and print the export line for its URL.
# Usage: eval "$(bash deploy/mariadb.sh)"   -> sets BRAINOBS_TEST_MYSQL_URL, or prints why it could not.
# Installs mariadb-server with apt when run as root and it is missing (no init system needed: mariadbd is
# started directly with its own datadir, socket and port).
set -euo pipefail
. "$(dirname "$0")/test-server.sh" mariadb 3307

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  install_or_skip mariadb-server MariaDB
fi
export PATH="/usr/sbin:$PATH"
run_as=()
[ "$(id -u)" = 0 ] && run_as=(--user=mysql)

if ! mariadb-admin --socket="$dir/mysqld.sock" -u root ping >/dev/null 2>&1; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown mysql:mysql "$dir"
  if [ ! -d "$dir/data/mysql" ]; then
    mariadb-install-db "${run_as[@]}" --datadir="$dir/data" --auth-root-authentication-method=socket \
      --skip-test-db >"$dir/install.log" 2>&1
  fi
  setsid mariadbd "${run_as[@]}" --datadir="$dir/data" --socket="$dir/mysqld.sock" --port="$port" \
    --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci </dev/null >/dev/null 2>&1 &
  for _ in $(seq 60); do
    mariadb-admin --socket="$dir/mysqld.sock" -u root ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb-admin --socket="$dir/mysqld.sock" -u root ping >/dev/null 2>&1 || {
    say "MariaDB did not start; see $dir/error.log"; exit 1; }
fi
# The test account: local connections only (socket and 127.0.0.1), every privilege on the test schemas
# (prefixes bo...: bot<pid>_, bof<pid>..._) with GRANT OPTION, and CREATE USER, for the grant-reader tests.
# No account of any host ('%'), no global privileges but CREATE USER.
mariadb --socket="$dir/mysqld.sock" -u root <<SQL
DROP USER IF EXISTS ''@'localhost', ''@'$(hostname)', '$user'@'%';
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$password';
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`bo%\`.* TO '$user'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON \`bo%\`.* TO '$user'@'127.0.0.1' WITH GRANT OPTION;
GRANT CREATE USER ON *.* TO '$user'@'localhost';
GRANT CREATE USER ON *.* TO '$user'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
echo "export BRAINOBS_TEST_MYSQL_URL='mysql://$user:$password@127.0.0.1:$port';"
say "MariaDB ready on 127.0.0.1:$port"
