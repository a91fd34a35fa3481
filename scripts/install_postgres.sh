#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the cluster tests, whose MLflow server keeps its runs in a
# throwaway PostgreSQL cluster of its own (started and stopped by the tests; ~15 s to install). No cluster is
# created or started here. Where this cannot run (not root, no apt), those tests use SQLite instead.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_postgres: not root or no apt-get; the cluster tests will use SQLite" >&2
  exit 0
fi
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/df-sweep.conf
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
