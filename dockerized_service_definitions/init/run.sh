#!/bin/bash
# One-shot initialisation (the same code as `clinrisk up`): create the process work pool,
# register the deployments of prefect.yaml that do not exist yet and, when the registry has
# no champion, train the first model and apply the promotion gate. Safe to run again.
set -euo pipefail
python -m clinrisk.credentials check MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_WRITER_PASSWORD MLFLOW_READER_PASSWORD
exec python -m clinrisk.stack.bootstrap --pool "${CLINRISK_POOL:-clinrisk-pool}" --project-dir /app
