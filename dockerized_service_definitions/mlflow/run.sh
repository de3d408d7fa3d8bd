#!/bin/bash
# MLflow tracking server and model registry: PostgreSQL backend store, artifacts on the
# `mlflow-artifacts` volume, proxied (clients only need MLFLOW_TRACKING_URI=http://mlflow:5000).
# docker-compose.s3.yaml sets MLFLOW_ARTIFACTS_DESTINATION=s3://... to proxy to a bucket instead.
set -euo pipefail
# Compose passes unset variables as empty strings; an empty S3 endpoint would not mean "AWS".
for name in MLFLOW_S3_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY; do
  [ -n "${!name:-}" ] || unset "$name"
done
# Refuse a default password when the port is published beyond loopback.
python -m clinrisk.credentials check MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_ADMIN_PASSWORD \
  MLFLOW_FLASK_SERVER_SECRET_KEY
# The basic-auth app: every request needs an account; by default nobody may do anything. The
# admin account is created with MLFLOW_AUTH_ADMIN_PASSWORD on the first start; init adds the
# writer and the reader.
python -m clinrisk.credentials mlflow-auth-config "${MLFLOW_AUTH_CONFIG_PATH:?MLFLOW_AUTH_CONFIG_PATH is not set}" \
  "sqlite:////data/mlflow-auth/auth.db"
exec mlflow server --app-name basic-auth \
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:?MLFLOW_BACKEND_STORE_URI is not set}" \
  --serve-artifacts --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/data/artifacts}" \
  --host 0.0.0.0 --port 5000 --workers "${MLFLOW_WORKERS:-1}"
