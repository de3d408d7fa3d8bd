#!/bin/bash
# Evidently UI over the workspace the monitoring flows write (the `evidently-workspace` volume).
set -euo pipefail
exec evidently ui --host 0.0.0.0 --port 8000 --workspace "${CLINRISK_HOME}/evidently-workspace"
