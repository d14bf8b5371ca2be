#!/usr/bin/env bash
# Debian's Chromium for the browser test of `hamner serve` (Playwright drives it through
# executable_path; no browser is downloaded). Idempotent; needs root or sudo for apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  chromium --version
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
$SUDO apt-get clean   # the downloaded .debs (about 100 MB) are not needed once installed
chromium --version
