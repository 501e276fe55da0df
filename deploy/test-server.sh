# Sourced by deploy/mariadb.sh and deploy/postgres.sh: the private test server's settings (from
# BRAINOBS_<KIND>_DIR, _PORT and _PASSWORD), its messages, and the apt install of its package.
# Usage: . deploy/test-server.sh KIND DEFAULT_PORT
kind=$1
upper=${kind^^}
dir_var=BRAINOBS_${upper}_DIR port_var=BRAINOBS_${upper}_PORT password_var=BRAINOBS_${upper}_PASSWORD
dir=${!dir_var:-/tmp/brainobs-$kind}
port=${!port_var:-$2}
user=brainobs
password=${!password_var:-brainobs-test-pw}
say() { echo "echo '[$kind] $*' >&2;"; }

# install_or_skip PACKAGE LABEL: install PACKAGE with apt as root, or say why its tests will not run and exit.
install_or_skip() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[$kind] installing $1 with apt" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
  else
    say "$2 is not installed and cannot be installed here (needs root and apt): its tests will not run"
    exit 0
  fi
}
