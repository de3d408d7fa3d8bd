#!/bin/bash
# One-shot initialisation (the same code as `clinrisk up`): create the process work pool,
# register the deployments that do not exist yet (prefect.yaml's flows for every spec in
# models/: retrain/<model>, monitor/<model>, ...) and, for each model without a champion, train
# its first version and apply the promotion gate (a model that fails is reported; the others
# still train). Safe to run again.
set -euo pipefail
python -m clinrisk.credentials check MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_WRITER_PASSWORD MLFLOW_READER_PASSWORD
exec python -m clinrisk.stack.bootstrap --pool "${CLINRISK_POOL:-clinrisk-pool}" --project-dir /app
