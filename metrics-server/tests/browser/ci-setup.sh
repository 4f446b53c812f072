#!/usr/bin/env bash
# Installs what the browser tests need on a clean Debian machine (run as root): Debian's
# Chromium (playwright's own browser download cannot work here and is never used) and the pinned
# npm packages from package-lock.json. Node 18 or later and npm must already be installed.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi
npm ci --no-audit --no-fund
