#!/bin/bash
# The prediction service (gunicorn). On the first start, with auth on and no users yet, it
# creates the user `admin` with CLINRISK_ADMIN_PASSWORD, or a generated password stored
# (readable by the service user only) in /data/users/admin-password.
set -euo pipefail
users_file="${CLINRISK_USERS_FILE:?CLINRISK_USERS_FILE is not set}"
if [ "${CLINRISK_AUTH_ENABLED:-true}" != "false" ] && [ ! -s "$users_file" ]; then
  password="${CLINRISK_ADMIN_PASSWORD:-}"
  if [ -z "$password" ]; then
    password="$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    (umask 077 && printf '%s\n' "$password" > /data/users/admin-password)
    echo "web: created user admin; read its password with:" \
         "docker compose exec web cat /data/users/admin-password"
  else
    echo "web: created user admin with CLINRISK_ADMIN_PASSWORD"
  fi
  printf '%s\n' "$password" | clinrisk user add admin
fi
exec clinrisk serve --host 0.0.0.0 --port 8000 --workers "${CLINRISK_WORKERS:-2}"
