#!/bin/bash
# MLflow tracking server and model registry: PostgreSQL backend store, artifacts on the
# `mlflow-artifacts` volume, proxied (clients only need MLFLOW_TRACKING_URI=http://mlflow:5000).
# docker-compose.s3.yaml sets MLFLOW_ARTIFACTS_DESTINATION=s3://... to proxy to a bucket instead.
set -euo pipefail
# Compose passes unset variables as empty strings; an empty S3 endpoint would not mean "AWS".
for name in MLFLOW_S3_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
  [ -n "${!name:-}" ] || unset "$name"
done
# Refuse a default database password when the port is published beyond loopback.
python -m clinrisk.credentials check MLFLOW_BACKEND_STORE_URI
exec mlflow server \
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI is not set}" \
  --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/data/artifacts}" \
  --host 0.0.0.0 --port 5000 --workers "${MLFLOW_WORKERS:-1}"
