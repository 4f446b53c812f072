#!/usr/bin/env bash
# The benchmark suite: metrics-server on PostgreSQL and SQLite, beside VictoriaMetrics and
# InfluxDB 1.x measured in the same run with the same tools. Writes docs/benchmarks.md and
# docs/benchmarks.png. See docs/benchmarks.md for what each case does.
#
#   bench/run.sh                 # everything, about 10 minutes on 2 cores
#   RUNS=5 bench/run.sh          # more runs per case
#   BACKENDS=sqlite bench/run.sh # one backend only (the report then lacks the other)
#
# Needs: a PostgreSQL on 127.0.0.1:5432 where user postgres may create databases without a
# password (PGURL overrides), cargo, and root or sudo for apt-get when a tool is missing.
# Every load goes to loopback and stops by itself (bounded request counts and durations).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-3}
BACKENDS=${BACKENDS:-"postgres sqlite"}
PEERS=${PEERS:-"victoria influx"}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
# Loopback: no TLS between the server (or psql/pgbench) and PostgreSQL, as over a Unix socket.
export PGSSLMODE=${PGSSLMODE:-disable}
PGDB=${PGDB:-metrics_bench}
PORT=${PORT:-5055}
POST_N=${POST_N:-20000}     # requests per run of the original POST benchmark
GET_N=${GET_N:-5000}        # requests per run of the original GET benchmark
RANGE_N=${RANGE_N:-20000}   # requests per run of the range query
BULK_TOTAL=${BULK_TOTAL:-1000000} # points over all bulk runs: the data set of the range queries
WS_SECONDS=${WS_SECONDS:-10}
OUT=${OUT:-$ROOT/docs}
WORK=$(mktemp -d /tmp/metrics-bench.XXXXXX)
RESULTS=$WORK/results.tsv
COMMANDS=$WORK/commands.txt
SERVER_PID=
PEER_PID=

log() { printf '\n== %s  %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------------------
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null && return
    log "installing $2 (for $1)"
    local SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq "$2" >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$2" >/dev/null; }
}
need ab apache2-utils
need curl curl
need gnuplot gnuplot-nox
need psql postgresql-client
need victoria-metrics victoria-metrics
need influxd influxdb

log "building metrics-server and metrics-bench (release)"
cargo build --release --locked -p metrics-server -p metrics-bench >&2
SERVER_BIN=$CARGO_TARGET_DIR/release/metrics-server
BENCH_BIN=$CARGO_TARGET_DIR/release/metrics-bench

# --- recording -------------------------------------------------------------------------------
# results.tsv: target  case  run  value  unit
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
command_of() { printf '%s\t%s\n' "$1" "$2" >>"$COMMANDS"; }

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; } # kib PID VmRSS|VmHWM
reset_peak() { echo 5 >"/proc/$1/clear_refs"; }

# ab_run TARGET CASE RUN ab-args...: records req/s; fails on any non-2xx or failed request.
ab_run() {
    local target=$1 case=$2 run=$3; shift 3
    local out; out=$(ab -q "$@" 2>&1) || { echo "$out" >&2; return 1; }
    local rps failed non2xx
    rps=$(awk '/^Requests per second/ {print $4}' <<<"$out")
    failed=$(awk '/^Failed requests/ {print $3}' <<<"$out")
    non2xx=$(awk '/^Non-2xx responses/ {print $3}' <<<"$out")
    if [ "${failed:-0}" != 0 ] || [ -n "$non2xx" ]; then
        echo "$out" >&2
        echo "ab: $failed failed, ${non2xx:-0} non-2xx: not a valid run" >&2
        return 1
    fi
    record "$target" "$case" "$run" "$rps" "req/s"
    echo "$target $case run $run: $rps req/s" >&2
}

# bench_run TARGET CASE RUN metrics-bench-args...: records the key the case is about.
bench_run() {
    local target=$1 case=$2 run=$3; shift 3
    local out; out=$("$BENCH_BIN" "$@")
    echo "$target $case run $run: $out" >&2
    for kv in $out; do record "$target" "$case.${kv%%=*}" "$run" "${kv#*=}" ""; done
}

# mem TARGET CASE PID: the peak RSS since the last reset_peak, then a new reset.
mem() { record "$1" "mem.$2" 1 "$(kib "$3" VmHWM)" KiB; reset_peak "$3"; }

