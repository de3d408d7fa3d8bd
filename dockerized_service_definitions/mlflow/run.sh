#!/bin/bash
# MLflow tracking server and model registry: PostgreSQL backend store, artifacts on the
# `mlflow-artifacts` volume, proxied (clients only need MLFLOW_TRACKING_URI=http://mlflow:5000).
set -euo pipefail
# Refuse a default database password when the port is published beyond loopback.
python -m clinrisk.credentials check MLFLOW_BACKEND_STORE_URI
exec mlflow server \
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI is not set}" \
  --serve-artifacts --artifacts-destination /data/artifacts \
  --host 0.0.0.0 --port 5000 --workers "${MLFLOW_WORKERS:-1}"
