#!/bin/bash
# Runs once, on an empty data volume: one role and one database per consumer, each role
# owning only its database. Passwords come from the compose environment.
set -e

create_database() {  # name password
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
       --set=name="$1" --set=password="$2" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "init-databases: created database $1"
}

create_database "${MLFLOW_DB:-mlflow}" "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"
create_database "${PREFECT_DB:-prefect}" "${PREFECT_DB_PASSWORD:?PREFECT_DB_PASSWORD is not set}"
create_database "${PREDICTIONS_DB:-predictions}" "${PREDICTIONS_DB_PASSWORD:?PREDICTIONS_DB_PASSWORD is not set}"
