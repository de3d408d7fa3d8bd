#!/bin/bash
# The prediction service (gunicorn). On the first start, with auth on and no users yet, it
# creates the user `admin` with CLINRISK_ADMIN_PASSWORD, or a generated password stored
# (readable by the service user only) in /data/users/admin-password.
set -euo pipefail
users_file="${CLINRISK_USERS_FILE:?CLINRISK_USERS_FILE is not set}"
users_dir="$(dirname "$users_file")"
# Replicas (`docker compose up --scale web=N`) start together on the one users volume: one at
# a time creates the admin user and the session secret, and the others find them made.
exec 9>"$users_dir/.first-start.lock"
flock 9
if [ "${CLINRISK_AUTH_ENABLED:-true}" != "false" ] && [ ! -s "$users_file" ]; then
  password="${CLINRISK_ADMIN_PASSWORD:-}"
  if [ -z "$password" ]; then
    password="$(python -c 'import secrets; print(secrets.token_urlsafe(18))')"
    (umask 077 && printf '%s\n' "$password" > "$users_dir/admin-password")
    echo "web: created user admin; read its password with:" \
         "docker compose exec web cat /data/users/admin-password"
  else
    echo "web: created user admin with CLINRISK_ADMIN_PASSWORD"
  fi
  printf '%s\n' "$password" | clinrisk user add admin
fi
# The patient page's session cookie must verify on every replica: unless CLINRISK_SESSION_SECRET
# is set, all of them use one secret kept on the users volume.
if [ -z "${CLINRISK_SESSION_SECRET:-}" ]; then
  if [ ! -s "$users_dir/session-secret" ]; then
    (umask 077 && python -c 'import secrets; print(secrets.token_hex(32))' > "$users_dir/session-secret")
  fi
  CLINRISK_SESSION_SECRET="$(cat "$users_dir/session-secret")"
  export CLINRISK_SESSION_SECRET
fi
exec 9>&-  # closing the descriptor releases the lock
exec clinrisk serve --host 0.0.0.0 --port 8000 --workers "${CLINRISK_WORKERS:-2}"
