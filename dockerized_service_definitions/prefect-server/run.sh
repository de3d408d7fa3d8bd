#!/bin/bash
# Prefect server (API, UI, scheduler) on PostgreSQL (PREFECT_API_DATABASE_CONNECTION_URL).
# The UI bundle is written to a writable directory: site-packages belongs to root.
set -euo pipefail
# Refuse a default password when the port is published beyond loopback.
python -m clinrisk.credentials check PREFECT_API_DATABASE_CONNECTION_URL PREFECT_SERVER_API_AUTH_STRING
export PREFECT_UI_STATIC_DIRECTORY="${PREFECT_UI_STATIC_DIRECTORY:-$PREFECT_HOME/ui}"
exec prefect server start --host 0.0.0.0 --port 4200