# --- metrics-server --------------------------------------------------------------------------
start_server() { # start_server DATABASE-URL
    "$SERVER_BIN" --port "$PORT" --database-url "$1" --log warn >>"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return
        sleep 0.1
    done
    echo "metrics-server did not start; see $WORK/server.log" >&2
    exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" || true; SERVER_PID=; }

fresh_db() { # fresh_db BACKEND -> prints the URL of an empty database
    case $1 in
    postgres)
        psql -q "$PGURL/postgres" -c "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null
        psql -q "$PGURL/postgres" -c "CREATE DATABASE $PGDB" >/dev/null
        echo "$PGURL/$PGDB?sslmode=$PGSSLMODE"
        ;;
    sqlite)
        rm -f "$WORK"/metrics.db*
        echo "sqlite://$WORK/metrics.db"
        ;;
    esac
}

URL=http://127.0.0.1:$PORT
printf '{"name":"ab", "ts":"2016-01-01 12:00:00.000", "value": 10}' >"$WORK/sample.json"
command_of post "ab -q -n $POST_N -c 10 -p sample.json -T application/json $URL/v1/metrics"
command_of get "ab -q -n $GET_N -c 10 '$URL/v1/metrics?name=ab-get'"
command_of bulk "metrics-bench bulk --url $URL --target ndjson|json [--gzip] --total $((BULK_TOTAL / (4 * RUNS))) --batch 10000 --concurrency 4 --names 1000 --hosts 100"
command_of tagrange "ab -q -n $RANGE_N -c 10 '$URL/v1/metrics?tag.host=web-7&sts=2016-01-01T00:01:40Z&ets=2016-01-01T00:01:49Z'"
command_of range "ab -q -n $RANGE_N -c 10 '$URL/v1/metrics?name=m500&sts=2016-01-01T00:01:40Z&ets=2016-01-01T00:03:19Z'"
command_of big "curl -s -o /dev/null '$URL/v1/metrics'  (every row; RSS sampled from /proc/PID/status)"
command_of ws "metrics-bench ws --url $URL --subscribers 100 --rate 1000 --seconds $WS_SECONDS"

