#!/usr/bin/env bash
# Installs the real clients the protocol tests (tests/protocols.rs) run against the server:
#   - Debian's `prometheus` (remote write sender) and `victoria-metrics` (for `vmagent`), via apt
#     when missing;
#   - the pinned Python OpenTelemetry SDK with its OTLP/HTTP exporter and the pinned
#     `influxdb-client`, into a venv of their own: VENV (the first argument), by default
#     ${CARGO_TARGET_DIR:-target}/protocol-clients-$STAMP from the repository root.
# Idempotent: does nothing when everything is already there. Needs python3 with venv and pip; on
# Debian (run as root) installs python3-venv when it is missing.
set -euo pipefail
OTEL=1.45.2
INFLUX=1.50.0
STAMP="otel$OTEL-influx$INFLUX"
cd "$(dirname "$0")/../../.."
VENV=${1:-${CARGO_TARGET_DIR:-target}/protocol-clients-$STAMP}

missing=()
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v vmagent >/dev/null || [ -x /usr/bin/vmagent ] || missing+=(victoria-metrics)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update
  # The tests do not use the packages' services (which may start where systemd runs): they run
  # the binaries themselves on loopback ports of their own and stop them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ -f "$VENV/.installed" ]; then
  exit 0
fi
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "opentelemetry-sdk==$OTEL" "opentelemetry-exporter-otlp-proto-http==$OTEL" \
  "influxdb-client==$INFLUX"
touch "$VENV/.installed"
"$VENV/bin/python" -c 'import opentelemetry.exporter.otlp.proto.http, influxdb_client; print("protocol clients ready")'
