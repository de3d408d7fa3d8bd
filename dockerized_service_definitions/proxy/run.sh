#!/bin/bash
# nginx in the foreground, plus a watch on the replicas of `web`: Docker's DNS answers one
# address per running replica, and nginx resolves `web` only when it (re)loads its
# configuration, so a change in that set (a replica stopped or started, `--scale web=N`)
# triggers a graceful reload. Between a change and the reload (at most ~2 s), the passive
# health checks of nginx.conf send requests around a replica that is gone.
# SIGTERM (docker stop) becomes nginx's graceful shutdown: requests in flight finish.
set -euo pipefail

web_addresses() { getent ahostsv4 web | awk '{print $1}' | sort -u | tr '\n' ' '; }

nginx -g 'daemon off;' &
nginx_pid=$!
trap 'kill -QUIT "$nginx_pid"; wait "$nginx_pid"; exit 0' TERM INT
known=$(web_addresses || true)
echo "proxy: web replicas at ${known:-nothing yet}"
while kill -0 "$nginx_pid" 2>/dev/null; do
  sleep 2 &
  wait $!
  current=$(web_addresses || true)
  # No address at all (every replica stopped): keep the last configuration rather than
  # fail a reload on an unresolvable name.
  if [ -n "$current" ] && [ "$current" != "$known" ]; then
    echo "proxy: web replicas now at $current (were ${known:-none}); reloading nginx"
    nginx -s reload
    known=$current
  fi
done
wait "$nginx_pid"