bench_backend() {
    local backend=$1 db
    db=$(fresh_db "$backend")
    log "$backend: original POST and GET benchmarks, live fan-out"
    start_server "$db"
    sleep 1
    record "$backend" mem.idle 1 "$(kib "$SERVER_PID" VmRSS)" KiB
    reset_peak "$SERVER_PID"

    for run in $(seq "$RUNS"); do
        ab_run "$backend" post "$run" -n "$POST_N" -c 10 -p "$WORK/sample.json" -T application/json "$URL/v1/metrics"
    done
    mem "$backend" post "$SERVER_PID"

    # The original GET: ~1,100 stored rows, about 66.9 kB of JSON.
    python3 - >"$WORK/get.json" <<'EOF'
import json
print(json.dumps([{"name": "ab-get", "ts": "2016-01-01 12:%02d:%02d.000" % (i // 60 % 60, i % 60), "value": 10}
                  for i in range(1100)], separators=(", ", ":")))
EOF
    curl -sf -H 'content-type: application/json' --data-binary @"$WORK/get.json" "$URL/v1/metrics" >/dev/null
    record "$backend" get.bytes 1 "$(curl -s "$URL/v1/metrics?name=ab-get" | wc -c)" bytes
    for run in $(seq "$RUNS"); do
        ab_run "$backend" get "$run" -n "$GET_N" -c 10 "$URL/v1/metrics?name=ab-get"
    done
    mem "$backend" get "$SERVER_PID"
    if [ "$backend" = postgres ]; then
        pg_alone get "SELECT doc FROM metrics WHERE name = 'ab-get' ORDER BY ts, id;" "$PGDB"
    fi

    for run in $(seq "$RUNS"); do
        bench_run "$backend" ws "$run" ws --url "$URL" --subscribers 100 --rate 1000 --seconds "$WS_SECONDS"
    done
    mem "$backend" ws "$SERVER_PID"
    stop_server

    log "$backend: bulk ingest of $BULK_TOTAL points, then queries over them"
    db=$(fresh_db "$backend")
    start_server "$db"
    reset_peak "$SERVER_PID"
    local per=$((BULK_TOTAL / (4 * RUNS))) first=0
    for run in $(seq "$RUNS"); do
        for variant in ndjson ndjson.gz json json.gz; do
            local gz=; [ "${variant#*.}" = gz ] && gz=--gzip
            bench_run "$backend" "bulk.$variant" "$run" bulk --url "$URL" --target "${variant%.gz}" $gz \
                --total "$per" --first "$first" --batch 10000 --concurrency 4 --names 1000 --hosts 100
            first=$((first + per))
        done
    done
    mem "$backend" bulk "$SERVER_PID"
    record "$backend" rows 1 "$first" rows

    # m500 has one point a second from 00:00:00; this range holds 100 of them.
    for run in $(seq "$RUNS"); do
        ab_run "$backend" range "$run" -n "$RANGE_N" -c 10 \
            "$URL/v1/metrics?name=m500&sts=2016-01-01T00:01:40Z&ets=2016-01-01T00:03:19Z"
    done
    mem "$backend" range "$SERVER_PID"
    if [ "$backend" = postgres ]; then
        pg_alone range "SELECT doc FROM metrics WHERE name = 'm500' AND ts BETWEEN 1451606500000000 AND 1451606599000000 ORDER BY ts, id;" "$PGDB"
    fi

    # Each name m{n} is tagged host web-{n % 100}: web-7 tags 10 names, so 10 seconds hold 100
    # rows. The plain SQL is the same semi-join on the series catalog the store sends.
    for run in $(seq "$RUNS"); do
        ab_run "$backend" tagrange "$run" -n "$RANGE_N" -c 10 \
            "$URL/v1/metrics?tag.host=web-7&sts=2016-01-01T00:01:40Z&ets=2016-01-01T00:01:49Z"
    done
    if [ "$backend" = postgres ]; then
        local sha; sha=$(printf 'web-7' | sha256sum | cut -d' ' -f1)
        pg_alone tagrange "SELECT m.doc FROM metrics m WHERE m.series_id IN (SELECT t.series_id FROM series_tags t WHERE t.key = '\"host\"' AND t.value_sha = '$sha') AND m.ts BETWEEN 1451606500000000 AND 1451606509000000 ORDER BY m.ts, m.id;" "$PGDB"
    fi

    for run in $(seq "$RUNS"); do
        local before peak out
        before=$(kib "$SERVER_PID" VmRSS)
        reset_peak "$SERVER_PID"
        out=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$URL/v1/metrics")
        peak=$(kib "$SERVER_PID" VmHWM)
        record "$backend" big.growth "$run" "$((peak - before))" KiB
        record "$backend" big.bytes "$run" "${out% *}" bytes
        record "$backend" big.seconds "$run" "${out#* }" s
        echo "$backend big run $run: $out, RSS $before -> peak $peak KiB" >&2
    done
    stop_server
}

# --- the database alone: what bounds a durable write ----------------------------------------
# fdatasync calls per second on this disk (the SQLite file's and PostgreSQL's disk alike), and
# PostgreSQL's own single-row INSERT transactions from 10 clients, on a table like ours.
bench_alone() {
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    log "the disk and PostgreSQL alone"
    command_of fsync "metrics-bench fsync --file DIR/fsync.test --seconds 2  (8 kB write + fdatasync in a loop, on the SQLite file's disk)"
    for run in $(seq "$RUNS"); do
        bench_run disk fsync "$run" fsync --file "$WORK/fsync.test" --seconds 2
    done
    local db; db=$(fresh_db postgres)
    start_server "$db" && stop_server # the migrations create the table and its indexes
    printf '%s\n' "INSERT INTO metrics (name, ts, value, doc) VALUES ('ab', 1451649600000000, 10, '{\"name\":\"ab\",\"ts\":\"2016-01-01 12:00:00.000\",\"value\":10}');" >"$WORK/insert.sql"
    command_of pgbench "$pgbin/pgbench -n -c 10 -j 2 -T 5 -f insert.sql  (single-row INSERT transactions, synchronous commit)"
    for run in $(seq "$RUNS"); do
        local tps
        tps=$("$pgbin/pgbench" -n -c 10 -j 2 -T 5 -f "$WORK/insert.sql" "$db" 2>/dev/null |
            awk '/^tps/ && !n++ {print $3}')
        record postgres-alone insert "$run" "$tps" tx/s
        echo "postgres alone insert run $run: $tps tx/s" >&2
    done
}

# pg_alone CASE SQL DATABASE: the same read straight from PostgreSQL, 10 clients (pgbench keeps
# its connections; ab opens one per request).
pg_alone() {
    local pgbin; pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    printf '%s\n' "$2" >"$WORK/$1.sql"
    command_of "pgbench.$1" "$pgbin/pgbench -n -c 10 -j 2 -T 5 -f $1.sql  # $2"
    for run in $(seq "$RUNS"); do
        local tps
        tps=$("$pgbin/pgbench" -n -c 10 -j 2 -T 5 -f "$WORK/$1.sql" "$PGURL/$3" 2>/dev/null |
            awk '/^tps/ && !n++ {print $3}')
        record postgres-alone "$1" "$run" "$tps" q/s
        echo "postgres alone $1 run $run: $tps q/s" >&2
    done
}

# --- peers -----------------------------------------------------------------------------------
bench_peer() {
    local peer=$1 dir=$WORK/$1 single body type
    mkdir -p "$dir"
    case $peer in
    victoria)
        victoria-metrics -storageDataPath="$dir" -httpListenAddr=127.0.0.1:8428 \
            -opentsdbHTTPListenAddr=127.0.0.1:4242 -loggerLevel=ERROR \
            >"$dir/log" 2>&1 &
        PEER_PID=$!
        single=http://127.0.0.1:4242/api/put
        printf '{"metric":"ab","value":10,"timestamp":1451649600,"tags":{"host":"a"}}' >"$dir/point"
        type=application/json
        ;;
    influx)
        cat >"$dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "$dir/meta"
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:8086"
  log-enabled = false
[monitor]
  store-enabled = false
EOF
        influxd run -config "$dir/influxdb.conf" >"$dir/log" 2>&1 &
        PEER_PID=$!
        single="http://127.0.0.1:8086/write?db=bench"
        printf 'ab,host=a value=10 1451649600000000000' >"$dir/point"
        type=text/plain
        ;;
    esac
    local base=http://127.0.0.1:8428 ready=/health
    [ "$peer" = influx ] && base=http://127.0.0.1:8086 ready=/ping
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$base$ready" && break
        sleep 0.2
    done
    [ "$peer" = influx ] && curl -sf -XPOST http://127.0.0.1:8086/query --data-urlencode 'q=CREATE DATABASE bench' >/dev/null
    record "$peer" mem.idle 1 "$(kib "$PEER_PID" VmRSS)" KiB
    reset_peak "$PEER_PID"
    command_of "post.$peer" "ab -q -n $POST_N -c 10 -p point -T $type $single  # point: $(cat "$dir/point")"
    for run in $(seq "$RUNS"); do
        ab_run "$peer" post "$run" -n "$POST_N" -c 10 -p "$dir/point" -T "$type" "$single"
    done
    mem "$peer" post "$PEER_PID"
    local batch=10000; [ "$peer" = influx ] && batch=100000
    command_of "bulk.$peer" "metrics-bench bulk --url $base --target $peer --total 1000000 --batch $batch --concurrency 4 --names 1000"
    for run in $(seq "$RUNS"); do
        bench_run "$peer" bulk "$run" bulk --url "$base" --target "$peer" --total 1000000 \
            --first $(((run - 1) * 1000000)) --batch "$batch" --concurrency 4 --names 1000
    done
    mem "$peer" bulk "$PEER_PID"
    kill "$PEER_PID"; wait "$PEER_PID" 2>/dev/null || true; PEER_PID=
}

# --- the run ---------------------------------------------------------------------------------
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
case " $BACKENDS " in *" postgres "*) bench_alone ;; esac
for backend in $BACKENDS; do bench_backend "$backend"; done
for peer in $PEERS; do bench_peer "$peer"; done

{
    echo "started	$STARTED"
    echo "finished	$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu	$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) cores"
    echo "memory	$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel	$(uname -r)"
    echo "postgres	$(psql -tA "$PGURL/postgres" -c 'show server_version')"
    echo "victoria	$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null)"
    echo "influxdb	$(dpkg-query -W -f '${Version}' influxdb 2>/dev/null)"
    echo "ab	$(ab -V | head -1)"
    echo "load	$LOAD_BEFORE (before) / $(cut -d' ' -f1-3 /proc/loadavg) (after)"
    echo "commit	$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ' (with local changes)')"
    echo "runs	$RUNS"
} >"$WORK/machine.tsv"

log "writing $OUT/benchmarks.md and $OUT/benchmarks.png (raw results in $WORK)"
mkdir -p "$OUT"
cp "$RESULTS" "$OUT/benchmarks.tsv"
python3 "$ROOT/bench/report.py" "$WORK" "$OUT"
