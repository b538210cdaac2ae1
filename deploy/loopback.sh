#!/usr/bin/env bash
# The deploy/ arrangement on loopback: PostgreSQL primary + pg_basebackup replica, the bundled
# data, 3 geo-service instances, nginx in front; all stopped and removed at the end.
#   bash deploy/loopback.sh            # up until Ctrl-C (prints the addresses and an admin key)
#   bash deploy/loopback.sh --drill    # kill an instance, stop the database, edit: a report
#   bash deploy/loopback.sh --hold 60 --instances 2
# Needs the project's .venv (make setup), Debian's postgresql-15-postgis-3 and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m deploy.loopback "$@"
