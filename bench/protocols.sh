#!/usr/bin/env bash
# Agent-protocol ingest: InfluxDB line protocol (`POST /write`) and Prometheus remote write 1.0
# (`POST /api/v1/write`), sent by metrics-bench to metrics-server (PostgreSQL and SQLite) and to
# VictoriaMetrics (Debian's victoria-metrics) with the same payloads in the same run. Prints
# points/s per run, the medians and the ratio metrics-server / VictoriaMetrics.
#
#   bench/protocols.sh                      # about 2 minutes on 2 cores
#   RUNS=5 TOTAL=200000 bench/protocols.sh
#
# Needs a PostgreSQL on 127.0.0.1:5432 where user postgres may create databases without a
# password (PGURL overrides), cargo, and apt for victoria-metrics when it is missing. Every load
# goes to loopback and stops by itself (a bounded number of points).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-3}
TOTAL=${TOTAL:-100000}       # points per run
BATCH=${BATCH:-5000}         # points per request
CONCURRENCY=${CONCURRENCY:-4}
BACKENDS=${BACKENDS:-"postgres sqlite"}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
export PGSSLMODE=${PGSSLMODE:-disable}
PGDB=${PGDB:-metrics_bench_protocols}
PORT=${PORT:-5056}
VM_PORT=${VM_PORT:-8429}
WORK=$(mktemp -d /tmp/metrics-protocols.XXXXXX)
RESULTS=$WORK/results.tsv
SERVER_PID=
VM_PID=

log() { printf '== %s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$VM_PID" ] && kill "$VM_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

if ! command -v victoria-metrics >/dev/null; then
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null
fi
log "building metrics-server and metrics-bench (release)"
cargo build --release -p metrics-server -p metrics-bench >&2
SERVER_BIN=$CARGO_TARGET_DIR/release/metrics-server
BENCH_BIN=$CARGO_TARGET_DIR/release/metrics-bench

wait_up() { # wait_up URL LOG
    for _ in $(seq 100); do
        curl -sf "$1" >/dev/null && return
        sleep 0.1
    done
    echo "not up: $1; see $2" >&2
    exit 1
}

# One VictoriaMetrics for the whole run; the points are from 2016, hence the retention.
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -retentionPeriod=100y -loggerLevel=ERROR >>"$WORK/vm.log" 2>&1 &
VM_PID=$!
wait_up "http://127.0.0.1:$VM_PORT/health" "$WORK/vm.log"

# run TARGET-NAME URL PROTOCOL RUN: one load of TOTAL points, continuing the series of the last.
first=0
run() {
    local out pps
    out=$("$BENCH_BIN" bulk --url "$2" --target "$3" --total "$TOTAL" --batch "$BATCH" \
        --concurrency "$CONCURRENCY" --names 1000 --first "$first")
    first=$((first + TOTAL))
    pps=$(tr ' ' '\n' <<<"$out" | awk -F= '$1 == "points_per_sec" {print $2}')
    printf '%s\t%s\t%s\t%s\n' "$1" "$3" "$4" "$pps" >>"$RESULTS"
    log "$1 $3 run $4: $pps points/s"
}

for backend in $BACKENDS; do
    case $backend in
    postgres)
        psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null
        psql -q "$PGURL/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
        db="$PGURL/$PGDB?sslmode=$PGSSLMODE"
        ;;
    sqlite) db="sqlite://$WORK/metrics.db" ;;
    esac
    "$SERVER_BIN" --port "$PORT" --database-url "$db" --log warn >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    wait_up "http://127.0.0.1:$PORT/healthz" "$WORK/server.log"
    for protocol in influx remote-write; do
        for r in $(seq "$RUNS"); do
            # Interleaved, so that both see the same machine state.
            run "metrics-server-$backend" "http://127.0.0.1:$PORT" "$protocol" "$r"
            run victoria-metrics "http://127.0.0.1:$VM_PORT" "$protocol" "$backend-$r"
        done
    done
    kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=
done

# Medians and ratios.
echo
printf 'target\tprotocol\tmedian points/s\truns\n'
sort -t$'\t' -k1,2 "$RESULTS" | awk -F'\t' '
    { key = $1 "\t" $2; v[key] = v[key] " " $4; n[key]++ }
    END { for (k in v) { m = split(substr(v[k], 2), a, " "); asort(a); printf "%s\t%.0f\t%s\n", k, a[int((m + 1) / 2)], substr(v[k], 2) } }' |
    sort | tee "$WORK/medians.tsv"
echo
for backend in $BACKENDS; do
    for protocol in influx remote-write; do
        ours=$(awk -F'\t' -v t="metrics-server-$backend" -v p="$protocol" '$1 == t && $2 == p {print $3}' "$WORK/medians.tsv")
        vm=$(awk -F'\t' -v p="$protocol" '$1 == "victoria-metrics" && $2 == p {print $3}' "$WORK/medians.tsv")
        awk -v o="$ours" -v v="$vm" -v b="$backend" -v p="$protocol" \
            'BEGIN { printf "%s %s: metrics-server %.0f / VictoriaMetrics %.0f points/s = %.3f\n", p, b, o, v, o / v }'
    done
done
echo "(raw results: $RESULTS)"
