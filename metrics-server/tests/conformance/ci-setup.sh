#!/usr/bin/env bash
# Installs the pinned schemathesis the conformance test (tests/conformance.rs) runs, into a
# Python venv of its own: VENV (the first argument), by default
# ${CARGO_TARGET_DIR:-target}/schemathesis-$VERSION from the repository root. Idempotent: does
# nothing when that venv already has this version. Needs python3 with venv and pip; on Debian
# (run as root) installs python3-venv when it is missing.
set -euo pipefail
VERSION=4.32.5
cd "$(dirname "$0")/../../.."
VENV=${1:-${CARGO_TARGET_DIR:-target}/schemathesis-$VERSION}
if [ "$("$VENV/bin/st" --version 2>/dev/null || true)" = "st, version $VERSION" ]; then
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$VENV/bin/st" --version
