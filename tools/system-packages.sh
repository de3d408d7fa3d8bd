#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those that are missing:
#   postgresql       the prediction log's production database (tests start a throw-away cluster)
#   chromium(-driver) headless browser tests of the pages
#   wrk              the serving benchmark's load generator
# Idempotent and quick when everything is present (one dpkg query). `make test` runs it first.
# Needs root (or sudo) only when something is missing. Elsewhere than Debian/Ubuntu it says what
# to install and returns 0, so that the rest of the suite still runs.
set -euo pipefail

PACKAGES=(postgresql chromium chromium-driver wrk)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "system-packages: not a Debian system; install ${PACKAGES[*]} with your package manager" >&2
  exit 0
fi

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system-packages: present (${PACKAGES[*]})"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "system-packages: ${missing[*]} missing; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
