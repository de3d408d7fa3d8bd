#!/bin/bash
# Prefect process worker: runs the flows of the deployments (retrain, monitor, batch-score)
# in subprocesses of this container, with its MLflow, prediction-log and reports settings.
# --with-healthcheck serves GET :8080/health for the compose healthcheck.
set -euo pipefail
python -m clinrisk.credentials check MLFLOW_TRACKING_PASSWORD PREFECT_API_AUTH_STRING
exec prefect worker start --pool "${CLINRISK_POOL:-clinrisk-pool}" --type process \
  --name "clinrisk-worker-$(hostname)" --with-healthcheck
