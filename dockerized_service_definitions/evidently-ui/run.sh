#!/bin/bash
# Evidently UI over the workspace the monitoring flows write (the `evidently-workspace` volume).
# Changes through its API need the `evidently-secret` header (EVIDENTLY_SECRET, read by Evidently).
set -euo pipefail
python -m clinrisk.credentials check EVIDENTLY_SECRET
exec evidently ui --host 0.0.0.0 --port 8000 --workspace "${CLINRISK_HOME}/evidently-workspace"
