#!/usr/bin/env bash
# Installs and starts what the tests need beyond Python: PostgreSQL 15 + PostGIS 3, Debian's
# Chromium and nginx (tests/test_deploy.py runs its own on loopback; the system's nginx service
# is not needed, so it is left stopped). Idempotent; writes .test-env with the variables the
# tests read.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
[ -d /usr/share/postgresql/15/extension ] && ls /usr/share/postgresql/15/extension/postgis.control >/dev/null 2>&1 \
  || need+=(postgresql-15-postgis-3)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list 2>/dev/null | grep -qi "noto sans cjk" || need+=(fonts-noto-cjk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]} with apt-get"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

if ! pg_lsclusters -h 2>/dev/null | grep -q "^15 *main"; then
  pg_createcluster 15 main >/dev/null
fi
pg_lsclusters -h | grep -q "online" || pg_ctlcluster --skip-systemctl-redirect 15 main start
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" && break
  sleep 0.5
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='geo'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE geo SUPERUSER LOGIN PASSWORD 'geo'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='geo_test'\"" | grep -q 1 \
  || su postgres -c "psql -qc 'CREATE DATABASE geo_test OWNER geo'"
su postgres -c "psql -q -d geo_test -c 'CREATE EXTENSION IF NOT EXISTS postgis'"

cat > .test-env <<ENV
export GEO_SERVICE_TEST_DATABASE_URL=postgresql://geo:geo@127.0.0.1:5432/geo_test
export GEO_SERVICE_TEST_CHROMIUM=$(command -v chromium)
export GEO_SERVICE_TEST_REQUIRE_SERVICES=1
ENV
echo "services ready: PostGIS at postgresql://geo:geo@127.0.0.1:5432/geo_test, chromium at $(command -v chromium)"
