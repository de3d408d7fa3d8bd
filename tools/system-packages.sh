#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing (idempotent; CI starts from a
# fresh machine). chromium + chromium-driver: the browser tests (tests/web/test_web_browser.py).
set -euo pipefail
PACKAGES=(chromium chromium-driver)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
